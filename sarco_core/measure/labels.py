"""The aponeurosis label convention, and DL_Track's binary masks turned into it.

Every measurement reads one label image: per pixel ``OTHER`` (0), ``SUPERFICIAL`` (1, the
superficial aponeurosis) or ``DEEP`` (2, the deep aponeurosis). A segmentation model writes it,
the synthetic generator writes it, and the public DL_Track masks are converted to it here, so
training targets, evaluation and the device all mean the same thing by "superficial" and "deep".

DL_Track's masks (``../shared/data/dl-track-aponeuroses``) mark every aponeurosis as a band of
foreground pixels without saying which is which, and often mark more than two: the deep
aponeurosis of the next muscle down (soleus under gastrocnemius), an aponeurosis drawn as two
diverging sheets, or (rarely) an intermediate one. :func:`labels_from_bands` applies one rule,
the one DL_Track itself uses to measure (its ``doCalculations`` takes the two uppermost
contours):

1. Foreground pixels are split into 8-connected components; specks (area below 5 % of the
   largest component, or narrower than 3 % of the image width and 8 pixels) are dropped.
2. Components that lie side by side (they share at most 10 % of their columns) and on one line
   (the band's straight-line fit, extrapolated, passes within ``max(8 px, 3 % of the height)`` of
   the component's centre line) are one band: an aponeurosis broken by a gap in the drawing.
3. Bands are ordered from the skin down by their fitted centre line at the middle column of
   the foreground. The first is the superficial aponeurosis; when the second lies closer under
   it than 5 % of the image height (median gap over their shared columns) it is a second sheet
   of the same aponeurosis (one DL_Track mask draws it so; no muscle in the set is thinner than
   12 % of its image) and is superficial too. The next band is the deep aponeurosis; every
   further band is ``OTHER`` (it belongs to a deeper muscle, or it is the lower sheet of a split
   deep aponeurosis, whose upper sheet already bounds the muscle).

Consequences to know: an intermediate aponeurosis (a bipennate muscle's central one) lying
between the two true ones becomes "deep", so thickness is that of the superficial compartment
only; the masks carry no label that could tell it from the next muscle's aponeurosis. A mask
with a single band labels it ``SUPERFICIAL``: the superficial aponeurosis lies just under the
skin and subcutaneous fat and is nearly always in view, while the deep one is the one that falls
below the imaging depth or fades (the three single-band DL_Track masks all mark the upper one).
Measurements on such a label image report ``one_aponeurosis_missing`` either way.
"""

from __future__ import annotations

import cv2
import numpy as np

OTHER = 0
SUPERFICIAL = 1
DEEP = 2
LABEL_NAMES = {OTHER: "other", SUPERFICIAL: "superficial aponeurosis", DEEP: "deep aponeurosis"}

_SPECK_AREA = 0.05       # of the largest component's area
_SPECK_WIDTH = 0.03      # of the image width (and at least _SPECK_MIN_WIDTH pixels)
_SPECK_MIN_WIDTH = 8
_SIDE_BY_SIDE = 0.10     # at most this share of a component's columns may overlap a band's
_ON_LINE_PX = 8.0        # ... and its centre line must lie within max(this, _ON_LINE_FRACTION * height)
_ON_LINE_FRACTION = 0.03
_SAME_APONEUROSIS = 0.05  # of the image height: a closer second band is a sheet of the first


