"""``sarco-edge bench``: per-stage latency on the device itself (no broker, no display), to
compare backends (TensorRT against ONNX Runtime) and check a device before it goes out.

The full replay benchmark with a broker (latency to a subscriber, sustained fps, memory over
a soak) is benchmarks/bench_edge.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.capture import SourceSpec, open_capture
from edge_app.inference import load_backend
from edge_app.stages import MuscleMeasure, device_preprocessor
from sarco_core.bundle import load_device_bundle
from sarco_core.imaging.pixels import crop, to_grey_u8
from sarco_core.imaging.region import ScanRegionNotFound, find_scan_region
from sarco_core.quality import QualityGate


@dataclass(frozen=True)
class StageFigures:
    backend: str
    frames: int
    frame_shape: tuple[int, ...]
    stage_ms: dict[str, tuple[float, float]]  # stage -> (p50, p95)
    fps: float


def benchmark_stages(bundle_path: Path, backend_name: str = "auto", engine: Path | None = None,
                     video: Path | None = None, frames: int = 200,
                     threads: int = 0, measure: MuscleMeasure | None = None) -> StageFigures:
    """Time grey conversion + gate, preprocessing, inference and (with ``measure``) the
    muscle measurement on ``frames`` frames (cycling through the video's first 100, or one
    synthetic frame); the region is detected once, as a session does."""
    bundle = load_device_bundle(bundle_path)
    backend = load_backend(backend_name, bundle.onnx_path, engine, threads)
    preprocessor = device_preprocessor(bundle)
    pictures = _frames(video)
    region = _region(pictures)
    gate = QualityGate()
    channels = backend.input_shape[0]
    timings: dict[str, list[float]] = {"grey+gate": [], "preprocess": [], "inference": []}
    if measure is not None:
        timings["measure"] = []
        measure(pictures[0], region)  # warm-up
    backend.outputs(np.repeat(preprocessor(crop(pictures[0], region)), channels,
                              axis=0)[None])  # warm-up: first runs allocate
    for index in range(frames):
        pixels = pictures[index % len(pictures)]
        started = time.perf_counter()
        gate.check(crop(to_grey_u8(pixels), region), index / 30.0)
        gated = time.perf_counter()
        tensor = np.repeat(preprocessor(crop(pixels, region)), channels, axis=0)[None]
        prepared = time.perf_counter()
        backend.outputs(tensor)
        done = time.perf_counter()
        timings["grey+gate"].append(gated - started)
        timings["preprocess"].append(prepared - gated)
        timings["inference"].append(done - prepared)
        if measure is not None:
            measure(pixels, region)
            timings["measure"].append(time.perf_counter() - done)
    totals = np.sum([np.asarray(v) for v in timings.values()], axis=0)
    return StageFigures(
        backend=backend.name, frames=frames, frame_shape=pictures[0].shape,
        stage_ms={stage: (float(np.percentile(v, 50) * 1e3), float(np.percentile(v, 95) * 1e3))
                  for stage, v in timings.items()},
        fps=float(1.0 / np.mean(totals)))


def _frames(video: Path | None) -> list[np.ndarray]:
    if video is None:
        rng = np.random.default_rng(0)
        frame = np.zeros((720, 1280, 3), np.uint8)
        frame[60:660, 340:940] = (rng.rayleigh(40.0, (600, 600, 1))).clip(0, 255).astype(np.uint8)
        return [frame]
    capture = open_capture(SourceSpec("file", str(video)))
    pictures = []
    while len(pictures) < 100:
        ok, pixels = capture.read()
        if not ok:
            break
        pictures.append(pixels)
    capture.release()
    if not pictures:
        raise ValueError(f"video {video}: no frame could be read")
    return pictures


def _region(pictures: list[np.ndarray]) -> tuple[int, int, int, int]:
    for pixels in pictures[len(pictures) // 2:] + pictures[: len(pictures) // 2]:
        try:
            return find_scan_region(to_grey_u8(pixels))
        except ScanRegionNotFound:
            continue
    height, width = pictures[0].shape[:2]
    return 0, 0, width, height

