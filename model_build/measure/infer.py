"""Running a measurement model bundle on frames (workstation side, ONNX Runtime).

The frame is prepared and the model's answer read by the shared recipe
(:mod:`sarco_core.measure.segmentation`), so these numbers are the ones the device computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from sarco_core.bundle import (APONEUROSIS_INPUT, APONEUROSIS_OUTPUT, MeasurementBundle, default_measurement_bundle,
                               load_measurement_bundle)
from sarco_core.imaging import Box, PixelSize, ScanRegionNotFound
from sarco_core.measure import NO_SCAN_REGION, FrameMeasurement
from sarco_core.measure.segmentation import SegmentationInput, measure_segmented, prepare_segmentation_input


@dataclass(frozen=True)
class MeasuredFrame:
    """One frame's measurements, with the crop and labels they came from (None: no scan region)."""

    measurement: FrameMeasurement
    prepared: SegmentationInput | None
    labels: np.ndarray | None  # the crop's labels


class AponeurosisModel:
    """A measurement bundle loaded into ONNX Runtime (``folder`` None: the shipped model)."""

    def __init__(self, folder: str | Path | None = None, threads: int | None = None) -> None:
        self.bundle: MeasurementBundle = load_measurement_bundle(
            default_measurement_bundle() if folder is None else folder)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(self.bundle.onnx_path), options,
                                                    providers=["CPUExecutionProvider"])

    @property
    def recipe(self):
        return self.bundle.recipe

    def logits(self, tensors: np.ndarray) -> np.ndarray:
        """``(N, 1, S, S)`` model inputs -> ``(N, 3, S, S)`` logits."""
        return self.session.run([APONEUROSIS_OUTPUT], {APONEUROSIS_INPUT: np.ascontiguousarray(tensors, np.float32)})[0]

    def measure(self, pixels: np.ndarray, mm_per_pixel: float | PixelSize | None = None,
                box: Box | None = None) -> MeasuredFrame:
        """One frame: scan region (``box`` when known), model, labels, measurements."""
        try:
            prepared = prepare_segmentation_input(pixels, self.recipe, box)
        except ScanRegionNotFound:
            return MeasuredFrame(FrameMeasurement.not_measured(NO_SCAN_REGION), None, None)
        measurement, labels = measure_segmented(prepared, self.logits(prepared.tensor)[0], self.recipe, mm_per_pixel)
        return MeasuredFrame(measurement, prepared, labels)
