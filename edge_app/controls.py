"""Operator input (the person at the scanner): keys and taps on the device, and session
commands from the dashboard.

A key and a tap on a button mean the same: both become an action (``start``, ``end``,
``next``, ``again``, ``next_muscle``, ``status``, ``dismiss``, ``delete``, ``type:X``), so
the on-screen keypad and a USB keyboard (or a foot switch that types Enter) drive the same
code. Enter is the blue (primary) button of the screen showing: start, end the scan, next
participant, or scan again after a borderline or rescan call.

Everything acts in the loop's thread only: an MQTT command arrives on paho's thread and is
queued (``submit``), then run on the loop's next pass, so a session never changes under a
frame.
"""

from __future__ import annotations

import queue
from typing import Any, Protocol

from edge_app.display import ScreenState
from edge_app.session import Session
from edge_app.ui.calculator import FIELDS, measurements, type_into
from edge_app.ui.views import primary_action
from sarco_core.wire.payloads import assessment

MAX_ID_CHARS = 32  # sarco_core.wire.schema: a screening id has at most 32 characters
ENTER, ESCAPE, TAB = (10, 13), 27, 9
BACKSPACE = (8, 127)
# the calculator's letters: sex, ASMI method, and the next field (digits and '.' type)
_CRITERIA_KEYS = {"m": "sex:M", "f": "sex:F", "d": "asmi_method:dxa", "b": "asmi_method:bia",
                  "n": "next_field", " ": "next_field"}


class Controls(Protocol):
    """What the operator can do to the pipeline (``EdgePipeline``)."""

    @property
    def session(self) -> Session | None: ...

    def start_session(self, screening_id: str) -> bool: ...

    def end_session(self) -> object: ...

    def release(self, assessment: dict[str, Any] | None = None) -> object: ...

    def stop(self) -> None: ...


class ScreenMoves(Protocol):
    """The display sink's moves between screens (``DisplaySink``)."""

    screen: ScreenState

    def next_muscle(self) -> None: ...

    def to_idle(self) -> None: ...

    def toggle_status(self) -> None: ...

    def dismiss(self) -> None: ...


class Keys(Protocol):
    """The window the operator types and taps into: a key code, or a tapped button's action."""

    def poll_key(self) -> int | str | None: ...


class OperatorInput:
    """Turns keys, taps and queued commands into session control and screen changes. The id
    being typed is kept on the screen (``ScreenState.typed_id``), where the operator sees it."""

    def __init__(self, controls: Controls, display: ScreenMoves, keys: Keys) -> None:
        self.controls = controls
        self.display = display
        self.keys = keys
        self.commands: queue.Queue[tuple[str, str | None]] = queue.Queue()

    def submit(self, command: dict[str, Any]) -> None:
        """An MQTT command (already schema-checked), from any thread."""
        self.commands.put((command["command"], command.get("screening_id")))

    def run_commands(self) -> None:
        """The queued commands, oldest first."""
        while True:
            try:
                command, screening_id = self.commands.get_nowait()
            except queue.Empty:
                return
            if command == "start_session" and screening_id:
                self.controls.start_session(screening_id)
            elif command == "end_session":
                self.controls.end_session()

    def poll(self) -> None:
        """The key or tap since the screen was last shown, if any."""
        event = self.keys.poll_key()
        if event is None:
            return
        action = event if isinstance(event, str) else self._action_of_key(event)
        if action is not None:
            self.act(action)

    def _action_of_key(self, key: int) -> str | None:
        """Enter: the screen's primary button; Tab: device status; Backspace deletes; Esc ends
        the session and quits; while scanning N (or space) moves to the next muscle; any
        other letter, digit, '-' or '_' types the next screening id."""
        view = self.display.screen.view
        if key in ENTER:
            return primary_action(self.display.screen)
        if key == ESCAPE:
            return "quit"
        if key == TAB:
            return "status"
        if key in BACKSPACE:
            return "delete"
        char = chr(key)
        if view == "scanning":
            return "next_muscle" if char in "nN " else None
        if view == "criteria":
            return _CRITERIA_KEYS.get(char.lower(), f"type:{char}" if char in ".0123456789"
                                      else None)
        if char.isascii() and (char.isalnum() or char in "-_"):
            return f"type:{char}"
        return None

    def act(self, action: str) -> None:
        screen, controls = self.display.screen, self.controls
        if screen.criteria_open and self._calculate(screen, action):
            return
        if action == "start" and controls.session is None:
            if controls.start_session(screen.typed_id):
                screen.typed_id = ""
        elif action == "end":
            controls.end_session()
        elif action == "again" and controls.session is None and screen.screening_id:
            controls.start_session(screen.screening_id)
        elif action == "next":
            controls.release()  # a held positive result goes out without measurements
            self.display.to_idle()
        elif action == "criteria" and screen.held:
            screen.criteria_open = not screen.criteria_open
        elif action == "next_muscle":
            self.display.next_muscle()
        elif action == "status":
            self.display.toggle_status()
        elif action == "dismiss":
            self.display.dismiss()
        elif action == "quit":
            controls.end_session()
            controls.stop()
        elif action == "delete" or action.startswith("type:"):
            self._edit(screen, action)

    def _calculate(self, screen: ScreenState, action: str) -> bool:
        """An action on the calculator; False when it is none of its own."""
        kind, _, value = action.partition(":")
        if kind == "field":
            screen.criteria_field = value
        elif kind in ("sex", "asmi_method"):
            screen.criteria[kind] = value
        elif kind == "type" or action == "delete":
            type_into(screen.criteria, screen.criteria_field, value or "delete")
        elif action == "next_field":
            names = [name for name, _, _ in FIELDS]
            screen.criteria_field = names[(names.index(screen.criteria_field) + 1) % len(names)]
        elif action == "done":
            entered = any(screen.criteria.values())
            self.controls.release(assessment(measurements(screen.criteria)) if entered else None)
        else:
            return False
        return True

    def _edit(self, screen: ScreenState, action: str) -> None:
        """Typing on a result screen starts the next participant's id."""
        if self.controls.session is not None:
            return
        self.display.to_idle()
        if action == "delete":
            screen.typed_id = screen.typed_id[:-1]
        elif len(screen.typed_id) < MAX_ID_CHARS:
            screen.typed_id += action.removeprefix("type:")
