"""The per-frame stages between the source and the session: the scan gate, then inference.

Each is a small callable object with its settings and state in ``__init__`` (as a Holoscan
operator or a MONAI transform), built from the config in one place (``edge_app.app.compose``)
and called by the loop (``edge_app.pipeline``), so each can be tested, timed or swapped alone.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from edge_app.capture import Frame
from edge_app.inference import InferenceBackend
from edge_app.inference.onnx_runtime import OnnxRuntimeBackend
from sarco_core.bundle import DeviceBundle, MeasurementBundle
from sarco_core.imaging.pixels import Box, crop, to_grey_u8
from sarco_core.measure import FrameMeasurement
from sarco_core.measure.segmentation import measure_segmented, prepare_segmentation_input
from sarco_core.preprocess import Preprocessor
from sarco_core.quality import QualityGate, Verdict
from sarco_core.readout import ProbabilityReadout
from sarco_core.region_watch import RegionWatch

# one logger for the whole per-frame pipeline, whichever stage writes
log = logging.getLogger("edge_app.pipeline")


@dataclass
class PipelineStats:
    """Counters and timings the benchmark and the status line read (the loop counts frames,
    the MQTT sink its live readings)."""

    frames: int = 0
    rejected: int = 0  # frames the quality gate (or an untrusted scan region) held back
    errors: int = 0
    measure_errors: int = 0  # usable frames whose measurement failed (they still count)
    live_published: int = 0
    # frame index -> capture time of published live readings (the benchmark's latency)
    live_capture_times: dict[int, float] = field(default_factory=dict)  # newest 4096 only
    live_latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


@dataclass(frozen=True)
class GatedFrame:
    """A frame as the scan gate left it: where its scan is, and whether it may count."""

    frame: Frame
    region: Box | None
    verdict: Verdict


class ScanGate:
    """The quality gate stage: the frame in 8-bit grey, its scan region (``RegionWatch``) and
    the ``QualityGate`` on that crop. One stage because their states depend on each other: a
    new region (or a new frame size) restarts the gate's frame-to-frame comparisons, and a
    region is trusted only when it was found right after frames the gate passed."""

    def __init__(self, gate: QualityGate, watch: RegionWatch) -> None:
        self.gate = gate
        self.watch = watch
        self._frame_shape: tuple[int, ...] | None = None

    def reset(self) -> None:
        """A new session: find the region again and forget the previous frame."""
        self.watch.reset()
        self.gate.reset()

    def __call__(self, frame: Frame) -> GatedFrame:
        grey = to_grey_u8(frame.pixels)  # 8-bit for detection and the gate: fast
        if grey.shape != self._frame_shape:
            if self._frame_shape is not None:
                log.warning("frame size changed", extra={
                    "event": "frame_size_changed", "frame": frame.index,
                    "from": list(self._frame_shape), "to": list(grey.shape)})
            self._frame_shape = grey.shape
            self.watch.reset()
        region, changed = self.watch.locate(grey, frame.timestamp)
        if changed:
            self.gate.reset()  # another crop: frame-to-frame comparisons start over
        scan = None if region is None else crop(grey, region)
        verdict = self.gate.check(scan, frame.timestamp)
        if not self.watch.may_count(verdict.ok, frame.timestamp):
            verdict = Verdict("transition") if verdict.ok else verdict
        return GatedFrame(frame, region, verdict)


class Inference:
    """The preprocess and infer stages: the bundle's preprocessing on the scan region, the
    backend (TensorRT or ONNX Runtime), and the bundle's readout of the output as
    P(sarcopenia). Checks at construction that the three fit together, so an inconsistent
    bundle or config stops the start instead of every frame."""

    def __init__(self, bundle: DeviceBundle, backend: InferenceBackend,
                 readout: ProbabilityReadout, mm_per_pixel: float | None = None) -> None:
        self.bundle = bundle
        self.backend = backend
        self.readout = readout
        self.mm_per_pixel = mm_per_pixel
        self.preprocessor = device_preprocessor(bundle)
        self._check_model_input()

    def __call__(self, pixels: np.ndarray, region: Box) -> tuple[np.ndarray, float]:
        """The raw network output ``(K,)`` and the probability for the frame's ``pixels``
        inside ``region``. The bundle's preprocessing converts them to grey exactly as in
        training (grey conversion is per pixel, so cropping first gives the same values and
        costs a fraction)."""
        tensor = self.preprocessor(crop(pixels, region), self.mm_per_pixel)
        channels = self.backend.input_shape[0]
        if tensor.shape[0] != channels:
            tensor = np.repeat(tensor, channels, axis=0)  # grey to the model's 3 channels
        output = self.backend.outputs(tensor[np.newaxis])[0]
        return output, float(self.readout.probability(output[None])[0])

    def _check_model_input(self) -> None:
        size = self.bundle.preprocess.size
        channels, height, width = self.backend.input_shape
        if (height, width) != (size, size) or channels not in (1, 3):
            raise ValueError(f"{self.bundle.onnx_path}: the model takes {channels}x{height}x"
                             f"{width} but the bundle's preprocessing gives 1x{size}x{size}; "
                             "the bundle is inconsistent: export it again")
        if self.bundle.preprocess.field_of_view_mm is not None and not self.mm_per_pixel:
            raise ValueError("this model resamples to a physical pixel size: set "
                             "[capture] mm_per_pixel for the scanner's depth setting")


class MuscleMeasure:
    """The measure stage: the aponeurosis model on the gated frame's scan region, then the
    shared geometry (``sarco_core.measure``: thickness, pennation angle, echo intensity), by
    the recipe the bundle was trained with, so the device measures exactly what ``sarco
    measure run`` measures on the workstation. ONNX Runtime (CPU, or CUDA where present): the
    model is small, and TensorRT serves the classifier."""

    def __init__(self, bundle: MeasurementBundle, runner: OnnxRuntimeBackend,
                 mm_per_pixel: float | None = None) -> None:
        self.bundle = bundle
        self.runner = runner
        self.mm_per_pixel = mm_per_pixel
        size = bundle.recipe.size
        if runner.input_shape != (1, size, size):
            raise ValueError(f"{bundle.onnx_path}: the model takes {runner.input_shape} but its "
                             f"recipe gives 1x{size}x{size}; the measurement bundle is "
                             "inconsistent: train or export it again")

    def __call__(self, pixels: np.ndarray, region: Box) -> FrameMeasurement:
        prepared = prepare_segmentation_input(pixels, self.bundle.recipe, region)
        logits = self.runner.run(prepared.tensor)[0]
        return measure_segmented(prepared, logits, self.bundle.recipe, self.mm_per_pixel)[0]


def device_preprocessor(bundle: DeviceBundle) -> Preprocessor:
    """The bundle's preprocessing on a region the pipeline has already cropped: the region is
    tracked once per session (and re-checked), not searched for in every frame."""
    return Preprocessor(replace(bundle.preprocess, crop_to_scan=False))
