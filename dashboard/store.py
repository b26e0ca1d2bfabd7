"""Writing what the ingest received: results once, the latest device state, rejections.

Every write is an idempotent statement (INSERT ... ON CONFLICT in the SQLite and PostgreSQL
dialects), so a message delivered twice, late, or to two workers at once changes nothing the
second time. A batch is one transaction; the ingest acknowledges its messages to the broker
only after the commit, so an acknowledged result is on disk.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, case, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dashboard.models import Device, RejectedMessage, Result, ResultCount

_REJECTION_REASON_CHARS = 500
_DECISION_COLUMNS = {"sarcopenia": "positive", "no_sarcopenia": "negative", "rescan": "rescans"}
_COUNT_COLUMNS = ("results", "positive", "negative", "rescans", "skipped_frames",
                  "processed_frames")


@dataclass(frozen=True)
class Received:
    """A validated payload and when it reached the ingest (our clock)."""

    payload: dict[str, Any]
    received_at: datetime


@dataclass(frozen=True)
class Rejection:
    topic: str
    reason: str
    size_bytes: int
    digest: str  # SHA-256 of topic and payload: the same bad message is one row
    received_at: datetime


@dataclass
class Batch:
    """Messages sorted by kind, in arrival order."""

    results: list[Received] = field(default_factory=list)
    statuses: list[Received] = field(default_factory=list)
    live: list[Received] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.results) + len(self.statuses) + len(self.live) + len(self.rejections)


@dataclass(frozen=True)
class BatchOutcome:
    stored: int  # new results
    duplicates: int  # results that were already stored
    rejected: int


def parse_time(value: str) -> datetime:
    """The schema's ``2025-01-31T09:30:00.000Z`` as a naive UTC datetime."""
    return datetime.fromisoformat(value.removesuffix("Z"))


def _insert(session: Session, table: Any) -> Any:
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    return dialect.insert(table)


def _later(table: Any, excluded: Any, column: str) -> Any:
    """The newer of the stored and the incoming time: portable GREATEST with NULLs."""
    old, new = getattr(table.c, column), getattr(excluded, column)
    return case((old.is_(None), new), (new > old, new), else_=old)


