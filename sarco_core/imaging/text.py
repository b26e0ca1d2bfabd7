"""Burned-in text and markers: find them, and blank them.

Screens and screenshots carry names, dates, institutions and measurement labels in the
pixels, outside the scan (headers, side panels) and sometimes inside it (labels, calipers,
focus markers). Two uses: de-identification must blank them, and the model must not learn
from them (a caliper drawn only on sarcopenic muscles would be a perfect shortcut).

Text is found as lines of glyph-sized marks: high-contrast strokes (white or black top-hat)
merged along the row into a line whose height is a font size and which changes between mark
and background often along its length (letters do; a bright fascia or a fascicle line does
not). Saturated colour inside the scan box is always marked: B-mode is grey, coloured pixels
there are annotations (calipers, focus markers, labels).

:func:`find_text` and :func:`has_text` share one search, :func:`_marks`, which yields each line
or marker as it is found, cheapest tests first: masking takes them all, a yes/no question stops
at the first, and both always agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from sarco_core.imaging.pixels import Box, check_pixels, colour_marks, to_grey_u8

_STROKE_CONTRAST = 50  # grey levels a stroke stands out from its surroundings
_GLYPH_HEIGHT = (5, 40)  # pixels: the font sizes scanners use
_MIN_LINE_LENGTH = 1.5  # a text line (even a 2-letter one) is longer than it is high
_MIN_TRANSITIONS = 0.12  # mark/background changes per pixel along a row of letters
_MARGIN = 2  # pixels of padding around what is masked
_INK_LEVEL = 180  # overlay text on speckle is drawn near white
_FLAT_GROUND_STD = 2.0  # grey levels: a UI panel behind text is flat, speckle is not
_JOIN_GAP = 9  # pixels: letters of one line are closer than this along the row
_UI_KERNEL = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * _GLYPH_HEIGHT[1] // 3 + 1,) * 2)


@dataclass(frozen=True)
class TextMarks:
    """Where burned-in text and markers are: a mask and one box per line or marker."""

    mask: np.ndarray
    lines: tuple[Box, ...]

    @property
    def found(self) -> bool:
        return bool(self.lines)


def find_text(pixels: np.ndarray, scan_box: Box | None = None) -> TextMarks:
    """Burned-in text lines anywhere in the image, and coloured markers inside ``scan_box``.

    Text on the scanner's flat UI (light or dark ink) counts anywhere, including single marks
    inside the box on the UI's own colour, where a sector or a steered scan leaves panel
    corners. On speckle, text has to be told from the texture: only thin bright strokes (a
    small top-hat; speckle grains are wider than its kernel) that are nearly white and form a
    line of at least three letters count.
    """
    pixels = check_pixels(pixels)
    mask = np.zeros(pixels.shape[:2], bool)
    lines: list[Box] = []
    for box, strokes in _marks(pixels, to_grey_u8(pixels), scan_box):
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] |= strokes[y0:y1, x0:x1]
        lines.append(box)
    mask = cv2.dilate(mask.view(np.uint8), np.ones((2 * _MARGIN + 1,) * 2, np.uint8)).astype(bool)
    return TextMarks(mask=mask, lines=tuple(lines))


def has_text(pixels: np.ndarray, scan_box: Box | None = None) -> bool:
    """Would :func:`find_text` find anything? Its search, stopped at the first line or marker.

    What validation asks of every file. Screens usually carry a header line (name, date,
    hospital) above the box, so that strip is searched first on its own; a line found there
    is one the whole search would find (see :func:`_header_line`), so the answer never differs.
    """
    pixels = check_pixels(pixels)
    grey = to_grey_u8(pixels)
    if scan_box is not None and _header_line(grey, scan_box):
        return True
    return next(_marks(pixels, grey, scan_box), None) is not None


def _header_line(grey: np.ndarray, scan_box: Box) -> bool:
    """Is there a line of UI text wholly above the box? Searched on the rows down to a cut
    ``_GLYPH_HEIGHT[1] + 2`` rows below the box top (the top-hat reads ``_UI_KERNEL``'s size
    further), which gives the whole image's answer for lines ending above the box: a stroke
    cluster cut off at the cut that reaches that high is taller than any glyph, in the strip
    and in the whole image alike, so the letters above the box are the same in both."""
    x0, y0, x1, y1 = scan_box
    cut = y0 + _GLYPH_HEIGHT[1] + 2
    reach = cut + _UI_KERNEL.shape[0] - 1  # rows the top-hat of the rows above the cut looks at
    if y0 < _GLYPH_HEIGHT[0] or reach >= grey.shape[0]:
        return False  # no room for a header, or the strip would be the whole image
    outside = np.ones((cut, grey.shape[1]), bool)
    outside[y0:y1, x0:x1] = False
    for hat in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
        strokes = cv2.morphologyEx(grey[:reach], hat, _UI_KERNEL)[:cut] > _STROKE_CONTRAST
        if any(box[3] <= y0 for box, _ in _text_lines(strokes & outside)):
            return True
    return False


def _marks(pixels: np.ndarray, grey: np.ndarray, scan_box: Box | None) -> Iterator[tuple[Box, np.ndarray]]:
    """Each text line or marker as ``(box, strokes)``, ``strokes`` being the mask it was found in
    (``grey`` is ``pixels`` in grey).

    Cheap and telling tests come first (coloured markers, then lines on the UI); single marks
    on UI colour inside the box, which need a look at each candidate, come last but one.
    """
    inside = np.zeros(grey.shape, bool)
    if scan_box is not None:
        x0, y0, x1, y1 = scan_box
        inside[y0:y1, x0:x1] = True
        markers = _colour_inside(pixels, scan_box)
        if markers is not None:
            yield from ((box, markers) for box in _boxes(markers))
    outside = ~inside
    if outside.any():  # scanner UI around the box
        strokes_by_hat = []
        for hat in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):  # light text on dark, dark on light
            strokes = cv2.morphologyEx(grey, hat, _UI_KERNEL) > _STROKE_CONTRAST
            strokes_by_hat.append(strokes)
            on_ui = strokes & outside
            yield from ((box, on_ui) for box, _ in _text_lines(on_ui))
        if scan_box is not None:  # single letters too, where a sector or steered scan leaves UI inside the box
            panel = float(np.median(grey[outside][::7]))  # the UI's main colour
            for strokes in strokes_by_hat:
                in_box = strokes & inside
                for box in _boxes(in_box):
                    if 7 <= box[3] - box[1] <= _GLYPH_HEIGHT[1] and box[2] - box[0] <= 3 * _GLYPH_HEIGHT[1] \
                            and _on_panel(grey, strokes, box, panel):
                        yield box, in_box
    if scan_box is not None:  # labels on speckle: thin, near-white strokes, at least three letters
        thin_bright = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, np.ones((5, 5), np.uint8)) > _STROKE_CONTRAST
        thin_bright &= (grey >= _INK_LEVEL) & inside
        yield from ((box, thin_bright) for box, letters in _text_lines(thin_bright) if letters >= 3)


def _colour_inside(pixels: np.ndarray, scan_box: Box) -> np.ndarray | None:
    """Saturated colour inside the box (None when there is none): B-mode is grey, so these are
    markers. Judged pixel by pixel, so only the box is looked at."""
    if pixels.ndim == 2:
        return None
    x0, y0, x1, y1 = scan_box
    region = pixels[y0:y1, x0:x1]
    colour = colour_marks(region) if min(region.shape[:2]) >= 8 else colour_marks(pixels)[y0:y1, x0:x1]
    if not colour.any():
        return None
    markers = np.zeros(pixels.shape[:2], bool)
    markers[y0:y1, x0:x1] = colour
    return markers


def _on_panel(grey: np.ndarray, strokes: np.ndarray, box: Box, panel: float) -> bool:
    """Is the mark drawn on the UI panel (flat, the panel's colour), not on speckle? Judged on
    the pixels between and around its strokes."""
    x0, y0, x1, y1 = box
    height, width = grey.shape
    x0, y0, x1, y1 = max(0, x0 - 3), max(0, y0 - 3), min(width, x1 + 3), min(height, y1 + 3)
    ink = cv2.dilate(strokes[y0:y1, x0:x1].view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ground = grey[y0:y1, x0:x1][~ink].astype(np.float32)
    return ground.size > 0 and float(ground.std()) < _FLAT_GROUND_STD and abs(float(np.median(ground)) - panel) <= 2


def mask_text(pixels: np.ndarray, marks: TextMarks, fill: int = 0) -> np.ndarray:
    """Copy of ``pixels`` with the marked text and markers set to ``fill``."""
    pixels = check_pixels(pixels)
    cleaned = pixels.copy()
    cleaned[marks.mask] = fill
    return cleaned


def blank_outside(pixels: np.ndarray, scan_box: Box, fill: int = 0) -> np.ndarray:
    """Copy of ``pixels`` with everything outside ``scan_box`` set to ``fill``.

    Headers, side panels and borders hold the names, dates and institutions of a screen; the
    scan box holds the image. De-identification keeps only the box.
    """
    pixels = check_pixels(pixels)
    x0, y0, x1, y1 = scan_box
    cleaned = np.full_like(pixels, fill)
    cleaned[y0:y1, x0:x1] = pixels[y0:y1, x0:x1]
    return cleaned


def _text_lines(strokes: np.ndarray) -> Iterator[tuple[Box, int]]:
    """Boxes (and letter counts) of stroke clusters shaped like lines of text, one at a time."""
    occupied = _occupied(strokes, margin_x=_JOIN_GAP // 2 + 1)
    if occupied is None:
        return
    left, top, strokes = occupied
    labels, stats = _components(strokes)
    heights, widths = stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_WIDTH]
    glyph = (heights >= _GLYPH_HEIGHT[0]) & (heights <= _GLYPH_HEIGHT[1]) & (widths <= 3 * _GLYPH_HEIGHT[1])
    glyph[0] = False
    if not glyph.any():
        return
    letters = glyph[labels].view(np.uint8)
    # Letters of a word or line are closer than a letter height: close the gaps along rows.
    joined = cv2.morphologyEx(letters, cv2.MORPH_CLOSE, np.ones((1, _JOIN_GAP), np.uint8))
    line_labels, line_stats = _components(joined)
    for index, (x, y, w, h, _) in enumerate(line_stats[1:], start=1):
        if not (_GLYPH_HEIGHT[0] <= h <= _GLYPH_HEIGHT[1] and w >= _MIN_LINE_LENGTH * h):
            continue
        box = letters[y:y + h, x:x + w]
        if np.count_nonzero(np.diff(box, axis=1)) / (w * h) < _MIN_TRANSITIONS:
            continue
        inside = (line_labels[y:y + h, x:x + w] == index) & (box > 0)
        letter_count = len(np.unique(labels[y:y + h, x:x + w][inside]))
        yield (int(left + x), int(top + y), int(left + x + w), int(top + y + h)), letter_count


def _boxes(mask: np.ndarray) -> list[Box]:
    occupied = _occupied(mask, margin_x=0)
    if occupied is None:
        return []
    left, top, mask = occupied
    _, stats = _components(mask)
    return [(int(x + left), int(y + top), int(x + left + w), int(y + top + h)) for x, y, w, h, _ in stats[1:]]


def _occupied(mask: np.ndarray, margin_x: int) -> tuple[int, int, np.ndarray] | None:
    """The part of ``mask`` that holds its marks (None if it holds none), widened by ``margin_x``
    columns each side, and its top-left corner: labelling costs per pixel, and marks are often
    confined to a small part of the image (the scan box, a header). The margin keeps a row
    closing on the part exactly what it is on the whole image (no mark within reach of its edge)."""
    left, top, width, height = cv2.boundingRect(mask.view(np.uint8))
    if width == 0:
        return None
    left, right = max(0, left - margin_x), min(mask.shape[1], left + width + margin_x)
    return left, top, mask[top:top + height, left:right]


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected labels and statistics of a boolean or 0/1 mask. Grana's block-based labelling
    gives the same labels (in raster order) as OpenCV's default, and its statistics in well under
    half the time on one thread (OpenCV 5)."""
    _, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        np.ascontiguousarray(mask.view(np.uint8)), 8, cv2.CV_32S, cv2.CCL_GRANA)
    return labels, stats
