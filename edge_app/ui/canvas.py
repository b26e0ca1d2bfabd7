"""Drawing for a small screen read at arm's length, in daylight, with fingers.

Every text is drawn with the colour behind it and every button with its action, and both are
recorded (:class:`Drawing`), so the tests check what a screening team needs rather than pixels
alone: contrast (WCAG 2 ratio, at least 7:1), glyph height, touch-target size, nothing off the
screen and no two texts on top of each other; the window uses the same records to turn a tap
into an action. Sizes are given for 480 lines and scaled with the screen.

Colours are BGR, as OpenCV draws. The fonts are OpenCV's Hershey fonts: sizes are always
measured (``cv2.getTextSize``), never assumed, because builds differ slightly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_DUPLEX
BACKGROUND = (24, 24, 24)
PANEL = (48, 48, 48)
KEY = (70, 70, 70)
WHITE = (255, 255, 255)
MUTED = (205, 205, 205)
BLACK = (0, 0, 0)
GREEN = (90, 200, 60)  # RGB 60,200,90: black text on it
AMBER = (0, 190, 255)  # RGB 255,190,0: black text on it
RED = (20, 20, 170)  # RGB 170,20,20: white text on it
BLUE = (170, 70, 20)  # RGB 20,70,170: white text on it (the primary button)

TOP_BAR = 54  # for 480 lines: the bar over every screen (its Status button is a touch target)
MARGIN = 10
MIN_TEXT = 14  # capital height (for 480 lines): about 2.7 mm on a 7-inch 800x480 screen
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)


@dataclass(frozen=True)
class TextItem:
    text: str
    box: Box
    colour: tuple[int, int, int]
    background: tuple[int, int, int]
    cap: float  # height of a capital letter on the screen, in pixels


@dataclass(frozen=True)
class Button:
    action: str
    label: str
    box: Box

    def contains(self, x: int, y: int) -> bool:
        return self.box[0] <= x < self.box[2] and self.box[1] <= y < self.box[3]


@dataclass
class Drawing:
    """The picture and what is on it (texts with their backgrounds, buttons with actions)."""

    image: np.ndarray
    texts: list[TextItem] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    clipped: list[str] = field(default_factory=list)  # lines with no room left

    def button_at(self, x: int, y: int) -> str | None:
        return next((b.action for b in self.buttons if b.contains(x, y)), None)


def contrast_ratio(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two BGR colours (1 to 21)."""

    def luminance(colour: tuple[int, int, int]) -> float:
        channels = [c / 255 for c in colour[::-1]]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


