"""Persistent outbox: session results wait on disk until the broker acknowledges them.

paho keeps unacknowledged messages in memory only, so a power cut or a restart while the
broker is unreachable would lose them. Here a result is written (SQLite, WAL, synchronous FULL)
before it is published and its row is deleted only when the broker's PUBACK for it arrives.
``seq`` is an AUTOINCREMENT key: it never goes back, even after deletions, so it gives the
drain order and lets consumers see the order results were produced in.

Bound and policy (docs/mqtt.md): the outbox holds session results only (live readings are
never queued: they are stale a second later). It never drops a result. When it holds
``capacity`` results, ``is_full`` turns true and the pipeline refuses to *start* a new session
(the display says why); the session in progress can still finish, so the table holds at most
``capacity + 1`` rows.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarco_core.wire import schema

_TABLE = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    result_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
)
"""


@dataclass(frozen=True)
class OutboxItem:
    """One queued result, ready to publish."""

    seq: int
    result_id: str
    topic: str
    payload: bytes


class Outbox:
    """SQLite-backed FIFO of results keyed by their ``result_id``.

    One connection shared by the pipeline thread (``add``) and the MQTT thread (``pending``,
    ``remove``) behind a lock; every operation is a short transaction.
    """

    def __init__(self, path: Path, capacity: int = 5000) -> None:
        if capacity < 1:
            raise ValueError(f"outbox capacity must be >= 1, got {capacity}")
        self.path = Path(path)
        self.capacity = capacity
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_TABLE)
        except sqlite3.DatabaseError as exc:
            raise OSError(
                f"outbox {self.path} cannot be opened ({exc}); move the file aside to start "
                "a new one (its unsent results stay in it)"
            ) from None

    def add(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Store a result (its ``seq`` is assigned here) and return the payload as queued."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT INTO outbox (result_id, topic, payload) VALUES (?, ?, ?)",
                    (payload["result_id"], topic, b""),
                )
                queued = {**payload, "seq": int(cursor.lastrowid)}
                self._db.execute(
                    "UPDATE outbox SET payload = ? WHERE seq = ?",
                    (schema.encode("result", queued), queued["seq"]),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return queued

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxItem]:
        """Queued results with ``seq > after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, result_id, topic, payload FROM outbox WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxItem(seq, rid, topic, bytes(data)) for seq, rid, topic, data in rows]

    def remove(self, result_id: str) -> bool:
        """Delete a result once the broker acknowledged it; False if it was not queued."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM outbox WHERE result_id = ?", (result_id,))
        return cursor.rowcount > 0

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    @property
    def is_full(self) -> bool:
        """True when no new session may start (see the module docstring)."""
        return len(self) >= self.capacity

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

