"""What the small screen (800x480 or 1024x600) shows, and where it goes: a full-screen window
that takes keys and taps, or snapshot files.

The display sink (edge_app.sinks) fills a :class:`ScreenState` (plain data); :func:`draw`
draws its ``view`` (edge_app.ui: idle, scanning, result, rescan, error, device status). A
window shows it on the device and turns a tap on a button into that button's action;
``--headless`` writes snapshots instead (PNG plus the same fields as JSON, both replaced
atomically), which is what tests and remote support look at.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_app.ui import views
from edge_app.ui.canvas import Drawing
from sarco_core.files import atomic_write
from sarco_core.screening import ScreenCall, call_of_result
from sarco_core.wire.schema import parse_time


@dataclass
class ScreenState:
    """Everything the screen shows; also written as JSON next to headless snapshots (with the
    ``view`` drawn)."""

    mode: str = "idle"  # idle | scanning | result (a rescan is a result whose call is rescan)
    screening_id: str | None = None
    typed_id: str = ""  # what the operator is typing (keys or the on-screen keypad)
    quality: str = "no_signal"
    quality_message: str = ""
    usable_frames: int = 0
    processed_frames: int = 0
    min_usable_frames: int = 20
    elapsed_s: float = 0.0  # of the session, on the video's clock
    muscles: list[str] = field(default_factory=list)  # the protocol's checklist
    muscle: int = 0  # the one being scanned
    muscle_frames: list[int] = field(default_factory=list)  # usable frames of each
    measurements: dict | None = None  # the muscle so far in this session (None: not measuring)
    threshold: float = 0.5
    fps: float = 0.0
    link: str = "off"  # off | online | offline
    link_detail: str = "no MQTT broker configured: results stay in the local log"
    queued_results: int = 0
    model: str = ""
    app_version: str = ""
    free_mb: int | None = None
    notice: str = ""  # why the last start was refused
    error: str | None = None  # camera | model | disk: shown over everything else
    error_detail: str = ""
    status_open: bool = False
    region: tuple[int, int, int, int] | None = None
    frame_index: int | None = None
    result: dict | None = None  # the session's result payload, in result mode
    held: bool = False  # a positive result not sent yet: the calculator may add measurements
    criteria_open: bool = False
    criteria: dict[str, str] = field(default_factory=dict)  # as typed: "sex", "grip_kg"...
    criteria_field: str = "grip_kg"  # where the keypad types

    @property
    def call(self) -> ScreenCall:
        """The result's call as the device made it (``screen``), or by the default rule for a
        result without one."""
        result = self.result or {}
        screen = result.get("screen")
        if screen is None:
            return call_of_result(result)
        return ScreenCall(screen["call"], result.get("probability"), screen["low"],
                          screen["high"], screen["level"])

    @property
    def view(self) -> str:
        """What is drawn: idle, scanning, result, rescan, criteria, error or status."""
        if self.error:
            return "error"
        if self.status_open:
            return "status"
        if self.criteria_open:
            return "criteria"
        if self.mode == "result":
            return "rescan" if self.call.call == "rescan" else "result"
        return self.mode


def draw(screen: ScreenState, frame: np.ndarray | None,
         size: tuple[int, int] = (800, 480)) -> Drawing:
    """The picture with its texts and buttons (edge_app.ui)."""
    return views.draw(screen, frame, size)


def render(screen: ScreenState, frame: np.ndarray | None,
           size: tuple[int, int] = (800, 480)) -> np.ndarray:
    return draw(screen, frame, size).image


def snapshot_stem(result: dict) -> str:
    """``20250131T093102Z-SCR-0042-a163c173``: when (UTC, the result's end) and who, so a
    folder of snapshots sorts by time and is found by screening id; the result id's first
    part keeps two results of one second apart."""
    ended = parse_time(result["ended_at"])
    return f"{ended:%Y%m%dT%H%M%SZ}-{result['screening_id']}-{result['result_id'][:8]}"


class SnapshotWriter:
    """Headless display: ``live.png``/``live.json`` at most every ``interval_s``, and
    ``<time>-<screening id>.png``/``.json`` for each session result (:func:`snapshot_stem`)."""

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
        fields = {**asdict(screen), "view": screen.view}
        atomic_write(self.folder / f"{stem}.json",
                     json.dumps(fields, indent=1, default=str).encode(), durable=False)
        return png

    def poll_key(self) -> int | None:
        return None

    def close(self) -> None:
        pass


class WindowDisplay:
    """An OpenCV window, full screen on the device's small display. Keys and taps (a touch
    screen's taps arrive as mouse clicks) go to the pipeline through ``poll_key``: a key code,
    or the action of the button tapped."""

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
        self._events: deque[int | str] = deque(maxlen=64)
        self._drawing: Drawing | None = None
        cv2.setMouseCallback(title, self._tapped)

    def _tapped(self, event: int, x: int, y: int, flags: int, param: object) -> None:
        if event == cv2.EVENT_LBUTTONUP and self._drawing is not None:
            action = self._drawing.button_at(x, y)
            if action is not None:
                self._events.append(action)

    def show(self, screen: ScreenState, frame: np.ndarray | None) -> None:
        self._drawing = draw(screen, frame, self.size)
        cv2.imshow(self.title, self._drawing.image)
        key = cv2.waitKey(1)
        if key != -1:
            self._events.append(key & 0xFF)

    def write(self, stem: str, screen: ScreenState, frame: np.ndarray | None) -> None:
        self.show(screen, frame)

    def poll_key(self) -> int | str | None:
        return self._events.popleft() if self._events else None

    def close(self) -> None:
        cv2.destroyWindow(self.title)


