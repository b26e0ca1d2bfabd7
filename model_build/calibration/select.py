"""Representative calibration sets: `sarco-calibrate select BUNDLE COHORT --out CALIB`.

INT8 scales are fitted to the activations the calibration frames produce, so the frames must
look like the field: the training cohort's own centers, scanners, classes and muscles, still
images and the video frames the device would actually score (those that pass the quality gate:
no probe in the air, no frozen screen, no menu). Frames are drawn stratified by
(center, scanner, class, muscle, still or video); each stratum's share is its share of *files*
(a recording counts once, however many frames it has), at least one frame per stratum, and
inside a stratum the files take turns so that no recording dominates.

CALIB/
  inputs.npy          float32 (N, 1, S, S): the network's inputs, preprocessed by the bundle
  frames.csv          one row per input: participant, center, scanner, label, muscle, kind,
                      listing and row, path, frame index, quality state, stratum
  calibration.json    bundle, cohort, seed, strata (files, candidates, chosen), skipped files,
                      SHA-256 of inputs.npy and the preprocessing used
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from model_build.calibration import FRAME_STATES, CalibrationError
from model_build.calibration.bundles import SourceBundle, new_output_folder, publish_folder
from model_build.calibration.cohorts import calibration_rows
from model_build.calibration.frames import DECODE_WORKERS, FrameState, prepared_inputs, read_still, still_state, video_states
from model_build.cohort import Cohort
from model_build.models.data import MediaRow, media_rows
from sarco_core.files import write_json
from sarco_core.preprocess import PreprocessError, PreprocessParams

INPUTS, FRAMES, METADATA = "inputs.npy", "frames.csv", "calibration.json"
FORMAT_VERSION = 1
STRATUM_KEYS = ("center", "scanner", "label", "muscle", "kind")


@dataclass(frozen=True)
class CalibrationCandidate:
    """A file that has at least one frame in the wanted quality state."""

    participant_id: str
    media: MediaRow
    stratum: tuple[str, ...]
    frames: list[FrameState]


@dataclass
class CalibrationSet:
    """A calibration set in memory: inputs and what they are."""

    inputs: np.ndarray          # (N, 1, S, S) float32
    frames: pd.DataFrame        # one row per input (frames.csv)
    metadata: dict              # calibration.json
    path: Path | None = None

    def check_fits(self, bundle: SourceBundle) -> None:
        """Refuse a set made with other preprocessing or for a model trained on other data."""
        params = PreprocessParams(**self.metadata["preprocessing"])
        where = self.path / METADATA if self.path else METADATA
        if params != bundle.device.preprocess:
            raise CalibrationError(f"{where}: made with other preprocessing than {bundle.path} "
                                   f"({params} vs {bundle.device.preprocess}); fix: run `sarco-calibrate "
                                   "select` with this bundle")
        made_for = self.metadata.get("bundle", {}).get("data_hash")
        if made_for != bundle.data_hash:
            raise CalibrationError(f"{where}: drawn for a model trained on other data (data hash "
                                   f"{str(made_for)[:12]}... vs {str(bundle.data_hash)[:12]}...); its frames may "
                                   "overlap that model's hold-out; fix: run `sarco-calibrate select` with this bundle")


def select_calibration_set(bundle: SourceBundle, cohort: Cohort, cohort_name: str, n: int, seed: int = 0,
                           frame_state: str = "ok",
                           on_file: Callable[[int], None] | None = None) -> CalibrationSet:
    """Draw up to ``n`` inputs from ``cohort_name`` (the training cohort, hold-out excluded).

    ``frame_state`` other than "ok" builds a deliberately unrepresentative set (e.g. "no_tissue":
    probe in the air) to show that the gate refuses what it gives.
    """
    if n < 1:
        raise CalibrationError(f"--n {n}: must be at least 1 (512 is a good size)")
    if frame_state not in FRAME_STATES:
        raise CalibrationError(f"--frame-state {frame_state}: use one of {', '.join(FRAME_STATES)}")
    rows = calibration_rows(bundle, cohort, cohort_name)
    candidates, skipped = _candidates(cohort, rows, bundle.device.preprocess, frame_state, on_file)
    if not candidates:
        raise CalibrationError(f"{cohort.root}: no still or video frame of the {len(rows)} training participants "
                               f"of {cohort_name!r} is in quality state {frame_state!r}; fix: check the media "
                               "with `sarco validate` and the quality gate settings (docs/edge.md)")
    chosen = _draw(candidates, n, seed)

    def prepared(item: tuple[CalibrationCandidate, list[FrameState]]) -> list[np.ndarray]:
        candidate, states = item
        try:
            return prepared_inputs(candidate.media, states, bundle.device.preprocess)
        except (OSError, ValueError, PreprocessError) as error:
            raise CalibrationError(f"{candidate.media.listing} row {candidate.media.row} "
                                   f"({candidate.media.path}): {error}") from None

    with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
        inputs = [array for arrays in pool.map(prepared, chosen) for array in arrays]
    table = pd.DataFrame([_frame_row(candidate, state, cohort) for candidate, states in chosen for state in states])
    metadata = _metadata(bundle, cohort, cohort_name, n, seed, frame_state, candidates, table, skipped)
    return CalibrationSet(np.stack(inputs).astype(np.float32), table, metadata)


def _candidates(cohort: Cohort, rows: pd.DataFrame, params: PreprocessParams, frame_state: str,
                on_file: Callable[[int], None] | None) -> tuple[list[CalibrationCandidate], list[dict]]:
    listed = media_rows(cohort, rows["participant_id"].tolist())
    details = _listing_details(cohort)
    jobs = [(participant, media) for _, participant in rows.iterrows()
            for media in listed[participant["participant_id"]]]

    def judged(media: MediaRow) -> tuple[list[FrameState], str | None]:
        """The frames' states, or why the file is skipped."""
        if params.field_of_view_mm is not None and media.mm_per_pixel is None and media.depth_mm is None:
            return [], "pixel size unknown (the model resamples to mm)"
        try:
            return _states(media), None
        except (OSError, ValueError) as error:
            return [], f"cannot be read ({error})"

    candidates, skipped = [], []
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:  # map keeps the order
        for (participant, media), (states, problem) in zip(jobs, pool.map(judged, [media for _, media in jobs])):
            if problem:
                skipped.append({"listing": media.listing, "row": media.row,
                                "path": str(media.path.relative_to(cohort.root)), "reason": problem})
            wanted = [state for state in states if state.state == frame_state]
            if wanted:
                muscle, scanner = details.get((media.listing, media.row), ("", ""))
                kind = "still" if media.listing == "images.csv" else "video"
                stratum = (_text(participant.get("center")), scanner, str(int(participant["label"])), muscle, kind)
                candidates.append(CalibrationCandidate(participant["participant_id"], media, stratum, wanted))
            if on_file is not None:
                on_file(1)
    return candidates, skipped


