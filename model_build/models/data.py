"""From a loaded cohort to arrays: labels, encoded clinical/lab tables, prepared images.

Images are read once, run through the device's preprocessing (``sarco_core.preprocess``) and kept
in memory at the model's input size, so an epoch never touches the disk or the decoders again.
Every byte read also feeds the data hash stored in the bundle.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from model_build.cohort import Cohort
from model_build.cohort.listings import media_format
from model_build.cohort.paths import CohortPathError
from model_build.models.tabular import TabularEncoder
from sarco_core.errors import SarcoError
from sarco_core.preprocess import PreprocessError, Preprocessor

TABULAR_MODALITIES = ("clinical", "lab")


class MediaReadError(SarcoError, ValueError):
    """An image or video cannot be read; the message names the listing, row and file."""


@dataclass
class ImageSet:
    """Prepared (not yet normalised) images in [0, 1], float16, with the row of their owner."""

    pixels: np.ndarray        # (M, S, S) float16
    owner: np.ndarray         # (M,) int64, index into the participant list
    digests: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files left out (no pixel size in physical mode)
    digest_owner: list[int] = field(default_factory=list)  # participant row of each digest


@dataclass(frozen=True)
class MediaRow:
    listing: str              # images.csv | videos.csv
    row: int
    path: Path
    format: str
    mm_per_pixel: float | None
    depth_mm: float | None


def media_rows(cohort: Cohort, participant_ids: list[str]) -> dict[str, list[MediaRow]]:
    """Each participant's listed files, in listing then row order."""
    rows: dict[str, list[MediaRow]] = {pid: [] for pid in participant_ids}
    for listing, frame in (("images.csv", cohort.images), ("videos.csv", cohort.videos)):
        if frame is None:
            continue
        for row, item in frame.iterrows():
            if item["participant_id"] not in rows:
                continue
            try:
                path = cohort.media_path(item["path"])
            except CohortPathError as error:
                raise MediaReadError(f"{listing} row {int(row)} ({item['path']}): {error}") from None
            rows[item["participant_id"]].append(MediaRow(
                listing, int(row), path, media_format(item["path"], listing),
                _number(item.get("mm_per_pixel")), _number(item.get("depth_mm"))))
    return rows


def available_cores() -> int:
    """Cores this process may use (a container or taskset often allows fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _number(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def read_frames(path: Path, kind: str, max_frames: int) -> tuple[list[np.ndarray], str]:
    """Decoded frames of one file (a still is one frame; a recording gives up to ``max_frames``
    evenly spaced frames) and the file's SHA-256."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if kind == "dicom":
        return _dicom_frames(data, max_frames), digest
    if kind == "video":
        return _video_frames(path, max_frames), digest
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError("OpenCV cannot decode it")
    return [pixels], digest


def _dicom_frames(data: bytes, max_frames: int) -> list[np.ndarray]:
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(data))
    pixels = dataset.pixel_array
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        pixels = pixels.max() - pixels  # MONOCHROME1 stores white as 0
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        return [pixels]
    return [pixels[i] for i in _spread(frames, max_frames)]


def _video_frames(path: Path, max_frames: int) -> list[np.ndarray]:
    """Grab (decode without converting) every frame, convert only the sampled ones."""
    capture = cv2.VideoCapture(str(path))
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:  # containers without a frame count: count first, then read again
            while capture.grab():
                total += 1
            capture.release()
            capture = cv2.VideoCapture(str(path))
        wanted = set(_spread(total, max_frames))
        frames, index = [], 0
        while len(frames) < len(wanted) and capture.grab():
            if index in wanted:
                ok, frame = capture.retrieve()
                if ok:
                    frames.append(frame)
            index += 1
    finally:
        capture.release()
    if not frames:
        raise ValueError("no frame decodes")
    return frames


def _spread(total: int, wanted: int) -> list[int]:
    """``wanted`` frame numbers spread evenly over a recording (its middle when one)."""
    if total <= wanted:
        return list(range(total))
    return [int((i + 0.5) * total / wanted) for i in range(wanted)]


