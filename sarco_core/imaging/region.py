"""Find the B-mode area of a scanner screen, screenshot or video frame.

Real inputs are rarely tidy crops: around the image sit the scanner's UI (flat panels, text,
depth scales, grey bars, icons), and the B-mode itself may be a rectangle, a steered
parallelogram or a curved sector. The model must only see the B-mode, so every frame and
training image goes through :func:`find_scan_region` (or a cached result of it, see
:class:`~sarco_core.imaging.tracker.ScanRegionTracker`).

How it works (docs/imaging.md has the long version):

1. *Core*: speckle is textured everywhere at a coarse scale; UI is flat. The largest
   eroded blob of coarse local standard deviation is certainly B-mode.
2. *Palette*: UI panels are drawn in a few flat colours. Their grey levels are read from flat
   pixels away from the core (left, right and above it); a level that is exact (lossless
   screenshots) is matched exactly, a noisy one (JPEG, video capture) within a few levels.
   A dark B-mode area (an anechoic muscle, the deep field) is thereby kept whenever its level
   differs from the panel behind it - even by one grey level on a lossless image.
3. *Region*: every pixel that is not flat UI colour is foreground. Thin things (lines, text
   strokes, ticks) are removed by a morphological opening, and the foreground component that
   holds the core is the scan region. A large opening picks it robustly; a small one then
   restores sector tips and acute corners, but only where the extra part narrows steadily
   outward like a tip (text and icons glued to the edge widen again and are refused).
"""

from __future__ import annotations

import cv2
import numpy as np

from sarco_core.errors import SarcoError
from sarco_core.imaging.pixels import Box, colour_marks, to_grey_u8


class ScanRegionNotFound(SarcoError, ValueError):
    """No B-mode area in the image (blank frame, UI only, or not ultrasound)."""


_WORK_SIDE = 300  # coarse texture is measured on a copy with about this short side
_TEXTURE_STD = 3.0  # grey levels of local standard deviation that count as speckle
_CORE_EROSION = 15  # coarse pixels; a text block or icon does not survive it, B-mode does
_FLAT_RANGE = 4  # max - min over 3x3 (after a 3x3 median) below which a pixel is flat
_PALETTE_WINDOW = 3  # a noisy UI level covers this many levels either side
_MIN_CORE_FRACTION = 0.002  # of the image area; less than that is not a scan


