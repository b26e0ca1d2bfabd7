"""The result and rescan screens: the call in words and colour, the probability with its
interval against the threshold and the next step; a rescan says why, without a probability.
Neither shows the last live hint."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_app.ui import words
from edge_app.ui.canvas import AMBER, BLACK, GREEN, MUTED, PANEL, RED, WHITE, Box, Canvas

if TYPE_CHECKING:
    from edge_app.display import ScreenState

CALL_COLOURS = {"positive": (RED, WHITE), "negative": (GREEN, BLACK),
                "borderline": (AMBER, BLACK), "rescan": (AMBER, BLACK)}


def _call_block(canvas: Canvas, call: str, box: Box, screening_id: str | None) -> None:
    fill, ink = CALL_COLOURS[call]
    headline, meaning, _ = words.CALLS[call]
    canvas.fill(box, fill)
    pad = canvas.u(16)
    inner = box[2] - box[0] - 2 * pad
    top = canvas.text(headline, box[0] + pad, box[1] + pad, 40, ink, fill, bold=True,
                      max_width=inner)[3]
    id_top = box[3] - pad - canvas.u(36)
    canvas.paragraph(meaning, (box[0] + pad, top + canvas.u(10), box[2] - pad, id_top), 26,
                     ink, fill, bold=True)
    canvas.text(f"ID {screening_id or '-'}", box[0] + pad, id_top, 22, ink, fill,
                max_width=inner)


def draw_result(canvas: Canvas, screen: ScreenState, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = canvas.body
    result, call = screen.result or {}, screen.call
    buttons_top = y1 - canvas.u(64)
    split = int(canvas.width * 0.46)
    _call_block(canvas, call.call, (x0, y0, split, buttons_top - canvas.u(10)),
                screen.screening_id)
    right = split + canvas.u(16)
    box = canvas.text(f"Probability {call.probability:.2f}", right, y0, 30, WHITE, bold=True,
                      max_width=x1 - right)
    level = f"{call.level:.0%}"
    low, high = call.interval or (call.probability, call.probability)
    box = canvas.text(f"{level} interval {low:.2f} to {high:.2f}", right,
                      box[3] + canvas.u(10), 20, WHITE, max_width=x1 - right)
    scale_bottom = _scale(canvas, (right, box[3] + canvas.u(10), x1), call.probability, low,
                          high, result.get("threshold", screen.threshold))
    scale_bottom = _muscle(canvas, (right, scale_bottom, x1), result.get("measurements"))
    _, _, step = words.CALLS[call.call]
    measured = result.get("assessment")
    if measured:  # the next step was taken: what the team's measurements gave, as sent
        step = (f"Measured: AWGS 2019 {measured['awgs2019'].replace('_', ' ')}, EWGSOP2 "
                f"{measured['ewgsop2'].replace('_', ' ')}.")
    canvas.paragraph(step if measured else f"Next: {step}",
                     (right, scale_bottom + canvas.u(12), x1, buttons_top - canvas.u(8)), 20,
                     WHITE)
    _leave(canvas, screen, (x0, buttons_top, x1, y1))


def _muscle(canvas: Canvas, row: tuple[int, int, int], measured: dict | None) -> int:
    """The muscle measured beside the probability, in at most two lines (nothing without
    the measurement model); returns the y below."""
    x0, y, x1 = row
    summary = words.muscle_summary(measured)
    if summary is None:
        return y
    top = y + canvas.u(12)
    return canvas.paragraph(summary, (x0, top, x1, top + canvas.u(60)), 20, WHITE)


def _leave(canvas: Canvas, screen: ScreenState, row: Box) -> None:
    """The way off a result: the next participant, and scanning again when the call asks."""
    x0, y0, x1, y1 = row
    middle = (x0 + x1) // 2
    if screen.held:  # a positive result not sent yet: its measurements may come first
        canvas.button("criteria", "Criteria", (x0, y0, middle - canvas.u(4), y1), height=24)
        canvas.button("next", "Next participant", (middle + canvas.u(4), y0, x1, y1),
                      primary=True, height=26)
        return
    if screen.view != "rescan" and screen.call.call != "borderline":
        canvas.button("next", "Next participant", row, primary=True, height=26)
        return
    canvas.button("next", "Next participant", (x0, y0, middle - canvas.u(4), y1), height=24)
    canvas.button("again", "Scan again", (middle + canvas.u(4), y0, x1, y1), primary=True,
                  height=26)


def _scale(canvas: Canvas, row: tuple[int, int, int], probability: float, low: float,
           high: float, threshold: float) -> int:
    """The probability on a 0-1 scale: the interval as a bar, the point as a tick, the
    threshold as a labelled line, so a straddle is seen and not only read."""
    x0, y, x1 = row
    top, bottom = y + canvas.u(8), y + canvas.u(38)
    canvas.fill((x0, top, x1, bottom), PANEL)

    def at(p: float) -> int:
        return x0 + int(round((x1 - x0 - 1) * min(max(p, 0.0), 1.0)))

    canvas.fill((at(low), top, max(at(high), at(low) + canvas.u(4)), bottom), MUTED)
    cv2.line(canvas.image, (at(probability), top - canvas.u(6)),
             (at(probability), bottom + canvas.u(6)), WHITE, max(2, canvas.u(4)))
    marker = at(threshold)
    cv2.line(canvas.image, (marker, y), (marker, bottom + canvas.u(8)), AMBER, max(2, canvas.u(3)))
    label = f"threshold {threshold:.2f}"
    width = canvas.measure(label, 18)
    left = min(max(x0, marker - width // 2), x1 - width)
    box = canvas.text(label, left, bottom + canvas.u(12), 18, AMBER)
    return box[3]


def draw_rescan(canvas: Canvas, screen: ScreenState, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = canvas.body
    buttons_top = y1 - canvas.u(64)
    split = int(canvas.width * 0.46)
    _call_block(canvas, "rescan", (x0, y0, split, buttons_top - canvas.u(10)),
                screen.screening_id)
    right = split + canvas.u(16)
    y = canvas.text("Why", right, y0, 26, WHITE, bold=True)[3] + canvas.u(10)
    for line in words.rescan_reasons(screen.result or {}):
        y = canvas.paragraph(line, (right, y, x1, buttons_top - canvas.u(8)), 20, WHITE)
        y += canvas.u(6)
    _leave(canvas, screen, (x0, buttons_top, x1, y1))
