"""Muscle architecture from aponeurosis labels: thickness, pennation angle, echo intensity.

The measurement contract of docs/measurements.md, shared by the workstation (training,
evaluation, the study) and the device (live, per frame), so it lives here: numpy + OpenCV, no
model. A segmentation model (or the synthetic generator, or a converted DL_Track mask) gives a
label image, 0 other / 1 superficial / 2 deep aponeurosis; :func:`measure` turns it and the
grey frame into a :class:`FrameMeasurement`; :func:`aggregate_measurements` turns a session's frames
into a :class:`SessionMeasurement`.
"""

from sarco_core.measure.echo import ECHO_CAVEAT, echo_intensity
from sarco_core.measure.frame import MEASUREMENT_STATUSES, FrameMeasurement, measure
from sarco_core.measure.labels import DEEP, LABEL_NAMES, OTHER, SUPERFICIAL, check_labels, find_bands, labels_from_bands
from sarco_core.measure.pennation import PennationResult, deep_line_deg, fascicle_orientation, pennation_angle
from sarco_core.measure.session import SessionMeasurement, aggregate_measurements
from sarco_core.measure.thickness import (THICKNESS_STATUSES, ApoEdges, ThicknessResult, aponeurosis_edges,
                                          middle_half, muscle_band, muscle_thickness_px)

__all__ = [
    "DEEP", "ECHO_CAVEAT", "LABEL_NAMES", "MEASUREMENT_STATUSES", "OTHER", "SUPERFICIAL", "THICKNESS_STATUSES",
    "ApoEdges", "FrameMeasurement", "PennationResult", "SessionMeasurement", "ThicknessResult",
    "aggregate_measurements", "aponeurosis_edges", "check_labels", "deep_line_deg", "echo_intensity",
    "fascicle_orientation", "find_bands", "labels_from_bands", "measure", "middle_half", "muscle_band",
    "muscle_thickness_px", "pennation_angle",
]