class Canvas:
    """One frame of the screen being drawn; ``u(v)`` turns a size given for 480 lines into
    pixels of this screen."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.unit = min(width / 800, height / 480)
        self.drawing = Drawing(np.full((height, width, 3), BACKGROUND, dtype=np.uint8))

    @property
    def image(self) -> np.ndarray:
        return self.drawing.image

    def u(self, value: float) -> int:
        return int(round(value * self.unit))

    @property
    def body(self) -> Box:
        """The screen below the top bar, inside the margins."""
        m = self.u(MARGIN)
        return m, self.u(TOP_BAR) + m, self.width - m, self.height - m

    def fill(self, box: Box, colour: tuple[int, int, int]) -> None:
        cv2.rectangle(self.image, box[:2], (box[2] - 1, box[3] - 1), colour, -1)

    def text(self, value: str, x: int, y: int, height: float, colour=WHITE,
             background=BACKGROUND, max_width: int | None = None, bold: bool = False) -> Box:
        """One line whose capital letters are ``height`` (for 480 lines) tall with their top
        at ``y``, shrunk to ``max_width`` if needed; returns its box (capitals, descenders and
        brackets). Placed by the measured ink, not by ``getTextSize``'s height, which differs
        between OpenCV builds."""
        thickness = self._thickness(height, bold)
        scale = self._scale_for(self.u(height), thickness)
        if max_width is not None:
            width = cv2.getTextSize(value, FONT, scale, thickness)[0][0]
            if width > max_width:
                scale *= max_width / width
        width = cv2.getTextSize(value, FONT, scale, thickness)[0][0]
        cap = scale * cap_height(thickness)
        baseline = y + round(cap)
        cv2.putText(self.image, value, (x, baseline), FONT, scale, colour, thickness,
                    cv2.LINE_AA)
        box = (x, y - round(cap * 0.12), x + width, baseline + round(cap * 0.3) + thickness)
        self.drawing.texts.append(TextItem(value, box, colour, background, round(cap, 1)))
        return box

    def measure(self, value: str, height: float, bold: bool = False) -> int:
        """The width ``value`` takes at ``height``."""
        thickness = self._thickness(height, bold)
        return cv2.getTextSize(value, FONT, self._scale_for(self.u(height), thickness),
                               thickness)[0][0]

    def centred(self, value: str, box: Box, height: float, colour=WHITE, background=BACKGROUND,
                bold: bool = False) -> Box:
        """One line centred in ``box`` (shrunk to its width)."""
        room = box[2] - box[0] - self.u(12)
        width = self.measure(value, height, bold)
        if width > room:
            height *= room / width
            width = self.measure(value, height, bold)
        cap = self._scale_for(self.u(height), self._thickness(height, bold)) * \
            cap_height(self._thickness(height, bold))
        x = box[0] + (box[2] - box[0] - width) // 2
        y = box[1] + round((box[3] - box[1] - cap) / 2)
        return self.text(value, x, y, height, colour, background, bold=bold)

    def paragraph(self, value: str, box: Box, height: float, colour=WHITE,
                  background=BACKGROUND, bold: bool = False) -> int:
        """Words wrapped to the width of ``box``, made smaller (down to ``MIN_TEXT``) until
        they fit its height; returns the y below the last line. A line that still does not fit
        is left out and recorded in ``Drawing.clipped`` (the tests fail on it)."""
        sizes = [height * f for f in (1.0, 0.9, 0.8, 0.7) if height * f >= MIN_TEXT]
        for size in sizes or [height]:
            thickness = self._thickness(size, bold)
            scale = self._scale_for(self.u(size), thickness)
            lines = wrap(value, box[2] - box[0], scale, thickness)
            line_h = round(self.u(size) * 1.45) + thickness  # capitals and descenders
            step = line_h + self.u(size * 0.3)
            if (len(lines) - 1) * step + line_h <= box[3] - box[1]:
                break
        y = box[1]
        for line in lines:
            if y + line_h > box[3]:
                self.drawing.clipped.append(line)
                continue
            self.text(line, box[0], y, size, colour, background, max_width=box[2] - box[0],
                      bold=bold)
            y += step
        return y

    def _thickness(self, height: float, bold: bool) -> int:
        return max(1, self.u(height / (9 if bold else 14)))

    def button(self, action: str, label: str, box: Box, primary: bool = False,
               height: float = 22) -> None:
        colour = BLUE if primary else KEY
        cv2.rectangle(self.image, box[:2], (box[2] - 1, box[3] - 1), colour, -1)
        cv2.rectangle(self.image, box[:2], (box[2] - 1, box[3] - 1), MUTED, 1)
        if label:
            self.centred(label, box, height, WHITE, colour, bold=primary)
        self.drawing.buttons.append(Button(action, label, box))

    def _scale_for(self, pixels: int, thickness: int) -> float:
        """The font scale whose capital 'H' is ``pixels`` tall on the screen."""
        return max(pixels, 1) / cap_height(thickness)


@functools.lru_cache(maxsize=None)
def cap_height(thickness: int) -> float:
    """The inked height of a capital 'H' at font scale 1, measured by drawing it: what
    ``getTextSize`` reports differs between OpenCV builds (4.x: the ink, 5.x: more)."""
    scale = 8.0
    image = np.zeros((400, 400), np.uint8)
    cv2.putText(image, "H", (40, 300), FONT, scale, 255, thickness, cv2.LINE_AA)
    rows = np.flatnonzero(image.max(axis=1) > 127)
    return max(1.0, (rows[-1] - rows[0] + 1 - thickness) / scale) if rows.size else 22.0


def wrap(value: str, max_width: int, scale: float, thickness: int) -> list[str]:
    lines: list[str] = []
    for word in value.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(candidate, FONT, scale, thickness)[0][0] <= max_width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or [""]
