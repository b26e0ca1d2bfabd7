"""The local result log: one JSON line per session result, kept on the device whatever the
network does (the outbox forgets a result once it is delivered; this file does not)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class ResultLog:
    """Append-only JSON Lines. Each result is one ``write`` of one line followed by fsync, so
    a power cut leaves at worst a last line without its newline, never a mixed one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, payload: dict[str, Any]) -> None:
        line = (json.dumps(payload, separators=(",", ":"), sort_keys=True) + "\n").encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def read(self) -> list[dict[str, Any]]:
        """All complete results (a torn last line from a power cut is skipped)."""
        if not self.path.exists():
            return []
        results = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return results
