"""Every screen state (``ScreenState.view``) under a common top bar: idle, error and device
status here; scanning, result and rescan, and the criteria calculator, in their own modules.

Laid out in fractions of the screen and sizes for 480 lines (``Canvas.u``), so 800x480 and
1024x600 show the same screen, using all of it. The Enter key presses the screen's blue
button (:func:`primary_action`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edge_app.ui import words
from edge_app.ui.calculator import draw_criteria
from edge_app.ui.canvas import (AMBER, BACKGROUND, BLACK, GREEN, MARGIN, MUTED, PANEL, RED,
                                TOP_BAR, WHITE, Canvas, Drawing)
from edge_app.ui.keypad import ID_ROWS, keypad
from edge_app.ui.result import draw_rescan, draw_result
from edge_app.ui.scanning import draw_scanning

if TYPE_CHECKING:
    from edge_app.display import ScreenState


def draw(screen: ScreenState, frame: np.ndarray | None, size: tuple[int, int]) -> Drawing:
    canvas = Canvas(*size)
    view = screen.view
    _top_bar(canvas, screen, view)
    {"idle": _idle, "scanning": draw_scanning, "result": draw_result, "rescan": draw_rescan,
     "criteria": draw_criteria, "error": _error, "status": _status}[view](canvas, screen, frame)
    return canvas.drawing


def _top_bar(canvas: Canvas, screen: ScreenState, view: str) -> None:
    height = canvas.u(TOP_BAR)
    canvas.fill((0, 0, canvas.width, height), PANEL)
    title = {"idle": "New screening", "status": "Device status", "error": "Problem",
             "criteria": f"Criteria {screen.screening_id or '-'}"}.get(
        view, f"ID {screen.screening_id or '-'}")
    room = int(canvas.width * 0.46) - canvas.u(2 * MARGIN)
    top = (height - canvas.u(22)) // 2
    if view == "scanning":  # the elapsed time, right-aligned before the network chip
        clock = words.clock(screen.elapsed_s)
        width = canvas.measure(clock, 22, bold=True)
        canvas.text(clock, canvas.u(MARGIN) + room - width, top, 22, WHITE, PANEL, bold=True)
        room -= width + canvas.u(2 * MARGIN)
    canvas.text(title, canvas.u(MARGIN), top, 22, WHITE, PANEL, bold=True, max_width=room)
    link, colour = _link(screen)
    button_w = canvas.u(120)
    chip = (int(canvas.width * 0.46), canvas.u(7), canvas.width - button_w - canvas.u(16),
            height - canvas.u(7))
    canvas.fill(chip, colour)
    canvas.centred(link, chip, 18, BLACK, colour)
    canvas.button("status", "Back" if view == "status" else "Status",
                  (canvas.width - button_w - canvas.u(6), canvas.u(3), canvas.width - canvas.u(6),
                   height - canvas.u(3)), height=18)


def _link(screen: ScreenState) -> tuple[str, tuple[int, int, int]]:
    """The network chip: green online, amber when results wait, grey (muted) without MQTT."""
    waiting = f", {screen.queued_results} waiting" if screen.queued_results else ""
    if screen.link == "off":
        return "Local only (no network)", MUTED
    if screen.link == "online":
        return ("Online" + waiting), AMBER if waiting else GREEN
    return "Offline" + waiting, AMBER


# --------------------------------------------------------------------------- idle


def _idle(canvas: Canvas, screen: ScreenState, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = canvas.body
    field_h, gap = canvas.u(64), canvas.u(8)
    split = int(canvas.width * 0.66)
    canvas.fill((x0, y0, split, y0 + field_h), WHITE)
    canvas.text("ID", x0 + canvas.u(10), y0 + canvas.u(22), 20, BLACK, WHITE)
    typed = screen.typed_id + "|"  # a cursor no screening id can contain ("_" can)
    canvas.text(typed, x0 + canvas.u(56), y0 + canvas.u(14), 34, BLACK, WHITE, bold=True,
                max_width=split - x0 - canvas.u(66))
    canvas.button("start", "Start", (split + gap, y0, x1, y0 + field_h), primary=True,
                  height=28)
    line = (x0, y0 + field_h + gap, x1, y0 + field_h + gap + canvas.u(60))
    if screen.notice:  # a refusal: two lines of room, so it never shrinks to small print
        canvas.fill(line, AMBER)
        canvas.paragraph(screen.notice, (line[0] + canvas.u(10), line[1] + canvas.u(6),
                                         line[2] - canvas.u(10), line[3]), 18, BLACK, AMBER)
    else:
        canvas.text("Type the code from the screening form, never a name.", x0,
                    line[1] + canvas.u(16), 20, MUTED, max_width=x1 - x0)
    keypad(canvas, (x0, line[3] + gap, x1, y1), ID_ROWS)


def primary_action(screen: ScreenState) -> str:
    """The blue button of the screen showing, which Enter presses too: scanning the same
    participant again after a borderline or rescan call, otherwise the screen's way on."""
    view = screen.view
    if view == "result" and screen.call.call == "borderline":
        return "again"
    return {"idle": "start", "scanning": "end", "result": "next", "rescan": "again",
            "criteria": "done", "status": "status", "error": "dismiss"}[view]