def _states(media: MediaRow) -> list[FrameState]:
    if media.listing == "images.csv":
        return [FrameState(0, still_state(read_still(media)))]
    return video_states(media.path, media.format)


def _listing_details(cohort: Cohort) -> dict[tuple[str, int], tuple[str, str]]:
    """(listing, row) -> (muscle, scanner), empty text when not given."""
    details = {}
    for listing, frame in (("images.csv", cohort.images), ("videos.csv", cohort.videos)):
        if frame is not None:
            for row, item in frame.iterrows():
                details[(listing, int(row))] = (_text(item.get("muscle")), _text(item.get("scanner")))
    return details


def _text(value: object) -> str:
    return "" if value is None or pd.isna(value) else str(value)


def _draw(candidates: list[CalibrationCandidate], n: int,
          seed: int) -> list[tuple[CalibrationCandidate, list[FrameState]]]:
    """Stratified draw; returns each used file with its chosen frames (in frame order)."""
    strata: dict[tuple[str, ...], list[CalibrationCandidate]] = defaultdict(list)
    for candidate in candidates:
        strata[candidate.stratum].append(candidate)
    keys = sorted(strata)
    quotas = _quotas([len(strata[k]) for k in keys], [sum(len(c.frames) for c in strata[k]) for k in keys], n)
    chosen: dict[int, list[FrameState]] = defaultdict(list)
    index_of = {id(c): i for i, c in enumerate(candidates)}
    for number, (key, quota) in enumerate(zip(keys, quotas)):
        rng = np.random.default_rng([seed, number])
        files = [strata[key][i] for i in rng.permutation(len(strata[key]))]
        queues = [[c.frames[i] for i in rng.permutation(len(c.frames))] for c in files]
        taken = 0
        while taken < quota:  # files take turns, one frame each
            for candidate, queue in zip(files, queues):
                if queue and taken < quota:
                    chosen[index_of[id(candidate)]].append(queue.pop())
                    taken += 1
    return [(candidates[i], sorted(states, key=lambda s: s.frame)) for i, states in sorted(chosen.items())]


def _quotas(files: list[int], capacity: list[int], n: int) -> list[int]:
    """Frames per stratum: proportional to its files (largest remainder), at least one each when
    ``n`` allows, never more than it has; what a full stratum cannot take goes to the others."""
    total = min(n, sum(capacity))
    quotas = [0] * len(files)
    if total >= len(files):
        quotas = [1] * len(files)
    while sum(quotas) < total:
        open_strata = [i for i in range(len(files)) if quotas[i] < capacity[i]]
        left = total - sum(quotas)
        weight = sum(files[i] for i in open_strata)
        shares = {i: left * files[i] / weight for i in open_strata}
        extra = {i: min(int(shares[i]), capacity[i] - quotas[i]) for i in open_strata}
        if sum(extra.values()) == 0:  # hand out the remainder, largest share first
            for i in sorted(open_strata, key=lambda i: (-(shares[i] % 1), i))[:left]:
                extra[i] = 1
        for i, count in extra.items():
            quotas[i] += count
    return quotas


