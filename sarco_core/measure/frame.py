"""One frame's measurements: the contract the workstation and the device both call.

``measure(grey_u8, labels, mm_per_pixel)`` runs thickness, echo intensity and pennation on one
grey frame and its aponeurosis labels (from a segmentation model, the synthetic generator or
a converted DL_Track mask) and returns a :class:`FrameMeasurement`. Both stages call this one
function, so a number on the device's readout and the same number in the study are computed
the same way.

``status`` is ``ok`` when all three were measured. Otherwise it names the first reason:
a thickness status (``no_aponeuroses``, ``one_aponeurosis_missing``, ``no_overlap``,
``no_muscle_band``), in which case nothing is measured, or ``no_fascicle_orientation``, in
which case thickness and echo intensity are given and only the pennation angle is None.
``no_scan_region`` is for a frame that has no B-mode area to segment (a blank or UI-only frame):
the segmentation recipe (:mod:`sarco_core.measure.segmentation`) gives up before the model runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sarco_core.imaging.pixels import to_grey_u8
from sarco_core.imaging.scale import PixelSize
from sarco_core.measure.echo import echo_intensity
from sarco_core.measure.labels import check_labels
from sarco_core.measure.pennation import pennation_angle
from sarco_core.measure.thickness import OK, THICKNESS_STATUSES, muscle_thickness_px

NO_FASCICLE_ORIENTATION = "no_fascicle_orientation"
NO_SCAN_REGION = "no_scan_region"
MEASUREMENT_STATUSES = THICKNESS_STATUSES + (NO_FASCICLE_ORIENTATION, NO_SCAN_REGION)


@dataclass(frozen=True)
class FrameMeasurement:
    """One frame's muscle architecture. Thickness is vertical, in pixels of the frame given
    (and mm when the pixel size is known); angles in degrees; echo intensity on 0-255."""

    muscle_thickness_px: float | None
    muscle_thickness_mm: float | None
    pennation_deg: float | None
    echo_intensity: float | None
    status: str

    def __post_init__(self) -> None:
        if self.status not in MEASUREMENT_STATUSES:
            raise ValueError(f"unknown measurement status {self.status!r}; use one of {MEASUREMENT_STATUSES}")

    @classmethod
    def not_measured(cls, status: str) -> FrameMeasurement:
        return cls(None, None, None, None, status)

    def to_dict(self) -> dict:
        return asdict(self)


def mm_per_pixel_y(mm_per_pixel: float | PixelSize | None) -> float | None:
    """Vertical pixel size in mm (thickness runs along the columns), or None when unknown."""
    if mm_per_pixel is None:
        return None
    if isinstance(mm_per_pixel, PixelSize):
        return mm_per_pixel.mm_per_pixel_y
    value = float(mm_per_pixel)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"mm_per_pixel must be a positive number of mm, got {mm_per_pixel!r}")
    return value


def measure(grey_u8: np.ndarray, labels: np.ndarray, mm_per_pixel: float | PixelSize | None = None) -> FrameMeasurement:
    """Thickness, pennation and echo intensity of one frame (see the module docstring).

    ``grey_u8``: the frame as 2-D uint8 (a colour frame is converted with ``to_grey_u8``);
    ``labels``: same size, 0 other / 1 superficial / 2 deep aponeurosis; ``mm_per_pixel``: a
    number or a :class:`~sarco_core.imaging.scale.PixelSize` (its y size is used), or None.
    """
    labels = check_labels(labels)
    if grey_u8.ndim != 2 or grey_u8.dtype != np.uint8:
        grey_u8 = to_grey_u8(grey_u8)
    if grey_u8.shape != labels.shape:
        raise ValueError(f"grey image {grey_u8.shape} and labels {labels.shape} differ in size")
    scale = mm_per_pixel_y(mm_per_pixel)
    thickness = muscle_thickness_px(labels)
    if thickness.status != OK:
        return FrameMeasurement.not_measured(thickness.status)
    echo = echo_intensity(grey_u8, labels, thickness.edges)
    pennation = pennation_angle(grey_u8, labels, thickness.edges)
    return FrameMeasurement(
        muscle_thickness_px=thickness.px,
        muscle_thickness_mm=None if scale is None else thickness.px * scale,
        pennation_deg=pennation.pennation_deg,
        echo_intensity=echo,
        status=OK if pennation.pennation_deg is not None else NO_FASCICLE_ORIENTATION,
    )