def load_images(cohort: Cohort, participant_ids: list[str], preprocessor: Preprocessor,
                frames_per_video: int = 4, on_progress: Callable[[int], None] | None = None) -> ImageSet:
    """Read and prepare every listed image / sampled frame of these participants, in parallel.

    A model that resamples to a physical pixel size cannot use a file whose pixel size is
    unknown (neither ``mm_per_pixel`` nor ``depth_mm`` listed): such files are left out and
    named in ``skipped`` (a participant left without any image then counts as having no
    image, the vacuous opinion in evidential fusion)."""
    listed = media_rows(cohort, participant_ids)
    jobs = [(index, media) for index, pid in enumerate(participant_ids) for media in listed[pid]]
    skipped = []
    if preprocessor.params.field_of_view_mm is not None:  # physical mode needs each file's pixel size
        sized = [m.mm_per_pixel is not None or m.depth_mm is not None for _, m in jobs]
        skipped = [f"{m.listing} row {m.row}" for (_, m), ok in zip(jobs, sized) if not ok]
        jobs = [job for job, ok in zip(jobs, sized) if ok]
        if on_progress is not None and skipped:
            on_progress(len(skipped))

    def prepare(job: tuple[int, MediaRow]) -> tuple[int, list[np.ndarray], str]:
        index, media = job
        where = f"{media.listing} row {media.row} ({media.path.name})"
        try:
            frames, digest = read_frames(media.path, media.format, frames_per_video)
            prepared = [preprocessor.prepare(frame, media.mm_per_pixel, media.depth_mm) for frame in frames]
        except PreprocessError as error:
            raise MediaReadError(f"{where}: {error}") from None
        except (OSError, ValueError) as error:
            raise MediaReadError(f"{where}: cannot be read ({error}); fix: run `sarco validate` "
                                 "on the cohort and replace the file") from None
        return index, prepared, digest

    pixels, owner, digests, digest_owner = [], [], [], []
    with ThreadPoolExecutor(max_workers=min(16, available_cores())) as pool:  # decoders, OpenCV free the GIL
        for index, prepared, digest in pool.map(prepare, jobs):
            pixels += prepared
            owner += [index] * len(prepared)
            digests.append(digest)
            digest_owner.append(index)
            if on_progress is not None:
                on_progress(1)
    size = preprocessor.params.size
    stacked = np.stack(pixels).astype(np.float16) if pixels else np.zeros((0, size, size), np.float16)
    return ImageSet(stacked, np.asarray(owner, dtype=np.int64), digests, skipped, digest_owner)


@dataclass
class ImageLibrary:
    """Prepared images of many participants, read once and shared by several trainings.

    A study trains a dozen models on overlapping subsets of the same participants; decoding
    and preprocessing every file once for all of them is what keeps it within a CPU budget.
    """

    ids: list[str]
    images: ImageSet

    @classmethod
    def read(cls, cohort: Cohort, participant_ids: list[str], preprocessor: Preprocessor,
             frames_per_video: int = 4, on_progress: Callable[[int], None] | None = None) -> ImageLibrary:
        return cls(list(participant_ids),
                   load_images(cohort, participant_ids, preprocessor, frames_per_video, on_progress))

    def subset(self, participant_ids: list[str]) -> ImageSet:
        """The images of ``participant_ids`` (owners renumbered to that list), as load_images gives."""
        position = {pid: i for i, pid in enumerate(self.ids)}
        missing = [pid for pid in participant_ids if pid not in position]
        if missing:
            raise KeyError(f"participants not in the image library: {', '.join(missing[:5])}")
        new_row = np.full(len(self.ids), -1, dtype=np.int64)
        new_row[[position[pid] for pid in participant_ids]] = np.arange(len(participant_ids))
        kept = np.flatnonzero(new_row[self.images.owner] >= 0)
        files = [(d, int(new_row[o])) for d, o in zip(self.images.digests, self.images.digest_owner)
                 if new_row[o] >= 0]
        return ImageSet(self.images.pixels[kept], new_row[self.images.owner[kept]],
                        [d for d, _ in files], list(self.images.skipped), [o for _, o in files])


