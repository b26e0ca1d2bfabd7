"""A real webhook receiver for the alert tests: an http.server on 127.0.0.1 in a thread that
records every POST and answers 500 while told to fail."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int  # the status the receiver answered

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class WebhookReceiver:
    """``with WebhookReceiver(fail_first=1) as hook: ... hook.url ... hook.received``."""

    def __init__(self, fail_first: int = 0, always_fail: bool = False) -> None:
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.received: list[Received] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._changed:
                    failing = receiver.always_fail or receiver.fail_first > 0
                    receiver.fail_first -= 1 if receiver.fail_first > 0 else 0
                    status = 500 if failing else 204
                    receiver.received.append(Received(dict(self.headers), body, status))
                    receiver._changed.notify_all()
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/sarco"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.answered < 300]

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """Until ``count`` requests (any answer) have come."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.received) >= count, timeout_s)


def alert_settings_file(folder: Path, webhook_url: str | None = None,
                        delivery: dict[str, float] | None = None, **rules: object) -> Path:
    """A TOML file of fast settings for tests: evaluated every 0.5 s, retried after 2 s,
    ``delivery`` and ``rules`` (keys of those tables) on top."""
    lines = ["evaluate_every_s = 0.5", "[rules]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in rules.items()]
    retries = {"first_retry_s": 2, "max_retry_s": 4, **(delivery or {})}
    lines += ["[delivery]"] + [f"{key} = {value}" for key, value in retries.items()]
    if webhook_url:
        lines += ["[webhook]", f'url = "{webhook_url}"', "timeout_s = 5"]
    path = folder / "alerts.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