# --------------------------------------------------------------------------- error, status


def _error(canvas: Canvas, screen: ScreenState, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = canvas.body
    title, what, fix = words.ERRORS[screen.error or "camera"]
    dismissable = screen.error == "disk"
    bottom = y1 - canvas.u(64) - canvas.u(10) if dismissable else y1
    canvas.fill((x0, y0, x1, bottom), RED)
    pad = canvas.u(18)
    inner = (x0 + pad, y0 + pad, x1 - pad, bottom - pad)
    top = canvas.text(title, inner[0], inner[1], 44, WHITE, RED, bold=True,
                      max_width=inner[2] - inner[0])[3]
    y = canvas.paragraph(what, (inner[0], top + canvas.u(12), inner[2], inner[3]), 26,
                         WHITE, RED, bold=True)
    y = canvas.paragraph(fix, (inner[0], y + canvas.u(6), inner[2], inner[3]), 22, WHITE, RED)
    if screen.error_detail:
        canvas.paragraph(screen.error_detail, (inner[0], y + canvas.u(6), inner[2], inner[3]),
                         16, WHITE, RED)
    if dismissable:
        canvas.button("dismiss", "OK", (x0, y1 - canvas.u(64), x1, y1), primary=True, height=26)


def _status(canvas: Canvas, screen: ScreenState, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = canvas.body
    rows = [("Network", screen.link_detail or "-"),
            ("Waiting to send", f"{screen.queued_results} results"),
            ("Model", screen.model or "-"),
            ("App version", screen.app_version or "-"),
            ("Speed", f"{screen.fps:.1f} frames/s"),
            ("Free space", "-" if screen.free_mb is None else f"{screen.free_mb} MB")]
    label_w = int((x1 - x0) * 0.30)
    buttons_top = y1 - canvas.u(64)
    unit = (buttons_top - canvas.u(8) - y0) // (len(rows) + 1)  # the network's row is double
    y = y0
    for index, (label, value) in enumerate(rows):
        row_h = unit * (2 if index == 0 else 1)
        if index % 2 == 0:
            canvas.fill((x0, y, x1, y + row_h), PANEL)
        background = PANEL if index % 2 == 0 else BACKGROUND
        canvas.text(label, x0 + canvas.u(10), y + canvas.u(8), 18, MUTED, background,
                    max_width=label_w - canvas.u(14))
        canvas.paragraph(value, (x0 + label_w, y + canvas.u(8), x1 - canvas.u(8),
                                 y + row_h - canvas.u(4)), 18, WHITE, background)
        y += row_h
    canvas.button("status", "Back", (x0, buttons_top, x1, y1), primary=True, height=26)