def count_media(cohort: Cohort, participant_ids: list[str]) -> int:
    return sum(len(rows) for rows in media_rows(cohort, participant_ids).values())


def tabular_columns(cohort: Cohort, modality: str) -> list:
    """The schema's column specs of one tabular modality that participants.csv holds."""
    names = [n for n in cohort.schema.columns_with_role(modality) if n in cohort.participants.columns]
    return [cohort.schema.columns[n] for n in names]


def presence(frame: pd.DataFrame, modalities: list[str], encoders: dict[str, TabularEncoder],
             image_counts: np.ndarray | None) -> np.ndarray:
    """``(N, V)`` which modality each participant has (images listed; any tabular value)."""
    columns = []
    for modality in modalities:
        if modality == "image":
            columns.append(np.zeros(len(frame), bool) if image_counts is None else image_counts > 0)
        else:
            columns.append(encoders[modality].present(frame))
    return np.column_stack(columns)


def data_hash(frame: pd.DataFrame, columns: list[str], digests: list[str]) -> str:
    """SHA-256 over the rows used (ids, labels, model inputs) and the content of every file read."""
    digest = hashlib.sha256()
    digest.update(frame[columns].astype("string").fillna("").to_csv(index=False).encode())
    for item in sorted(digests):
        digest.update(item.encode())
    return digest.hexdigest()


@dataclass
class Arrays:
    """Everything the network needs about a list of participants, in memory."""

    ids: list[str]
    labels: np.ndarray                      # (N,) int64; -1 = unknown
    present: np.ndarray                     # (N, V) bool
    tables: dict[str, np.ndarray]           # modality -> (N, D) float32
    images: ImageSet | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def images_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices into ``images.pixels`` of these rows' images and their position in ``rows``."""
        if self.images is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        position_of = np.full(len(self.ids), -1, dtype=np.int64)
        position_of[rows] = np.arange(len(rows))
        positions = position_of[self.images.owner]
        chosen = np.flatnonzero(positions >= 0)
        return chosen, positions[chosen]

    def subset(self, rows: np.ndarray) -> Arrays:
        """These rows (positions, in this order) with their images: a held-out split, or the
        out-of-fold participants of an ensemble."""
        images = None
        if self.images is not None:
            chosen, owner = self.images_of(rows)
            images = ImageSet(self.images.pixels[chosen], owner)
        return Arrays([self.ids[i] for i in rows], self.labels[rows], self.present[rows],
                      {m: t[rows] for m, t in self.tables.items()}, images)


def build_arrays(cohort: Cohort, frame: pd.DataFrame, modalities: list[str],
                 encoders: dict[str, TabularEncoder], preprocessor: Preprocessor | None,
                 frames_per_video: int = 4, on_progress: Callable[[int], None] | None = None,
                 library: ImageLibrary | None = None) -> Arrays:
    """Arrays for the participants in ``frame`` (rows of ``cohort.participants``). A column the
    model knows but the cohort lacks counts as missing for everyone. Images come from
    ``library`` when given (already prepared with the same preprocessing), else from disk."""
    ids = frame["participant_id"].tolist()
    labels = frame["label"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    absent = [c for e in encoders.values() for c in e.columns if c not in frame.columns]
    frame = frame.assign(**{column: pd.NA for column in absent})  # a cohort without labs: all missing
    images = None
    if "image" in modalities and library is not None:
        images = library.subset(ids)
    elif "image" in modalities:
        images = load_images(cohort, ids, preprocessor, frames_per_video, on_progress)
    counts = None if images is None else np.bincount(images.owner, minlength=len(ids))
    tables = {m: encoders[m].transform(frame) for m in modalities if m != "image"}
    return Arrays(ids, labels, presence(frame, modalities, encoders, counts), tables, images)
