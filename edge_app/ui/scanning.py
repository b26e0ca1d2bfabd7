"""The scanning screen: the scanner's picture outlined in the quality gate's colour, the
current problem with its fix, good frames toward those needed and the muscle checklist; no
probability (a number that moves with the probe invites a reading before the end)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_app.ui import words
from edge_app.ui.canvas import AMBER, BLACK, GREEN, MARGIN, MUTED, PANEL, TOP_BAR, WHITE, Box, Canvas

if TYPE_CHECKING:
    from edge_app.display import ScreenState


def draw_scanning(canvas: Canvas, screen: ScreenState, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = canvas.body
    split = int(canvas.width * 0.5)
    ok = screen.quality == "ok"
    _scan_image(canvas, (0, canvas.u(TOP_BAR), split, canvas.height), frame, screen.region,
                GREEN if ok else AMBER)
    right = (split + canvas.u(MARGIN), y0, x1, y1)
    muscle = screen.muscles[screen.muscle] if screen.muscles else None
    title, fix = words.problem(screen.quality, muscle)
    colour = GREEN if ok else AMBER
    banner = (right[0], y0, x1, y0 + canvas.u(112))
    canvas.fill(banner, colour)
    top = canvas.text(title, banner[0] + canvas.u(12), banner[1] + canvas.u(8), 36, BLACK,
                      colour, bold=True, max_width=banner[2] - banner[0] - canvas.u(24))[3]
    canvas.paragraph(fix, (banner[0] + canvas.u(12), top + canvas.u(4),
                           banner[2] - canvas.u(12), banner[3] - canvas.u(4)), 20, BLACK, colour)
    y = _progress(canvas, screen, (right[0], banner[3] + canvas.u(14), x1))
    summary = words.muscle_summary(screen.measurements)
    if summary:  # the muscle so far: a measurement, not a reading of the screen's call
        y = canvas.paragraph(summary, (right[0], y + canvas.u(8), x1, y + canvas.u(66)), 18,
                             WHITE)
    buttons_top = y1 - canvas.u(64)
    if screen.muscles:
        _checklist(canvas, screen, (right[0], y + canvas.u(8), x1, buttons_top - canvas.u(6)))
        middle = (right[0] + x1) // 2
        canvas.button("next_muscle", "Next muscle", (right[0], buttons_top, middle - canvas.u(4),
                                                     y1), height=22)
        canvas.button("end", "End scan", (middle + canvas.u(4), buttons_top, x1, y1),
                      primary=True, height=24)
    else:
        canvas.button("end", "End scan", (right[0], buttons_top, x1, y1), primary=True,
                      height=26)


def _progress(canvas: Canvas, screen: ScreenState, row: tuple[int, int, int]) -> int:
    """Good frames toward the number needed, as words and a bar; returns the y below."""
    x0, y, x1 = row
    needed = max(1, screen.min_usable_frames)
    done = screen.usable_frames >= needed
    label = (f"Enough good frames ({screen.usable_frames})" if done else
             f"Good frames {screen.usable_frames} of {needed}")
    box = canvas.text(label, x0, y, 22, WHITE, max_width=x1 - x0)
    bar = (x0, box[3] + canvas.u(8), x1, box[3] + canvas.u(30))
    canvas.fill(bar, PANEL)
    share = min(1.0, screen.usable_frames / needed)
    if share > 0:
        canvas.fill((x0, bar[1], x0 + max(1, int((x1 - x0) * share)), bar[3]),
                    GREEN if done else WHITE)
    return bar[3]


def _checklist(canvas: Canvas, screen: ScreenState, box: Box) -> None:
    """One row per muscle of the protocol: done (its share of the frames), now, or to do."""
    share = -(-max(1, screen.min_usable_frames) // len(screen.muscles))
    row_h = min(canvas.u(34), (box[3] - box[1]) // len(screen.muscles))
    for index, name in enumerate(screen.muscles):
        y = box[1] + index * row_h
        count = screen.muscle_frames[index] if index < len(screen.muscle_frames) else 0
        done = count >= share
        mark = (box[0], y + canvas.u(4), box[0] + row_h - canvas.u(8), y + row_h - canvas.u(4))
        canvas.fill(mark, GREEN if done else PANEL)
        if done:
            a, b = (mark[0] + canvas.u(5), (mark[1] + mark[3]) // 2), \
                ((mark[0] + mark[2]) // 2 - canvas.u(2), mark[3] - canvas.u(5))
            cv2.polylines(canvas.image, [np.array([a, b, (mark[2] - canvas.u(5),
                                                          mark[1] + canvas.u(5))])], False,
                          BLACK, max(2, canvas.u(3)))
        now = index == screen.muscle
        state = "now" if now else "done" if done else "to do"
        canvas.text(f"{name.replace('_', ' ').capitalize()}: {state} ({count}/{share})",
                    mark[2] + canvas.u(10), y + canvas.u(8), 18, WHITE if now else MUTED,
                    bold=now, max_width=box[2] - mark[2] - canvas.u(10))


def _scan_image(canvas: Canvas, area: Box, frame: np.ndarray | None,
                region: tuple[int, int, int, int] | None, colour: tuple[int, int, int]) -> None:
    """The scanner's picture letterboxed into ``area``, the scan region outlined in the
    gate's colour (the whole area when no region is known)."""
    thickness = max(3, canvas.u(5))
    target = canvas.image[area[1]:area[3], area[0]:area[2]]
    if frame is None or not frame.size:
        cv2.rectangle(target, (0, 0), (target.shape[1] - 1, target.shape[0] - 1), colour,
                      thickness)
        return
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    height, width = frame.shape[:2]
    scale = min(target.shape[1] / width, target.shape[0] / height)
    new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
    top, left = (target.shape[0] - new_h) // 2, (target.shape[1] - new_w) // 2
    target[top:top + new_h, left:left + new_w] = cv2.resize(frame, (new_w, new_h),
                                                            interpolation=cv2.INTER_AREA)
    if region is None:
        outline = (0, 0, target.shape[1] - 1, target.shape[0] - 1)
    else:
        rx0, ry0, rx1, ry1 = region
        outline = (left + int(rx0 * scale), top + int(ry0 * scale),
                   left + int(rx1 * scale) - 1, top + int(ry1 * scale) - 1)
    cv2.rectangle(target, outline[:2], outline[2:], colour, thickness)
