"""Operator input (the person at the scanner): keys typed on the device and session commands
from the dashboard.

Both act in the loop's thread only: an MQTT command arrives on paho's thread and is queued
(``submit``), then run on the loop's next pass, so a session never changes under a frame.
"""

from __future__ import annotations

import queue
from typing import Any, Protocol

from edge_app.display import ScreenState
from edge_app.session import Session


class Controls(Protocol):
    """What the operator can do to the pipeline (``EdgePipeline``)."""

    @property
    def session(self) -> Session | None: ...

    def start_session(self, screening_id: str) -> bool: ...

    def end_session(self) -> object: ...

    def stop(self) -> None: ...


class Keys(Protocol):
    """The window the operator types into (a display: ``poll_key``)."""

    def poll_key(self) -> int | None: ...


class OperatorInput:
    """Turns keys and queued commands into session control. The id being typed is kept on
    the screen (``ScreenState.typed_id``), which is where the operator sees it."""

    def __init__(self, controls: Controls, screen: ScreenState, keys: Keys) -> None:
        self.controls = controls
        self.screen = screen
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
        """The key pressed since the screen was last shown, if any. Enter starts/ends a session
        (a foot switch or button that types Enter works too); letters, digits, '-' and '_' type
        the screening id; Backspace deletes; Esc ends the session and quits."""
        key = self.keys.poll_key()
        if key is None:
            return
        screen, controls = self.screen, self.controls
        if key in (10, 13):
            if controls.session is None:
                if controls.start_session(screen.typed_id):
                    screen.typed_id = ""
            else:
                controls.end_session()
        elif key == 27:
            controls.end_session()
            controls.stop()
        elif key in (8, 127):
            screen.typed_id = screen.typed_id[:-1]
        elif controls.session is None and (chr(key).isalnum() or chr(key) in "-_") and \
                len(screen.typed_id) < 32:
            screen.typed_id += chr(key)