def check_labels(labels: np.ndarray) -> np.ndarray:
    """The label image itself when it is a 2-D integer array of 0/1/2, else a ValueError."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D array, got {getattr(labels, 'shape', type(labels).__name__)}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise ValueError(f"labels must be integers (0 other, 1 superficial, 2 deep), got {labels.dtype}")
    if labels.size and (int(labels.max()) > DEEP or int(labels.min()) < OTHER):
        raise ValueError(f"labels must hold only 0 (other), 1 (superficial) and 2 (deep); "
                         f"found values {sorted(int(v) for v in np.unique(labels))}")
    return labels


def find_bands(mask: np.ndarray) -> list[np.ndarray]:
    """The aponeurosis bands of a binary mask as boolean images, ordered from the skin down.

    ``mask``: 2-D (or HxWxC, any channel counts) array whose non-zero pixels are aponeurosis.
    The grouping rule is the module's docstring, steps 1-3.
    """
    if not isinstance(mask, np.ndarray) or mask.ndim not in (2, 3):
        raise ValueError(f"mask must be a 2-D (or HxWxC) array, got {getattr(mask, 'shape', type(mask).__name__)}")
    foreground = (mask > 0) if mask.ndim == 2 else (mask > 0).any(axis=2)
    height, width = foreground.shape
    count, component_of, stats, _ = cv2.connectedComponentsWithStats(foreground.astype(np.uint8), connectivity=8)
    if count <= 1:
        return []
    areas = stats[1:, cv2.CC_STAT_AREA]
    min_width = max(_SPECK_MIN_WIDTH, _SPECK_WIDTH * width)
    kept = [k + 1 for k in np.argsort(-areas, kind="stable")
            if areas[k] >= _SPECK_AREA * areas.max() and stats[k + 1, cv2.CC_STAT_WIDTH] >= min_width]
    tolerance = max(_ON_LINE_PX, _ON_LINE_FRACTION * height)

    bands: list[dict] = []  # each: components, columns (set), centre-line points
    for component in kept:  # largest first, so a band's line comes from its longest piece
        columns, centres = _centre_line(component_of == component)
        for band in bands:
            shared = len(band["columns"].intersection(columns.tolist()))
            if shared > _SIDE_BY_SIDE * len(columns):
                continue
            line = np.polyfit(band["x"], band["y"], 1) if len(band["x"]) > 1 else (0.0, band["y"][0])
            if np.median(np.abs(np.polyval(line, columns) - centres)) <= tolerance:
                band["components"].append(component)
                band["columns"].update(columns.tolist())
                band["x"] = np.concatenate([band["x"], columns])
                band["y"] = np.concatenate([band["y"], centres])
                break
        else:
            bands.append({"components": [component], "columns": set(columns.tolist()), "x": columns, "y": centres})

    all_columns = np.flatnonzero(foreground.any(axis=0))
    middle = 0.5 * (all_columns[0] + all_columns[-1])

    def depth(band: dict) -> float:
        line = np.polyfit(band["x"], band["y"], 1) if len(band["x"]) > 1 else (0.0, band["y"][0])
        return float(np.polyval(line, middle))

    bands.sort(key=depth)
    return [np.isin(component_of, band["components"]) for band in bands]


def labels_from_bands(mask: np.ndarray) -> np.ndarray:
    """DL_Track-style binary mask -> uint8 labels: the uppermost band 1 (with a second sheet
    right under it), the next band 2, any further band 0 (the module's docstring, step 3)."""
    bands = find_bands(mask)
    labels = np.zeros(mask.shape[:2], np.uint8)
    if not bands:
        return labels
    labels[bands[0]] = SUPERFICIAL
    rest = bands[1:]
    if rest and _median_gap(bands[0], rest[0]) < _SAME_APONEUROSIS * labels.shape[0]:
        labels[rest.pop(0)] = SUPERFICIAL
    if rest:
        labels[rest[0]] = DEEP
    return labels


def _median_gap(upper: np.ndarray, lower: np.ndarray) -> float:
    """Median over shared columns of the rows strictly between two bands (inf when none shared)."""
    columns = np.flatnonzero(upper.any(axis=0) & lower.any(axis=0))
    if columns.size == 0:
        return float("inf")
    last = upper.shape[0] - 1 - np.argmax(upper[::-1, columns], axis=0)
    first = np.argmax(lower[:, columns], axis=0)
    return float(np.median(first - last - 1))


def _centre_line(component: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns a component covers and its mean row in each (its centre line)."""
    rows, columns = np.nonzero(component)
    present, counts = np.unique(columns, return_counts=True)
    sums = np.bincount(columns, weights=rows)[present]
    return present.astype(np.float64), sums / counts
