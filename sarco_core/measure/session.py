"""A session's measurements: the median of the frames, its spread, and how many frames counted.

A live session measures every usable frame; one frame's value moves with probe pressure, tilt
and the muscle's contraction, so the session reports the median over frames (robust to a few
frames where the segmentation slipped) and its spread.

Spread is the interquartile range (75th minus 25th percentile, ``numpy.percentile``'s default
linear interpolation), in the quantity's own unit. IQR rather than the median absolute deviation
because it reads directly as "half of the frames lie within this range", with no scale factor to
remember; it is 0 for a single frame.

Each quantity's median and spread are taken over the frames where that quantity was measured
(pennation can be missing on a frame whose thickness was measured). ``frames_measured`` counts
the frames with a thickness, the primary measurement; ``frames_total`` all frames offered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from sarco_core.measure.frame import FrameMeasurement

QUANTITIES = ("muscle_thickness_px", "muscle_thickness_mm", "pennation_deg", "echo_intensity")
OK = "ok"
NO_FRAMES_MEASURED = "no_frames_measured"


@dataclass(frozen=True)
class SessionMeasurement:
    """Per-quantity medians over a session's frames, their IQR (``spread``) and frame counts."""

    muscle_thickness_px: float | None
    muscle_thickness_mm: float | None
    pennation_deg: float | None
    echo_intensity: float | None
    spread: dict[str, float | None] = field(default_factory=dict)
    frames_measured: int = 0
    frames_total: int = 0
    status: str = NO_FRAMES_MEASURED

    def to_dict(self) -> dict:
        return asdict(self)


def aggregate_measurements(measurements: Iterable[FrameMeasurement]) -> SessionMeasurement:
    """Median, IQR and counts over per-frame measurements (see the module docstring)."""
    frames = list(measurements)
    medians: dict[str, float | None] = {}
    spread: dict[str, float | None] = {}
    for name in QUANTITIES:
        values = np.array([getattr(frame, name) for frame in frames if getattr(frame, name) is not None], float)
        if values.size == 0:
            medians[name] = spread[name] = None
            continue
        low, high = np.percentile(values, [25.0, 75.0])
        medians[name], spread[name] = float(np.median(values)), float(high - low)
    measured = sum(frame.muscle_thickness_px is not None for frame in frames)
    return SessionMeasurement(**medians, spread=spread, frames_measured=measured, frames_total=len(frames),
                              status=OK if measured else NO_FRAMES_MEASURED)