def find_scan_region(pixels: np.ndarray) -> Box:
    """Bounding box ``(x0, y0, x1, y1)`` of the B-mode area, pixel coordinates of ``pixels``.

    ``pixels`` is a 2-D grey or an HxWx3 (HxWx4) colour array, as OpenCV or pydicom give it;
    ``x1`` and ``y1`` are exclusive. For sectors and steered (trapezoid) scans the box is the
    bounding box of the B-mode area. Raises :class:`ScanRegionNotFound` when there is none.
    """
    grey = to_grey_u8(pixels)
    colour = _colour_mask(pixels, grey.shape)
    core_points, exclusion = _texture_core(grey, colour)
    foreground = _not_ui(grey, colour, exclusion)
    small = _opened(foreground, 5)
    big = _opened(small, max(9, round(min(grey.shape) / 50)) | 1)
    # The robust blob only has to be picked, not traced: label it at half size, where a
    # pixel is set only if all four it stands for are (so no gap between blobs closes).
    half = cv2.resize(big * np.uint8(255), (big.shape[1] // 2, big.shape[0] // 2), interpolation=cv2.INTER_AREA)
    count, labels, stats, _ = cv2.connectedComponentsWithStats((half == 255).view(np.uint8), connectivity=8)
    # Odd sizes lose their last row/column at half size: clip so edge points stay inside.
    hits = labels[np.minimum(core_points[0] // 2, labels.shape[0] - 1),
                  np.minimum(core_points[1] // 2, labels.shape[1] - 1)]
    shared = np.bincount(hits, minlength=count)
    shared[0] = 0
    best = int(np.argmax(shared))
    if shared[best] == 0:
        raise ScanRegionNotFound("the textured area is all UI colour; no B-mode found")
    # Opening is anti-extensive, so a point of the chosen blob lies in its small-opening blob,
    # which a flood fill from that point traces (cheaper than labelling the whole frame).
    anchor = int(np.argmax(hits == best))
    seed = (int(core_points[1][anchor]), int(core_points[0][anchor]))
    filled = np.zeros((small.shape[0] + 2, small.shape[1] + 2), np.uint8)
    _, _, _, (ex, ey, ew, eh) = cv2.floodFill(small, filled, seed, 0, 0, 0, 8 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
    extended = (ex, ey, ex + ew, ey + eh)
    x, y, w, h = (2 * int(v) for v in stats[best, :4])
    chosen = (max(x, ex), max(y, ey), min(x + w, ex + ew), min(y + h, ey + eh))
    return _with_tips(filled[1:-1, 1:-1], extended, chosen)


def _colour_mask(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """uint8 0/255 mask of coloured marks at full size, found on a half-size copy (marks are
    icons and lines: a pixel of precision does not matter, the time does)."""
    if pixels.ndim == 2:
        return None
    height, width = shape
    half = cv2.resize(pixels[..., :3], (width // 2, height // 2), interpolation=cv2.INTER_NEAREST)
    marks = colour_marks(half).view(np.uint8)
    return cv2.resize(marks, (width, height), interpolation=cv2.INTER_NEAREST) * np.uint8(255)


def _texture_core(grey: np.ndarray, colour: np.ndarray | None) -> tuple[tuple[np.ndarray, np.ndarray], Box]:
    """Sample points of certain B-mode and the box around it where UI colours are not sampled."""
    height, width = grey.shape
    step = max(1, min(height, width) // _WORK_SIDE)
    size = (width // step, height // step)
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA) if step > 1 else grey
    textured = _textured(small, 7)
    if colour is not None:
        textured[cv2.resize(colour, size, interpolation=cv2.INTER_NEAREST) > 0] = 0
    eroded = cv2.erode(textured, _square(_CORE_EROSION))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(eroded, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if count <= 1 or areas.max() < _MIN_CORE_FRACTION * small.size:
        raise ScanRegionNotFound("no textured (speckle) area found; is this an ultrasound image?")
    # A B-mode split by a dark band (deep field, anechoic muscle) gives several large blobs.
    keep = 1 + np.flatnonzero(areas >= 0.2 * areas.max())
    ys, xs = np.nonzero(np.isin(labels[::4, ::4], keep))  # a sample is enough to vote
    ys, xs = ys * 4, xs * 4
    margin = _CORE_EROSION // 2
    x0, y0 = stats[keep, 0].min() - margin, stats[keep, 1].min() - margin
    x1 = (stats[keep, 0] + stats[keep, 2]).max() + margin
    y1 = (stats[keep, 1] + stats[keep, 3]).max() + margin
    points = (ys * step + step // 2, xs * step + step // 2)
    return points, (int(x0 * step), int(y0 * step), int(x1 * step), int(y1 * step))


def _not_ui(grey: np.ndarray, colour: np.ndarray | None, exclusion: Box) -> np.ndarray:
    """uint8 mask (0/1) of pixels that are not flat UI colour."""
    smooth = cv2.medianBlur(grey, 3)  # drops 1-px lines, text strokes and JPEG ringing
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.subtract(cv2.dilate(smooth, kernel), cv2.erode(smooth, kernel))
    flat = cv2.compare(spread, _FLAT_RANGE, cv2.CMP_LE)  # 0 / 255
    # UI colours are sampled left, right and above the core, never below it: the deep
    # field under the B-mode may be dark and flat, and must not be mistaken for a panel.
    x0, y0, x1, _ = exclusion
    sample = flat.copy()
    sample[max(0, y0):, max(0, x0):max(0, x1)] = 0
    histogram = cv2.calcHist([smooth], [0], sample, [256], [0, 256]).ravel()
    palette = _ui_palette(histogram).astype(np.uint8) * 255
    ui = cv2.bitwise_and(flat, cv2.LUT(smooth, palette))
    if colour is not None:
        ui = cv2.bitwise_or(ui, colour)
    return cv2.threshold(ui, 0, 1, cv2.THRESH_BINARY_INV)[1]


def _ui_palette(histogram: np.ndarray, max_colours: int = 8) -> np.ndarray:
    """Which of the 256 grey levels are UI panel colours, from a histogram of flat UI pixels."""
    palette = np.zeros(256, bool)
    total = histogram.sum()
    if total < 100:
        return palette  # no room for UI: the image is all scan
    histogram = histogram.astype(np.int64)
    needed = max(0.01 * total, 50)
    for _ in range(max_colours):
        level = int(np.argmax(histogram))
        low, high = max(0, level - _PALETTE_WINDOW), min(256, level + _PALETTE_WINDOW + 1)
        around = histogram[low:high].sum()
        if around < needed:
            break
        if histogram[level] >= 0.99 * around:
            palette[level] = True  # exact colour: a lossless screenshot
        else:
            palette[low:high] = True  # noisy colour: JPEG or video capture
        histogram[low:high] = 0
    return palette


def _with_tips(blob: np.ndarray, extended: Box, chosen: Box) -> Box:
    """Grow the robust box to the small-opening blob where that adds a tip, not a glued-on blob."""
    ex0, ey0, ex1, ey1 = extended
    cx0, cy0, cx1, cy1 = chosen
    inside = blob[ey0:ey1, ex0:ex1]
    rows = cv2.reduce(inside, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    cols = cv2.reduce(inside, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    x0 = ex0 if ex0 < cx0 and _tip_like(cols[:cx0 - ex0][::-1], cols[cx0 - ex0]) else cx0
    x1 = ex1 if ex1 > cx1 and _tip_like(cols[cx1 - ex0:], cols[cx1 - ex0 - 1]) else cx1
    y0 = ey0 if ey0 < cy0 and _tip_like(rows[:cy0 - ey0][::-1], rows[cy0 - ey0]) else cy0
    y1 = ey1 if ey1 > cy1 and _tip_like(rows[cy1 - ey0:], rows[cy1 - ey0 - 1]) else cy1
    return x0, y0, x1, y1


def _tip_like(counts: np.ndarray, edge: int) -> bool:
    """Pixel counts per line going outward: a tip continues the edge and narrows to nothing."""
    counts = counts.astype(float)
    if counts[0] < 0.5 * edge or counts[-1] > 0.5 * counts[0] + 1:
        return False
    return bool(np.all(counts <= 1.25 * np.minimum.accumulate(counts) + 3))


def _textured(grey: np.ndarray, size: int) -> np.ndarray:
    """uint8 0/1: local standard deviation over size x size above _TEXTURE_STD."""
    values = grey.astype(np.float32)
    mean = cv2.boxFilter(values, cv2.CV_32F, (size, size))
    variance = cv2.subtract(cv2.sqrBoxFilter(values, cv2.CV_32F, (size, size)), cv2.multiply(mean, mean))
    return cv2.threshold(variance, _TEXTURE_STD ** 2, 1, cv2.THRESH_BINARY)[1].astype(np.uint8)


def _square(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))


def _opened(mask: np.ndarray, size: int) -> np.ndarray:
    # Zero border: a line lying along the image edge must not survive the opening.
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, _square(size),
                            borderType=cv2.BORDER_CONSTANT, borderValue=0)
