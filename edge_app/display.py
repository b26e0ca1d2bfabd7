"""What a small screen (800x480 by default) shows: the scan with its region outline, the
live probability, the decision, why frames are skipped, fps and connectivity.

The display sink (edge_app.sinks) fills a :class:`ScreenState` (plain data); :func:`render`
draws it. A window shows it on the device; ``--headless`` writes snapshots instead (PNG plus
the same fields as JSON, both replaced atomically), which is what tests and remote support
look at.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from sarco_core.files import atomic_write

GREEN, AMBER, RED, WHITE, GREY = (80, 200, 80), (0, 190, 255), (60, 60, 230), (240, 240, 240), \
    (150, 150, 150)
FONT = cv2.FONT_HERSHEY_SIMPLEX
DECISION_TEXT = {"sarcopenia": "SARCOPENIA LIKELY", "no_sarcopenia": "NO SARCOPENIA",
                 "rescan": "RESCAN: too few good frames"}


@dataclass
class ScreenState:
    """Everything the screen shows; also written as JSON next to headless snapshots."""

    mode: str = "idle"  # idle | session | result
    screening_id: str | None = None
    quality: str = "no_signal"
    quality_message: str = ""
    probability: float | None = None  # smoothed live probability
    decision: str | None = None
    threshold: float = 0.5
    usable_frames: int = 0
    processed_frames: int = 0
    fps: float = 0.0
    link: str = "MQTT off"
    link_ok: bool = False
    queued_results: int = 0
    notice: str = ""
    region: tuple[int, int, int, int] | None = None
    frame_index: int | None = None
    result: dict | None = None  # the session outcome, in result mode
    typed_id: str = ""  # what the operator is typing in the window


def render(screen: ScreenState, frame: np.ndarray | None,
           size: tuple[int, int] = (800, 480)) -> np.ndarray:
    """Draw the screen: scan on the left (letterboxed), text panel on the right."""
    width, height = size
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    panel_x = int(width * 0.6)
    if frame is not None and frame.size:
        _draw_scan(canvas[:, :panel_x], frame, screen.region)
    x, y = panel_x + 12, 12
    scale_unit = height / 480  # the layout is drawn for 480 lines and scaled

    def text(value: str, colour=WHITE, scale: float = 0.55, thickness: int = 1) -> None:
        """Lines wrapped to the panel; ``y`` moves down by their real height (fonts differ
        between OpenCV builds, so nothing is assumed about glyph sizes)."""
        nonlocal y
        scale *= scale_unit
        for line in _wrap(value, width - x - 8, scale, thickness):
            (_, text_height), baseline = cv2.getTextSize(line, FONT, scale, thickness)
            y += text_height
            cv2.putText(canvas, line, (x, y), FONT, scale, colour, thickness, cv2.LINE_AA)
            y += baseline + int(8 * scale_unit)

    text(f"ID {screen.screening_id or '-'}" if screen.mode == "session"
         else f"Next ID: {screen.typed_id}_", WHITE, 0.6, 1)
    mode = {"idle": "Ready: Enter starts", "session": "Scanning: Enter ends",
            "result": "Session result"}[screen.mode]
    text(mode, GREY, 0.5)
    if screen.mode == "result" and screen.result is not None:
        _result_lines(screen, text)
    else:
        probability = screen.probability
        text("Live probability", GREY, 0.5)
        text("--" if probability is None else f"{probability:.2f}",
             _decision_colour(probability, screen.threshold), 1.6, 3)
        _bar(canvas, x, y, width - x - 14, probability, screen.threshold)
        y += int(24 * scale_unit)
        if screen.mode == "session":
            text(f"frames used {screen.usable_frames}/{screen.processed_frames}", WHITE, 0.5)
    quality_colour = GREEN if screen.quality == "ok" else AMBER
    text(screen.quality_message or screen.quality, quality_colour, 0.45)
    text(f"{screen.fps:4.1f} fps", GREY, 0.5)
    text(screen.link + (f" | {screen.queued_results} queued" if screen.queued_results else ""),
         GREEN if screen.link_ok else AMBER, 0.45)
    if screen.notice:
        text(screen.notice, RED, 0.45)
    return canvas


def _wrap(value: str, max_width: int, scale: float, thickness: int) -> list[str]:
    lines: list[str] = []
    for word in value.split(" "):
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(candidate, FONT, scale, thickness)[0][0] <= max_width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or [""]


def _result_lines(screen: ScreenState, text) -> None:  # noqa: ANN001
    result = screen.result or {}
    text(f"ID {result.get('screening_id', '-')}", WHITE, 0.5)
    decision = result.get("decision", "rescan")
    colour = RED if decision == "sarcopenia" else GREEN if decision == "no_sarcopenia" else AMBER
    text(DECISION_TEXT.get(decision, decision), colour, 0.6, 2)
    probability = result.get("probability")
    text("probability --" if probability is None else f"probability {probability:.2f}",
         WHITE, 0.8, 2)
    text(f"threshold {screen.threshold:.2f}", GREY, 0.5)
    uncertainty = result.get("uncertainty") or {}
    if uncertainty:
        text(f"agreement {uncertainty['agreement']:.0%}  sd {uncertainty['logit_sd']:.2f}",
             WHITE, 0.5)
    text(f"usable frames {result.get('usable_frames', 0)}/{result.get('processed_frames', 0)}",
         WHITE, 0.5)


def _decision_colour(probability: float | None, threshold: float) -> tuple[int, int, int]:
    if probability is None:
        return GREY
    return RED if probability >= threshold else GREEN


def _bar(canvas: np.ndarray, x: int, y: int, width: int, probability: float | None,
         threshold: float) -> None:
    cv2.rectangle(canvas, (x, y), (x + width, y + 10), GREY, 1)
    if probability is not None:
        cv2.rectangle(canvas, (x, y), (x + int(width * probability), y + 10),
                      _decision_colour(probability, threshold), -1)
    marker = x + int(width * threshold)
    cv2.line(canvas, (marker, y - 4), (marker, y + 14), WHITE, 1)


def _draw_scan(area: np.ndarray, frame: np.ndarray,
               region: tuple[int, int, int, int] | None) -> None:
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    height, width = frame.shape[:2]
    scale = min(area.shape[1] / width, area.shape[0] / height)
    new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
    small = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA)
    top, left = (area.shape[0] - new_h) // 2, (area.shape[1] - new_w) // 2
    area[top:top + new_h, left:left + new_w] = small
    if region is not None:
        x0, y0, x1, y1 = region
        cv2.rectangle(area, (left + int(x0 * scale), top + int(y0 * scale)),
                      (left + int(x1 * scale) - 1, top + int(y1 * scale) - 1), GREEN, 2)


class SnapshotWriter:
    """Headless display: ``live.png``/``live.json`` at most every ``interval_s``, and
    ``result-<result_id>.png``/``.json`` for each session result."""

    def __init__(self, folder: Path, size: tuple[int, int] = (800, 480),
                 interval_s: float = 1.0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.size = size
        self.interval_s = interval_s
        self._last = float("-inf")

    def show(self, screen: ScreenState, frame: np.ndarray | None) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        self.write("live", screen, frame)

    def write(self, stem: str, screen: ScreenState, frame: np.ndarray | None) -> Path:
        image = render(screen, frame, self.size)
        png = self.folder / f"{stem}.png"
        # rewritten every second for as long as the device runs: no fsync (it wears the card)
        atomic_write(png, cv2.imencode(".png", image)[1].tobytes(), durable=False)
        atomic_write(self.folder / f"{stem}.json",
                     json.dumps(asdict(screen), indent=1, default=str).encode(), durable=False)
        return png

    def poll_key(self) -> int | None:
        return None

    def close(self) -> None:
        pass


class WindowDisplay:
    """An OpenCV window, full screen on the device's small display; keys go to the pipeline."""

    def __init__(self, size: tuple[int, int] = (800, 480), fullscreen: bool = True,
                 title: str = "sarco") -> None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            # Qt aborts the whole process without a display: refuse before that happens
            raise RuntimeError("no display (DISPLAY is not set); use --headless")
        self.size = size
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        if fullscreen:
            cv2.setWindowProperty(title, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
        self._key: int | None = None

    def show(self, screen: ScreenState, frame: np.ndarray | None) -> None:
        cv2.imshow(self.title, render(screen, frame, self.size))
        key = cv2.waitKey(1)
        if key != -1:
            self._key = key & 0xFF

    def write(self, stem: str, screen: ScreenState, frame: np.ndarray | None) -> None:
        self.show(screen, frame)

    def poll_key(self) -> int | None:
        key, self._key = self._key, None
        return key

    def close(self) -> None:
        cv2.destroyWindow(self.title)


