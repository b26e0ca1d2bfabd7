"""Frames of a cohort's media as the device would judge them: the quality gate's state of each
still and of each video frame, and the frame's pixels prepared as the network's input.

Video frames go through the same chain as the device's scan gate (``edge_app.stages.ScanGate``):
the scan region tracked per recording (``RegionWatch``), the quality gate on the grey crop, and
frames that pass counted only once the region is trusted. A still has no previous frame, so only the
gate's single-frame checks apply to it (a scan region is found; the probe touches tissue).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from model_build.models.data import MediaRow
from sarco_core.imaging.pixels import Box, crop, to_grey_u8
from sarco_core.imaging.region import ScanRegionNotFound, find_scan_region
from sarco_core.imaging.tracker import ScanRegionTracker
from sarco_core.preprocess import PreprocessParams, Preprocessor
from sarco_core.quality import QualityGate, Verdict
from sarco_core.region_watch import RegionWatch

DEFAULT_FPS = 30.0  # when a recording does not say (the gate's settle time is in seconds)
DECODE_WORKERS = 4  # files decoded at once by select and verify: video decoding and OpenCV release the GIL


@dataclass(frozen=True)
class FrameState:
    """One frame of one file: its index in the file, the gate's state, and the crop the device
    would take (None for a still, which the preprocessing crops itself)."""

    frame: int
    state: str
    region: Box | None = None


def still_state(pixels: np.ndarray) -> str:
    """``ok``, ``no_region`` or ``no_tissue`` for a single image."""
    grey = to_grey_u8(pixels)
    try:
        scan = crop(grey, find_scan_region(grey))
    except ScanRegionNotFound:
        return "no_region"
    verdict = QualityGate().check(scan, 0.0)
    # The first frame a gate sees is always a "transition" (nothing to compare with yet).
    return "ok" if verdict.state == "transition" else verdict.state


def video_states(path: Path, media_format: str) -> list[FrameState]:
    """The gate's state of every frame of a recording, in order."""
    return [state for state, _ in _gated(path, media_format)]


def passing_inputs(media: MediaRow, params: PreprocessParams) -> list[tuple[FrameState, np.ndarray]]:
    """The network input of every frame of a recording that passes the gate, in one pass."""
    device = _device_preprocessor(params)
    return [(state, _device_input(device, pixels, state, params, media))
            for state, pixels in _gated(media.path, media.format) if state.state == "ok"]


def _gated(path: Path, media_format: str) -> Iterator[tuple[FrameState, np.ndarray]]:
    """Each frame with its state, through the device's region tracking and quality gate."""
    gate, watch = QualityGate(), RegionWatch(ScanRegionTracker())
    for index, (at, pixels) in enumerate(video_frames(path, media_format)):
        grey = to_grey_u8(pixels)
        region, changed = watch.locate(grey, at)
        if changed:
            gate.reset()
        verdict = gate.check(None if region is None else crop(grey, region), at)
        if not watch.may_count(verdict.ok, at):
            verdict = Verdict("transition") if verdict.ok else verdict
        yield FrameState(index, verdict.state, None if region is None else tuple(int(v) for v in region)), pixels


def video_frames(path: Path, media_format: str) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, pixels) of every frame, decoded one at a time (a recording does not fit in
    memory at 1280x720 for long)."""
    if media_format == "dicom":
        yield from _dicom_frames(path)
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError("OpenCV cannot open it")
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        index = 0
        while True:
            ok, pixels = capture.read()
            if not ok:
                break
            yield index / fps, pixels
            index += 1
    finally:
        capture.release()


def _dicom_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(path.read_bytes()))
    pixels = dataset.pixel_array
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        pixels = pixels.max() - pixels
    frame_ms = float(dataset.get("FrameTime", 0) or 0) or 1000.0 / float(dataset.get("CineRate", 0) or DEFAULT_FPS)
    frames = pixels if int(dataset.get("NumberOfFrames", 1) or 1) > 1 else pixels[np.newaxis]
    for index, frame in enumerate(frames):
        yield index * frame_ms / 1000.0, frame


def read_still(media: MediaRow) -> np.ndarray:
    from model_build.models.data import read_frames

    frames, _ = read_frames(media.path, media.format, 1)
    return frames[0]


def prepared_inputs(media: MediaRow, chosen: list[FrameState], params: PreprocessParams) -> list[np.ndarray]:
    """The network inputs ``(1, S, S)`` of the chosen frames of one file, computed as the device
    computes them: a still through the bundle's preprocessing; a video frame cropped to its
    tracked region, then the same preprocessing without a second region search."""
    if media.listing == "images.csv":
        return [Preprocessor(params)(read_still(media), media.mm_per_pixel, media.depth_mm)]
    device = _device_preprocessor(params)
    wanted = {state.frame: state for state in chosen}
    inputs: dict[int, np.ndarray] = {}
    for index, (_, pixels) in enumerate(video_frames(media.path, media.format)):
        if index in wanted:
            inputs[index] = _device_input(device, pixels, wanted[index], params, media)
        if len(inputs) == len(wanted):
            break
    missing = sorted(set(wanted) - set(inputs))
    if missing:
        raise ValueError(f"frames {missing[:5]} could not be decoded a second time")
    return [inputs[state.frame] for state in chosen]


def _device_preprocessor(params: PreprocessParams) -> Preprocessor:
    """As edge_app.stages.device_preprocessor: the region is already cropped."""
    return Preprocessor(replace(params, crop_to_scan=False))


def _device_input(device: Preprocessor, pixels: np.ndarray, state: FrameState, params: PreprocessParams,
                  media: MediaRow) -> np.ndarray:
    scan = crop(pixels, state.region) if params.crop_to_scan and state.region is not None else pixels
    return device(scan, media.mm_per_pixel, media.depth_mm)
