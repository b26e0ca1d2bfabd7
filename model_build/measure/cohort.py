"""A cohort's images measured participant by participant: what the study's measurements model reads.

The frames are the image model's own: every listed still and ``frames_per_video`` frames of a
recording, read by the same function (:func:`model_build.models.data.read_frames`). Each goes
through `sarco measure run`'s frame path (:class:`~model_build.measure.run.FrameMeasurer`): the
DICOM's ultrasound region and pixel size, else the listing's ``mm_per_pixel`` or ``depth_mm``,
the scan region, the aponeurosis model, the measurements. A participant's values are
:func:`~sarco_core.measure.aggregate_measurements` over their frames, the rule a device applies to
a session's frames. Nothing is written into the cohort folder.

Files are measured in a thread pool (the decoders, ONNX Runtime and OpenCV release the GIL),
each model call on one thread, so the numbers do not depend on the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from model_build.cohort import Cohort
from model_build.dicom import DicomError, read_header
from model_build.measure.infer import AponeurosisModel
from model_build.measure.run import COLUMNS, QUANTITIES, FrameMeasurer, ScaleOptions
from model_build.models.data import MediaReadError, MediaRow, available_cores, media_rows, read_frames
from sarco_core.measure import FrameMeasurement, aggregate_measurements

SESSION_COLUMNS = ("participant_id", *QUANTITIES, "frames_measured", "frames_total")


@dataclass(frozen=True)
class CohortMeasurements:
    """``frames``: one row per measured frame (`sarco measure run`'s columns, ``participant_id``
    first, ``path`` as listed in the cohort); ``participants``: one row per participant, the
    median of their frames per quantity (NaN where none was measured) and the frame counts."""

    frames: pd.DataFrame
    participants: pd.DataFrame
    model: str


def measure_cohort(cohort: Cohort, participant_ids: list[str], model: AponeurosisModel, frames_per_video: int,
                   on_progress: Callable[[int], None] | None = None) -> CohortMeasurements:
    """Measure every listed file of these participants (module docstring); ``on_progress(1)`` per file."""
    listed = media_rows(cohort, participant_ids)
    jobs = [(pid, media) for pid in participant_ids for media in listed[pid]]
    relative = {**_listed_paths(cohort, "images"), **_listed_paths(cohort, "videos")}

    def measure_one(job: tuple[str, MediaRow]) -> list[tuple[dict, FrameMeasurement]]:
        found = measure_file(job[1], model, frames_per_video)
        if on_progress is not None:
            on_progress(1)
        return found

    rows, by_participant = [], {pid: [] for pid in participant_ids}
    with ThreadPoolExecutor(max_workers=min(4, available_cores())) as pool:
        for (pid, media), measured in zip(jobs, pool.map(measure_one, jobs)):
            for row, measurement in measured:
                rows.append({"participant_id": pid, **row, "path": relative[media.listing, media.row]})
                by_participant[pid].append(measurement)
    sessions = []
    for pid, measurements in by_participant.items():
        session = aggregate_measurements(measurements)
        sessions.append({"participant_id": pid, **{q: getattr(session, q) for q in QUANTITIES},
                         "frames_measured": session.frames_measured, "frames_total": session.frames_total})
    frames = pd.DataFrame(rows, columns=["participant_id", *COLUMNS])
    numeric = [*QUANTITIES, *(f"{q}_spread" for q in QUANTITIES)]  # a CSV row writes "not measured" as ""
    frames[numeric] = frames[numeric].apply(lambda column: pd.to_numeric(column.mask(column.eq(""))))
    participants = pd.DataFrame(sessions, columns=list(SESSION_COLUMNS)).astype({q: float for q in QUANTITIES})
    return CohortMeasurements(frames, participants, model.bundle.model_name)


def measure_file(media: MediaRow, model: AponeurosisModel,
                 frames_per_video: int) -> list[tuple[dict, FrameMeasurement]]:
    """(`sarco measure run` row, measurement) of each frame the image model reads from one file."""
    box = known = None
    try:
        if media.format == "dicom":
            region = (header := read_header(media.path)[1]).scan_region
            box, known = (None if region is None else region.box), header.pixel_size
        frames, _ = read_frames(media.path, media.format, frames_per_video)
    except (OSError, ValueError, DicomError) as error:
        raise MediaReadError(f"{media.listing} row {media.row} ({media.path.name}): cannot be read ({error}); "
                             "fix: run `sarco validate` on the cohort and replace the file") from None
    measurer = FrameMeasurer(model, ScaleOptions(mm_per_pixel=media.mm_per_pixel, depth_mm=media.depth_mm))
    found = []
    for index, frame in enumerate(frames):
        if media.format == "dicom" and frame.ndim == 3:
            frame = np.ascontiguousarray(frame[..., ::-1])  # pydicom gives RGB, the measurement reads BGR
        name = "" if media.listing == "images.csv" else str(index)
        found.append(measurer(media.path, name, frame, box, known))
    return found


def _listed_paths(cohort: Cohort, listing: str) -> dict[tuple[str, int], str]:
    """(listing file, row) -> the path as the listing gives it (truth_media.csv uses the same)."""
    frame = getattr(cohort, listing)
    if frame is None:
        return {}
    return {(f"{listing}.csv", int(row)): str(path) for row, path in frame["path"].items()}
