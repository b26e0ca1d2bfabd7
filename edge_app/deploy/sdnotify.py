"""systemd's notify protocol (``sd_notify``), in plain Python: one datagram per message to the
socket named by ``$NOTIFY_SOCKET``. Outside systemd (no variable) every call does nothing.

The unit (jetson/sarco-edge.service) is ``Type=notify`` with ``WatchdogSec=``: the app says
``READY=1`` once the pipeline is assembled, and :class:`Watchdog` sends ``WATCHDOG=1`` only
while the processing loop keeps beating, so a hung loop (a stuck driver call, a deadlock) gets
the process killed and restarted by systemd instead of showing a frozen screen forever.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``); False when not run by systemd."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """Half of ``WatchdogSec`` (systemd's advice), or None when no watchdog is set for us."""
    environ = environ if environ is not None else os.environ
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


class Watchdog:
    """Pings systemd every ``interval_s`` while ``last_beat()`` (a ``time.monotonic()`` value
    the processing loop updates) is younger than ``stall_s``; then falls silent so systemd
    restarts the service."""

    def __init__(self, last_beat: Callable[[], float], interval_s: float, stall_s: float,
                 environ: dict[str, str] | None = None) -> None:
        self.last_beat = last_beat
        self.interval_s = interval_s
        self.stall_s = stall_s
        self._environ = environ
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self.pings = 0

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 1)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if time.monotonic() - self.last_beat() <= self.stall_s:
                if notify("WATCHDOG=1", self._environ):
                    self.pings += 1


@contextmanager
def service_notifications(last_beat: Callable[[], float], stall_s: float,
                          environ: dict[str, str] | None = None) -> Iterator[Watchdog | None]:
    """``READY=1`` on entry, the watchdog (when systemd set one for this process) while inside,
    and ``STOPPING=1`` on the way out, whatever ends the block."""
    notify("READY=1", environ)
    interval = watchdog_interval_s(environ)
    watchdog = None if interval is None else \
        Watchdog(last_beat, interval, stall_s, environ).start()
    try:
        yield watchdog
    finally:
        if watchdog is not None:
            watchdog.stop()
        notify("STOPPING=1", environ)
