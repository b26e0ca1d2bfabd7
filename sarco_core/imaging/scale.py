"""Physical pixel size: where it comes from, and resampling to a fixed millimetres per pixel.

Scanners differ in pixel size (and a depth change alters it within one scanner). A model fed
raw pixels learns the scanner: a 20 mm muscle is 250 pixels on one screen and 160 on
another. Resampling every crop to the same mm per pixel *before* resizing to the network's
input makes thickness and texture scale mean the same everywhere.

Sources, best first (:func:`first_known` picks): DICOM ultrasound regions (``dicom``), the
cohort listing's ``mm_per_pixel`` (``listing``) or ``depth_mm`` over the scan height
(``depth``), the edge config of a known scanner (``scanner``), and the scanner's own depth
scale measured on the screen (``depth_scale``). When none is known the pixel size is
``None`` and validation says so; nothing guesses.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sarco_core.imaging.pixels import Box, check_pixels, colour_marks, to_grey_u8

SOURCES = ("dicom", "listing", "depth", "scanner", "depth_scale")


@dataclass(frozen=True)
class PixelSize:
    """Millimetres per pixel along x (lateral) and y (depth), and where the numbers came from."""

    mm_per_pixel_x: float
    mm_per_pixel_y: float
    source: str

    def __post_init__(self) -> None:
        for name in ("mm_per_pixel_x", "mm_per_pixel_y"):
            value = getattr(self, name)
            if not (np.isfinite(value) and 0.0 < value < 10.0):
                raise ValueError(f"{name} must be a positive number of mm (below 10), got {value!r}")
        if self.source not in SOURCES:
            raise ValueError(f"unknown pixel size source {self.source!r}; use one of {SOURCES}")

    @classmethod
    def isotropic(cls, mm_per_pixel: float, source: str) -> PixelSize:
        return cls(float(mm_per_pixel), float(mm_per_pixel), source)


@dataclass(frozen=True)
class ScannerProfile:
    """What the edge config knows about a scanner model (any field may be unknown).

    ``mm_per_pixel``: fixed pixel size of its video output at the configured depth;
    ``major_tick_mm``: spacing of the major ticks on its on-screen depth scale, which lets
    the pixel size be measured on every frame even after a depth change.
    """

    name: str
    mm_per_pixel: float | None = None
    major_tick_mm: float | None = None

    def pixel_size(self) -> PixelSize | None:
        return None if self.mm_per_pixel is None else PixelSize.isotropic(self.mm_per_pixel, "scanner")


def pixel_size_from_depth(depth_mm: float, scan_box: Box) -> PixelSize:
    """Pixel size when the imaging depth is known and spans the scan box's height.

    Assumes square pixels, which B-mode displays use (the lateral axis is drawn to scale).
    """
    height = scan_box[3] - scan_box[1]
    if height <= 0:
        raise ValueError(f"scan box {scan_box} has no height")
    return PixelSize.isotropic(float(depth_mm) / height, "depth")


def first_known(*candidates: PixelSize | None) -> PixelSize | None:
    """The first pixel size that is known, in the order given (best source first)."""
    return next((candidate for candidate in candidates if candidate is not None), None)


def resample_to_mm(pixels: np.ndarray, mm_per_pixel: float | tuple[float, float] | PixelSize,
                   target_mm_per_pixel: float) -> np.ndarray:
    """The image resampled so that one pixel is ``target_mm_per_pixel`` mm in x and in y.

    Shrinking uses area averaging (no aliasing of speckle), enlarging bilinear interpolation.
    """
    pixels = check_pixels(pixels)
    if isinstance(mm_per_pixel, PixelSize):
        mm_x, mm_y = mm_per_pixel.mm_per_pixel_x, mm_per_pixel.mm_per_pixel_y
    elif isinstance(mm_per_pixel, tuple):
        mm_x, mm_y = (float(v) for v in mm_per_pixel)
    else:
        mm_x = mm_y = float(mm_per_pixel)
    if not (mm_x > 0 and mm_y > 0 and target_mm_per_pixel > 0):
        raise ValueError(f"pixel sizes must be positive, got {mm_x}, {mm_y} -> {target_mm_per_pixel}")
    height, width = pixels.shape[:2]
    size = (max(1, round(width * mm_x / target_mm_per_pixel)), max(1, round(height * mm_y / target_mm_per_pixel)))
    if size == (width, height):
        return pixels
    shrinking = size[0] <= width and size[1] <= height
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


@dataclass(frozen=True)
class TickScale:
    """A regular train of depth-scale ticks found beside the scan box."""

    spacing_px: float
    ticks: int
    column: int

    def pixel_size(self, major_tick_mm: float) -> PixelSize:
        return PixelSize.isotropic(major_tick_mm / self.spacing_px, "depth_scale")


_TICK_CONTRAST = 30  # grey levels between a tick and the panel behind it
_TICK_MAX_HEIGHT = 6  # pixels; taller marks are digits, bars or the ruler line itself
_TICK_REGULARITY = 0.06  # spacings within 6 % of their median count as one train
_MIN_TICKS = 4


def find_depth_ticks(pixels: np.ndarray, scan_box: Box, search_fraction: float = 0.15) -> TickScale | None:
    """The depth scale's major ticks beside ``scan_box``, or None when there is no regular train.

    Looks in the strips left and right of the box (``search_fraction`` of the image width
    each) for columns crossed by short, evenly spaced marks. Scanners draw minor ticks
    shorter than major ones, so the widest regular spacing found is taken as the major one;
    the edge config says how many mm that is (:attr:`ScannerProfile.major_tick_mm`).
    """
    grey = to_grey_u8(pixels)
    colour = colour_marks(pixels)  # focus markers and icons are coloured; ticks are grey
    height, width = grey.shape
    x0, y0, x1, y1 = scan_box
    reach = max(8, int(search_fraction * width))
    rows = slice(max(0, y0 - 3), min(height, y1 + 3))
    best: TickScale | None = None
    for columns in (range(max(0, x0 - reach), x0), range(x1, min(width, x1 + reach))):
        if len(columns) == 0:
            continue
        strip = grey[rows, columns.start:columns.stop].astype(np.int16)
        panel = int(np.median(strip))
        marks = np.abs(strip - panel) > _TICK_CONTRAST
        if colour is not None:
            marks &= ~colour[rows, columns.start:columns.stop]
        for offset in range(marks.shape[1]):
            found = _regular_train(marks[:, offset])
            if found is not None and (best is None or found[0] > best.spacing_px * 1.5):
                best = TickScale(found[0], found[1], columns.start + offset)
    return best


def _regular_train(column: np.ndarray) -> tuple[float, int] | None:
    """(spacing, count) of the longest evenly spaced run of short marks in a column."""
    padded = np.concatenate(([False], column, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, stops = edges[::2], edges[1::2]
    short = (stops - starts) <= _TICK_MAX_HEIGHT
    centres = (starts[short] + stops[short] - 1) / 2.0
    if centres.size < _MIN_TICKS:
        return None
    gaps = np.diff(centres)
    best = (0, 0)  # (length, start) of the longest run of similar gaps
    start = 0
    for end in range(1, gaps.size + 1):
        if end == gaps.size or abs(gaps[end] - gaps[start]) > _TICK_REGULARITY * gaps[start]:
            if end - start > best[0]:
                best = (end - start, start)
            start = end
    length, first = best
    if length + 1 < _MIN_TICKS or gaps[first] < 8:
        return None
    return float(np.median(gaps[first:first + length])), length + 1
