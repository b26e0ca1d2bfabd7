"""Muscle architecture from aponeurosis labels: thickness, pennation angle, echo intensity.

The measurement contract of docs/measurements.md, shared by the workstation (training,
evaluation, the study) and the device (live, per frame), so it lives here: numpy + OpenCV, no
model. A segmentation model (or the synthetic generator, or a converted DL_Track mask) gives a
label image, 0 other / 1 superficial / 2 deep aponeurosis; :func:`measure` turns it and the
grey frame into a :class:`FrameMeasurement`; :func:`aggregate_measurements` turns a session's frames
into a :class:`SessionMeasurement`. :mod:`sarco_core.measure.segmentation` is the segmentation
model's input and output recipe (frame -> model input; logits -> labels -> measurements).
"""

from sarco_core.measure.echo import ECHO_CAVEAT, echo_intensity
from sarco_core.measure.frame import MEASUREMENT_STATUSES, NO_SCAN_REGION, FrameMeasurement, measure
from sarco_core.measure.labels import DEEP, LABEL_NAMES, OTHER, SUPERFICIAL, check_labels, find_bands, labels_from_bands
from sarco_core.measure.pennation import PennationResult, deep_line_deg, pennation_angle
from sarco_core.measure.segmentation import (SegmentationInput, SegmentationRecipe, frame_labels, keep_main_bands,
                                             labels_from_logits, measure_segmented, prepare_segmentation_input)
from sarco_core.measure.session import SessionMeasurement, aggregate_measurements
from sarco_core.measure.thickness import (THICKNESS_STATUSES, ApoEdges, ThicknessResult, aponeurosis_edges,
                                          middle_half, muscle_band, muscle_thickness_px)

__all__ = [
    "DEEP", "ECHO_CAVEAT", "LABEL_NAMES", "MEASUREMENT_STATUSES", "NO_SCAN_REGION", "OTHER", "SUPERFICIAL", "THICKNESS_STATUSES",
    "ApoEdges", "FrameMeasurement", "PennationResult", "SegmentationInput", "SegmentationRecipe",
    "SessionMeasurement", "ThicknessResult", "aggregate_measurements", "aponeurosis_edges", "check_labels",
    "deep_line_deg", "echo_intensity", "find_bands", "frame_labels", "keep_main_bands",
    "labels_from_bands", "labels_from_logits", "measure", "measure_segmented", "middle_half", "muscle_band",
    "muscle_thickness_px", "pennation_angle", "prepare_segmentation_input",
]
