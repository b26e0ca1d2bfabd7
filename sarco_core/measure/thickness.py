"""Muscle thickness in pixels, exactly as docs/measurements.md defines it.

Per image column with both aponeuroses present: (first row of the deep aponeurosis) - (last
row of the superficial aponeurosis) - 1, i.e. the number of pixels strictly between them. The
image's value is the median over the middle half of those columns: the columns whose position
lies between the 25th and the 75th percentile of the positions (``numpy.percentile``'s default
linear interpolation, both bounds included). Using the middle half keeps the ends, where a
drawn or predicted aponeurosis frays or stops at the scan's edge, out of the value, and the
median keeps a few bad columns from moving it.

The thickness is vertical (along the image's columns), as the TimTrack observers' ``height``
is; on a tilted muscle it is longer than the perpendicular distance by 1/cos(tilt).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sarco_core.measure.labels import DEEP, SUPERFICIAL, check_labels

OK = "ok"
NO_APONEUROSES = "no_aponeuroses"
ONE_APONEUROSIS_MISSING = "one_aponeurosis_missing"
NO_OVERLAP = "no_overlap"
NO_MUSCLE_BAND = "no_muscle_band"
THICKNESS_STATUSES = (OK, NO_APONEUROSES, ONE_APONEUROSIS_MISSING, NO_OVERLAP, NO_MUSCLE_BAND)
"""``no_overlap``: both aponeuroses are there but share no column; ``no_muscle_band``: they do,
but the median gap is zero or negative (touching, or deep drawn above superficial)."""


@dataclass(frozen=True)
class ApoEdges:
    """Where the muscle band is, per column: the edges of the aponeuroses that face the muscle.

    ``columns``: positions (ascending) of the columns holding both aponeuroses;
    ``superficial_last`` / ``deep_first``: last superficial and first deep row in each of them.
    """

    columns: np.ndarray
    superficial_last: np.ndarray
    deep_first: np.ndarray

    @property
    def gaps(self) -> np.ndarray:
        """Per-column thickness: the pixels strictly between the two aponeuroses."""
        return self.deep_first - self.superficial_last - 1


@dataclass(frozen=True)
class ThicknessResult:
    """``px`` (None unless ``status`` is ``ok``), why not, and the columns that made the value."""

    px: float | None
    status: str
    window: np.ndarray  # positions of the middle-half columns the median was taken over
    edges: ApoEdges | None


def aponeurosis_edges(labels: np.ndarray) -> tuple[ApoEdges | None, str]:
    """The facing edges of both aponeuroses, or None and the status saying why there are none."""
    labels = check_labels(labels)
    superficial, deep = labels == SUPERFICIAL, labels == DEEP
    has_superficial, has_deep = superficial.any(axis=0), deep.any(axis=0)
    if not has_superficial.any() and not has_deep.any():
        return None, NO_APONEUROSES
    if not has_superficial.any() or not has_deep.any():
        return None, ONE_APONEUROSIS_MISSING
    columns = np.flatnonzero(has_superficial & has_deep)
    if columns.size == 0:
        return None, NO_OVERLAP
    height = labels.shape[0]
    superficial_last = height - 1 - np.argmax(superficial[::-1, columns], axis=0)
    deep_first = np.argmax(deep[:, columns], axis=0)
    return ApoEdges(columns, superficial_last.astype(np.int64), deep_first.astype(np.int64)), OK


def middle_half(columns: np.ndarray) -> np.ndarray:
    """Boolean selection of the positions between their 25th and 75th percentile (inclusive)."""
    low, high = np.percentile(columns, [25.0, 75.0])
    return (columns >= low) & (columns <= high)


def muscle_thickness_px(labels: np.ndarray) -> ThicknessResult:
    """Median thickness over the middle half of the columns holding both aponeuroses."""
    edges, status = aponeurosis_edges(labels)
    if edges is None:
        return ThicknessResult(None, status, np.empty(0, np.int64), None)
    keep = middle_half(edges.columns)
    if not keep.any():  # a few scattered columns: no position lies in the middle half
        return ThicknessResult(None, NO_OVERLAP, edges.columns[keep], edges)
    value = float(np.median(edges.gaps[keep]))
    if value <= 0:
        return ThicknessResult(None, NO_MUSCLE_BAND, edges.columns[keep], edges)
    return ThicknessResult(value, OK, edges.columns[keep], edges)


def band_crop(edges: ApoEdges) -> tuple[int, int, np.ndarray]:
    """The muscle band within its bounding box: ``(top, left, mask)``, ``mask`` covering rows
    ``top..`` and columns ``left..`` (cheaper than a full-frame mask on a large frame)."""
    left, right = int(edges.columns[0]), int(edges.columns[-1]) + 1
    top = int(edges.superficial_last.min()) + 1
    bottom = max(top, int(edges.deep_first.max()))
    rows = np.arange(top, bottom)[:, None]
    mask = np.zeros((bottom - top, right - left), bool)
    mask[:, edges.columns - left] = (rows > edges.superficial_last) & (rows < edges.deep_first)
    return top, left, mask


def muscle_band(labels: np.ndarray, edges: ApoEdges | None = None) -> np.ndarray:
    """Boolean image of the muscle band: in each column holding both aponeuroses, the pixels
    strictly between the superficial one's last row and the deep one's first row."""
    if edges is None:
        edges, _ = aponeurosis_edges(labels)
    band = np.zeros(labels.shape, bool)
    if edges is None:
        return band
    top, left, mask = band_crop(edges)
    band[top:top + mask.shape[0], left:left + mask.shape[1]] = mask
    return band
