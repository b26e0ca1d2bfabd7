"""One drawing function per screen state (``ScreenState.view``): idle, scanning, result,
rescan, error and device status, under a common top bar.

Laid out in fractions of the screen and sizes for 480 lines (``Canvas.u``), so 800x480 and
1024x600 show the same screen, using all of it. The scanning screen shows no probability: a
number that moves while the probe does invites a reading before the session is over; the
result screen has no live hint, and the rescan screen no probability at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_app.ui import words
from edge_app.ui.canvas import (AMBER, BACKGROUND, BLACK, GREEN, MUTED, PANEL, RED, WHITE, Box,
                                Canvas, Drawing)
from edge_app.ui.calculator import draw_criteria
from edge_app.ui.keypad import ID_ROWS, keypad

if TYPE_CHECKING:
    from edge_app.display import ScreenState

TOP_BAR = 54  # for 480 lines: a touch target in itself (tap: device status)
MARGIN = 10
CALL_COLOURS = {"positive": (RED, WHITE), "negative": (GREEN, BLACK),
                "borderline": (AMBER, BLACK), "rescan": (AMBER, BLACK)}


def draw(screen: ScreenState, frame: np.ndarray | None, size: tuple[int, int]) -> Drawing:
    canvas = Canvas(*size)
    view = screen.view
    _top_bar(canvas, screen, view)
    {"idle": _idle, "scanning": _scanning, "result": _result, "rescan": _rescan,
     "criteria": draw_criteria, "error": _error, "status": _status}[view](canvas, screen, frame)
    return canvas.drawing


def _body(canvas: Canvas) -> Box:
    m = canvas.u(MARGIN)
    return m, canvas.u(TOP_BAR) + m, canvas.width - m, canvas.height - m


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
    x0, y0, x1, y1 = _body(canvas)
    field_h, gap = canvas.u(64), canvas.u(8)
    split = int(canvas.width * 0.66)
    canvas.fill((x0, y0, split, y0 + field_h), WHITE)
    canvas.text("ID", x0 + canvas.u(10), y0 + canvas.u(22), 20, BLACK, WHITE)
    typed = screen.typed_id + "_"
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


# --------------------------------------------------------------------------- scanning


def _scanning(canvas: Canvas, screen: ScreenState, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = _body(canvas)
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


# --------------------------------------------------------------------------- result, rescan


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


def _result(canvas: Canvas, screen: ScreenState, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = _body(canvas)
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
    _, _, step = words.CALLS[call.call]
    measured = result.get("assessment")
    if measured:  # the next step was taken: what the team's measurements gave, as sent
        step = (f"Measured: AWGS 2019 {measured['awgs2019'].replace('_', ' ')}, EWGSOP2 "
                f"{measured['ewgsop2'].replace('_', ' ')}.")
    canvas.paragraph(step if measured else f"Next: {step}",
                     (right, scale_bottom + canvas.u(12), x1, buttons_top - canvas.u(8)), 20,
                     WHITE)
    _leave(canvas, screen, (x0, buttons_top, x1, y1))


def primary_action(screen: ScreenState) -> str:
    """The blue button of the screen showing, which Enter presses too: scanning the same
    participant again after a borderline or rescan call, otherwise the screen's way on."""
    view = screen.view
    if view == "result" and screen.call.call == "borderline":
        return "again"
    return {"idle": "start", "scanning": "end", "result": "next", "rescan": "again",
            "criteria": "done", "status": "status", "error": "dismiss"}[view]


def _leave(canvas: Canvas, screen: ScreenState, row: Box) -> None:
    """The way off a result: the next participant, and scanning again when the call asks."""
    x0, y0, x1, y1 = row
    middle = (x0 + x1) // 2
    if screen.held:  # a positive result not sent yet: its measurements may come first
        canvas.button("criteria", "Criteria", (x0, y0, middle - canvas.u(4), y1), height=24)
        canvas.button("next", "Next participant", (middle + canvas.u(4), y0, x1, y1),
                      primary=True, height=26)
        return
    if primary_action(screen) != "again":
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


def _rescan(canvas: Canvas, screen: ScreenState, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = _body(canvas)
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


# --------------------------------------------------------------------------- error, status


def _error(canvas: Canvas, screen: ScreenState, frame: np.ndarray | None) -> None:
    x0, y0, x1, y1 = _body(canvas)
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
    x0, y0, x1, y1 = _body(canvas)
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
