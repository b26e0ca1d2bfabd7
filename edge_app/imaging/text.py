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
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_app.imaging.pixels import Box, check_pixels, colour_marks, to_grey_u8

_STROKE_CONTRAST = 50  # grey levels a stroke stands out from its surroundings
_GLYPH_HEIGHT = (5, 40)  # pixels: the font sizes scanners use
_MIN_LINE_LENGTH = 1.5  # a text line (even a 2-letter one) is longer than it is high
_MIN_TRANSITIONS = 0.12  # mark/background changes per pixel along a row of letters
_MARGIN = 2  # pixels of padding around what is masked
_INK_LEVEL = 180  # overlay text on speckle is drawn near white
_FLAT_GROUND_STD = 2.0  # grey levels: a UI panel behind text is flat, speckle is not


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
    grey = to_grey_u8(pixels)
    inside = np.zeros(grey.shape, bool)
    if scan_box is not None:
        x0, y0, x1, y1 = scan_box
        inside[y0:y1, x0:x1] = True
    ui_kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * _GLYPH_HEIGHT[1] // 3 + 1,) * 2)
    mask = np.zeros(grey.shape, bool)
    lines: list[Box] = []
    panel = float(np.median(grey[~inside][::7])) if (~inside).any() else None  # the UI's main colour

    def keep(box: Box, strokes: np.ndarray) -> None:
        bx0, by0, bx1, by1 = box
        mask[by0:by1, bx0:bx1] |= strokes[by0:by1, bx0:bx1]
        lines.append(box)

    for hat in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):  # light text on dark, dark on light
        strokes = cv2.morphologyEx(grey, hat, ui_kernel) > _STROKE_CONTRAST
        for box, _ in _text_lines(strokes & ~inside):
            keep(box, strokes & ~inside)
        for box in _boxes(strokes & inside) if panel is not None else ():
            # single letters too, where a sector or steered scan leaves UI panel inside the box
            if 7 <= box[3] - box[1] <= _GLYPH_HEIGHT[1] and box[2] - box[0] <= 3 * _GLYPH_HEIGHT[1] \
                    and _on_panel(grey, strokes, box, panel):
                keep(box, strokes & inside)
    thin_bright = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, np.ones((5, 5), np.uint8)) > _STROKE_CONTRAST
    thin_bright &= (grey >= _INK_LEVEL) & inside
    for box, letters in _text_lines(thin_bright):
        if letters >= 3:
            keep(box, thin_bright)
    colour = colour_marks(pixels)
    if colour is not None and scan_box is not None:
        markers = colour & inside
        lines += _boxes(markers)
        mask |= markers
    mask = cv2.dilate(mask.view(np.uint8), np.ones((2 * _MARGIN + 1,) * 2, np.uint8)).astype(bool)
    return TextMarks(mask=mask, lines=tuple(lines))


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


def _text_lines(strokes: np.ndarray) -> list[tuple[Box, int]]:
    """Boxes (and letter counts) of stroke clusters shaped like lines of text."""
    marks = strokes.view(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(marks, connectivity=8)
    heights, widths = stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_WIDTH]
    glyph = (heights >= _GLYPH_HEIGHT[0]) & (heights <= _GLYPH_HEIGHT[1]) & (widths <= 3 * _GLYPH_HEIGHT[1])
    glyph[0] = False
    letters = glyph[labels].view(np.uint8)
    # Letters of a word or line are closer than a letter height: close the gaps along rows.
    joined = cv2.morphologyEx(letters, cv2.MORPH_CLOSE, np.ones((1, 9), np.uint8))
    _, line_labels, line_stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    lines = []
    for index, (x, y, w, h, _) in enumerate(line_stats[1:], start=1):
        if not (_GLYPH_HEIGHT[0] <= h <= _GLYPH_HEIGHT[1] and w >= _MIN_LINE_LENGTH * h):
            continue
        box = letters[y:y + h, x:x + w]
        if np.count_nonzero(np.diff(box, axis=1)) / (w * h) < _MIN_TRANSITIONS:
            continue
        inside = (line_labels[y:y + h, x:x + w] == index) & (box > 0)
        lines.append(((int(x), int(y), int(x + w), int(y + h)), len(np.unique(labels[y:y + h, x:x + w][inside]))))
    return lines


def _boxes(mask: np.ndarray) -> list[Box]:
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h, _ in stats[1:]]