class FleetStore:
    """Writes batches into the dashboard database; one instance per ingest worker."""

    def __init__(self, engine: Engine, worker: str) -> None:
        self.engine = engine
        self.worker = worker

    def write(self, batch: Batch, stored_at: datetime) -> BatchOutcome:
        with Session(self.engine) as session, session.begin():
            stored, duplicates = self._results(session, batch.results, stored_at)
            for status in batch.statuses:
                self._status(session, status)
            self._live(session, batch.live)
            self._rejections(session, batch.rejections)
        return BatchOutcome(stored, duplicates, len(batch.rejections))

    def _results(self, session: Session, results: list[Received],
                 stored_at: datetime) -> tuple[int, int]:
        if not results:
            return 0, 0
        rows = {}
        for item in results:  # a duplicate inside one batch counts as a duplicate too
            rows.setdefault(item.payload["result_id"], _result_row(item.payload, stored_at,
                                                                    self.worker))
        table = Result.__table__
        statement = (_insert(session, table)
                     .on_conflict_do_nothing(index_elements=["result_id"])
                     .returning(table.c.result_id))
        # a fixed order: two workers inserting overlapping batches on PostgreSQL take the
        # unique-index locks in the same order and cannot deadlock
        ordered = [rows[result_id] for result_id in sorted(rows)]
        inserted = session.execute(statement, ordered).scalars().all()
        self._count(session, [rows[result_id] for result_id in inserted])
        self._devices_seen_by_results(session, results)
        return len(inserted), len(results) - len(inserted)

    def _count(self, session: Session, inserted: list[dict[str, Any]]) -> None:
        """Add the newly stored results (never a duplicate: only what the INSERT returned)
        to the running totals."""
        totals: dict[tuple, Counter] = {}
        for row in inserted:
            key = (row["site"], row["device"], row["day"], row["model_name"],
                   row["model_sha256"])
            counts = totals.setdefault(key, Counter())
            counts["results"] += 1
            counts[_DECISION_COLUMNS[row["decision"]]] += 1
            counts["skipped_frames"] += row["skipped_frames"]
            counts["processed_frames"] += row["processed_frames"]
        if not totals:
            return
        table = ResultCount.__table__
        statement = _insert(session, table)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["site", "device", "day", "model_name", "model_sha256"],
                set_={name: getattr(table.c, name) + getattr(statement.excluded, name)
                      for name in _COUNT_COLUMNS}),
            [{"site": key[0], "device": key[1], "day": key[2], "model_name": key[3],
              "model_sha256": key[4], **{name: counts[name] for name in _COUNT_COLUMNS}}
             for key, counts in sorted(totals.items())])

    def _devices_seen_by_results(self, session: Session, results: list[Received]) -> None:
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for item in results:
            key = (item.payload["site"], item.payload["device"])
            ended = parse_time(item.payload["ended_at"])
            row = latest.setdefault(key, {"site": key[0], "device": key[1], "state": "unknown",
                                          "last_result_at": ended,
                                          "last_seen_at": item.received_at})
            row["last_result_at"] = max(row["last_result_at"], ended)
            row["last_seen_at"] = max(row["last_seen_at"], item.received_at)
        table = Device.__table__
        statement = _insert(session, table)
        # one statement, executemany: a batch spans many devices
        session.execute(statement.on_conflict_do_update(
            index_elements=["site", "device"],
            set_={"last_result_at": _later(table, statement.excluded, "last_result_at"),
                  "last_seen_at": _later(table, statement.excluded, "last_seen_at")}),
            sorted(latest.values(), key=lambda r: (r["site"], r["device"])))

    def _status(self, session: Session, item: Received) -> None:
        """A status applies unless an older one arrives after a newer (by the device clock).
        A last will (``at`` null, sent by the broker) always applies and keeps what it does
        not know (model, backlog, the last status time) from before."""
        payload = item.payload
        model = payload["model"] or {}
        is_will = payload["at"] is None
        row = {
            "site": payload["site"], "device": payload["device"], "state": payload["state"],
            "status_at": None if is_will else parse_time(payload["at"]),
            "state_since": item.received_at,
            "app_version": payload["app_version"],
            "model_name": model.get("name"), "model_sha256": model.get("sha256"),
            "queued_results": payload["queued_results"],
            "last_seen_at": item.received_at,
        }
        table = Device.__table__
        statement = _insert(session, table).values(row)
        new = statement.excluded
        keep = ("status_at", "app_version", "model_name", "model_sha256", "queued_results")
        session.execute(statement.on_conflict_do_update(
            index_elements=["site", "device"],
            set_={
                "state": new.state,
                "state_since": case((table.c.state == new.state, table.c.state_since),
                                    else_=new.state_since),
                **{name: func.coalesce(getattr(new, name), getattr(table.c, name))
                   for name in keep},
                "last_seen_at": table.c.last_seen_at if is_will
                else _later(table, new, "last_seen_at"),
            },
            where=new.status_at.is_(None) | table.c.status_at.is_(None)
            | (new.status_at > table.c.status_at),
        ))

    def _live(self, session: Session, live: list[Received]) -> None:
        """Only the newest reading per device matters (fps for the health view)."""
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for item in live:
            payload = item.payload
            row = {"site": payload["site"], "device": payload["device"], "state": "unknown",
                   "fps": float(payload["fps"]), "live_at": parse_time(payload["captured_at"]),
                   "last_seen_at": item.received_at}
            key = (row["site"], row["device"])
            if key not in latest or row["live_at"] > latest[key]["live_at"]:
                latest[key] = row
        if not latest:
            return
        table = Device.__table__
        statement = _insert(session, table)
        new = statement.excluded
        session.execute(statement.on_conflict_do_update(
            index_elements=["site", "device"],
            set_={"fps": new.fps, "live_at": new.live_at,
                  "last_seen_at": _later(table, new, "last_seen_at")},
            where=table.c.live_at.is_(None) | (new.live_at > table.c.live_at)),
            sorted(latest.values(), key=lambda r: (r["site"], r["device"])))

    def _rejections(self, session: Session, rejections: list[Rejection]) -> None:
        counts = Counter(r.digest for r in rejections)
        first = {r.digest: r for r in reversed(rejections)}
        table = RejectedMessage.__table__
        for digest in sorted(counts):
            item = first[digest]
            statement = _insert(session, table).values(
                digest=digest, topic=item.topic[:300],
                reason=item.reason[:_REJECTION_REASON_CHARS], size_bytes=item.size_bytes,
                first_seen=item.received_at, last_seen=item.received_at,
                times_seen=counts[digest])
            new = statement.excluded
            session.execute(statement.on_conflict_do_update(
                index_elements=["digest"],
                set_={"last_seen": _later(table, new, "last_seen"),
                      "times_seen": table.c.times_seen + new.times_seen}))


def _result_row(payload: dict[str, Any], stored_at: datetime, worker: str) -> dict[str, Any]:
    ended = parse_time(payload["ended_at"])
    return {
        "result_id": payload["result_id"],
        "seq": payload["seq"],
        "site": payload["site"],
        "device": payload["device"],
        "session_id": payload["session_id"],
        "screening_id": payload["screening_id"],
        "started_at": parse_time(payload["started_at"]),
        "ended_at": ended,
        "day": ended.date(),
        "decision": payload["decision"],
        "probability": payload["probability"],
        "score_logit": payload["score_logit"],
        "threshold": payload["threshold"],
        "aggregation": payload["aggregation"],
        "uncertainty": payload["uncertainty"],
        "usable_frames": payload["usable_frames"],
        "processed_frames": payload["processed_frames"],
        "min_usable_frames": payload["min_usable_frames"],
        "skipped_frames": sum(payload["skipped"].values()),
        "skipped": payload["skipped"],
        "model_name": payload["model"]["name"],
        "model_sha256": payload["model"]["sha256"],
        "app_version": payload["app_version"],
        "stored_at": stored_at,
        "stored_by": worker,
    }