def _frame_row(candidate: CalibrationCandidate, state: FrameState, cohort: Cohort) -> dict:
    media = candidate.media
    return {"participant_id": candidate.participant_id,
            **dict(zip(STRATUM_KEYS, candidate.stratum)),
            "listing": media.listing, "row": media.row, "path": str(media.path.relative_to(cohort.root)),
            "frame": state.frame, "state": state.state, "stratum": "|".join(candidate.stratum)}


def _metadata(bundle: SourceBundle, cohort: Cohort, cohort_name: str, n: int, seed: int, frame_state: str,
              candidates: list[CalibrationCandidate], table: pd.DataFrame, skipped: list[dict]) -> dict:
    strata = []
    for key in sorted({c.stratum for c in candidates}):
        members = [c for c in candidates if c.stratum == key]
        strata.append({**dict(zip(STRATUM_KEYS, key)), "files": len(members),
                       "candidate_frames": sum(len(c.frames) for c in members),
                       "chosen": int((table["stratum"] == "|".join(key)).sum())})
    return {
        "format_version": FORMAT_VERSION,
        "why": (f"{len(table)} inputs drawn from the training participants of cohort {cohort_name!r} "
                f"(hold-out excluded), frames in quality state {frame_state!r}, stratified by "
                f"{', '.join(STRATUM_KEYS)}; a stratum's share follows its number of files"),
        "bundle": {"path": str(bundle.path), "model_sha256": bundle.device.model_sha256,
                   "data_hash": bundle.data_hash},
        "cohort": {"path": str(cohort.root), "name": cohort_name},
        "n_requested": n, "n": len(table), "seed": seed, "frame_state": frame_state,
        "preprocessing": asdict(bundle.device.preprocess),
        "strata": strata, "skipped": skipped,
    }


def save_calibration_set(calibration: CalibrationSet, out: Path) -> Path:
    """Write CALIB atomically (a hidden folder renamed at the end)."""
    partial = new_output_folder(out)
    try:
        buffer = io.BytesIO()
        np.save(buffer, calibration.inputs, allow_pickle=False)
        data = buffer.getvalue()
        (partial / INPUTS).write_bytes(data)
        calibration.frames.to_csv(partial / FRAMES, index=False, quoting=csv.QUOTE_MINIMAL)
        metadata = {**calibration.metadata, "inputs_sha256": hashlib.sha256(data).hexdigest(),
                    "shape": list(calibration.inputs.shape)}
        write_json(partial / METADATA, metadata)
        publish_folder(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    calibration.metadata, calibration.path = metadata, out
    return out


def load_calibration_set(folder: str | Path) -> CalibrationSet:
    """Read CALIB, checking that inputs.npy is the file calibration.json describes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: not a folder; fix: give the --out folder of `sarco-calibrate select`")
    try:
        metadata = json.loads((folder / METADATA).read_text(encoding="utf-8"))
        data = (folder / INPUTS).read_bytes()
        frames = pd.read_csv(folder / FRAMES, dtype=str, keep_default_na=False)
    except FileNotFoundError as error:
        raise CalibrationError(f"{error.filename}: not found; the calibration set is incomplete; fix: run "
                               "`sarco-calibrate select` again") from None
    except json.JSONDecodeError as error:
        raise CalibrationError(f"{folder / METADATA}: not valid JSON ({error})") from None
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CalibrationError(f"{folder / METADATA}: format_version {metadata.get('format_version')!r} is not "
                               f"{FORMAT_VERSION}")
    if hashlib.sha256(data).hexdigest() != metadata.get("inputs_sha256"):
        raise CalibrationError(f"{folder / INPUTS}: content differs from the SHA-256 in {METADATA} (changed or "
                               "damaged); fix: run `sarco-calibrate select` again")
    inputs = np.load(io.BytesIO(data), allow_pickle=False)
    if inputs.ndim != 4 or inputs.dtype != np.float32 or len(inputs) != len(frames) or len(inputs) == 0:
        raise CalibrationError(f"{folder / INPUTS}: expected float32 (N, C, S, S) with one row per line of "
                               f"{FRAMES}, got {inputs.dtype} {inputs.shape} and {len(frames)} lines")
    return CalibrationSet(inputs, frames, metadata, folder)


def file_count(cohort: Cohort, rows: pd.DataFrame) -> int:
    """How many files :func:`select_calibration_set` will open (for a progress bar)."""
    return sum(len(v) for v in media_rows(cohort, rows["participant_id"].tolist()).values())
