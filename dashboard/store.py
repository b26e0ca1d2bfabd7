"""Writing what the ingest received: results once, the latest device state and health,
rejections.

Every write is an idempotent statement (INSERT ... ON CONFLICT in the SQLite and PostgreSQL
dialects), so a message delivered twice, late, or to two workers at once changes nothing the
second time. A batch is one transaction; the ingest acknowledges its messages to the broker
only after the commit, so an acknowledged result is on disk.

A batch the database refuses for any reason but being unavailable is written again one
message at a time, and a message it still refuses is set aside in ``rejected_messages``:
one poison message must not hold up the others (nor be retried for ever). A result id that
is already stored with other content is set aside too, never silently dropped.

The statements are built once per store (:class:`_Statements`) and executed with many rows
each: building an upsert and computing its cache key is a fixed cost per execution that, at
a thousand results a second in batches of a hundred, was a third of the write's CPU.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, case, delete, func, select
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, aliased

from dashboard.db import dialect_insert
from dashboard.measurements import stored_columns
from dashboard.messages import Received, Rejection, set_aside
from dashboard.models import (
    Device,
    DeviceStateChange,
    RejectedMessage,
    Result,
    ResultCount,
    TelemetrySample,
)
from sarco_core.wire import schema
from sarco_core.wire.schema import parse_time

log = logging.getLogger("dashboard.store")

TELEMETRY_HISTORY = timedelta(hours=24)  # how long health samples are kept
PRUNE_EVERY = timedelta(minutes=10)
_UPDATE_REASON_CHARS = 300
_DECISION_COLUMNS = {"sarcopenia": "positive", "no_sarcopenia": "negative", "rescan": "rescans"}
_COUNT_COLUMNS = ("results", "positive", "negative", "rescans", "skipped_frames",
                  "processed_frames")
_UPDATE_COLUMNS = ("update_version", "update_outcome", "update_reason", "update_at",
                   "update_model_sha256")


@dataclass
class Batch:
    """Messages sorted by kind, in arrival order."""

    results: list[Received] = field(default_factory=list)
    statuses: list[Received] = field(default_factory=list)
    live: list[Received] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.results) + len(self.statuses) + len(self.live) + len(self.rejections)

    def one_by_one(self) -> Iterator[tuple[Received, Batch]]:
        """Each received message with a batch of its own (rejections excluded)."""
        for item in self.results:
            yield item, Batch(results=[item])
        for item in self.statuses:
            yield item, Batch(statuses=[item])
        for item in self.live:
            yield item, Batch(live=[item])


@dataclass(frozen=True)
class BatchOutcome:
    stored: int  # new results
    duplicates: int  # results that were already stored, with the same content
    rejected: int  # messages set aside (decode, store, or a result id with other content)


def _database_unavailable(exc: BaseException) -> bool:
    """The database failed, not the message (a lost connection, a lock, a timeout): worth
    retrying, never a reason to set a message aside."""
    return (isinstance(exc, (OperationalError, InterfaceError, DisconnectionError,
                             PoolTimeout))
            or (isinstance(exc, DBAPIError) and exc.connection_invalidated))


def _later(table: Any, excluded: Any, column: str) -> Any:
    """The newer of the stored and the incoming time: portable GREATEST with NULLs."""
    old, new = getattr(table.c, column), getattr(excluded, column)
    return case((old.is_(None), new), (new > old, new), else_=old)


class _Statements:
    """Every statement a batch runs, for one dialect."""

    def __init__(self, dialect: str) -> None:
        insert = dialect_insert(dialect)
        results = Result.__table__
        self.results = (insert(results).on_conflict_do_nothing(index_elements=["result_id"])
                        .returning(results.c.result_id))

        counts = ResultCount.__table__
        statement = insert(counts)
        self.counts = statement.on_conflict_do_update(
            index_elements=["site", "device", "day", "model_name", "model_sha256"],
            set_={name: getattr(counts.c, name) + getattr(statement.excluded, name)
                  for name in _COUNT_COLUMNS})

        devices = Device.__table__
        statement = insert(devices)
        new = statement.excluded
        self.devices_seen = statement.on_conflict_do_update(
            index_elements=["site", "device"],
            set_={"last_result_at": _later(devices, new, "last_result_at"),
                  "last_seen_at": _later(devices, new, "last_seen_at")})
        self.live = statement.on_conflict_do_update(
            index_elements=["site", "device"],
            set_={"fps": new.fps, "live_at": new.live_at,
                  "last_seen_at": _later(devices, new, "last_seen_at")},
            where=devices.c.live_at.is_(None) | (new.live_at > devices.c.live_at))
        self.status = self._status(statement, devices)

        self.telemetry = insert(TelemetrySample.__table__).on_conflict_do_nothing(
            index_elements=["site", "device", "at"])
        self.state_changes = insert(DeviceStateChange.__table__).on_conflict_do_nothing(
            index_elements=["site", "device", "state", "status_at"])

        rejected = RejectedMessage.__table__
        statement = insert(rejected)
        self.rejections = statement.on_conflict_do_update(
            index_elements=["digest"],
            set_={"last_seen": _later(rejected, statement.excluded, "last_seen"),
                  "times_seen": rejected.c.times_seen + statement.excluded.times_seen})

    @staticmethod
    def _status(statement: Any, devices: Any) -> Any:
        """A status applies unless an older one arrives after a newer (by the device clock).
        A last will (``at`` null, sent by the broker) always applies and keeps what it does
        not know (model, backlog, the last status time) from before. Health and update
        replace the stored ones only when the status carries them."""
        new = statement.excluded
        keep = ("status_at", "app_version", "model_name", "model_sha256", "queued_results",
                "telemetry_at")
        is_will = new.status_at.is_(None)
        return statement.on_conflict_do_update(
            index_elements=["site", "device"],
            set_={
                "state": new.state,
                "connection_lost": new.connection_lost,
                "state_since": case((devices.c.state == new.state, devices.c.state_since),
                                    else_=new.state_since),
                **{name: func.coalesce(getattr(new, name), getattr(devices.c, name))
                   for name in keep},
                **{name: case((new.update_at.is_(None), getattr(devices.c, name)),
                              else_=getattr(new, name)) for name in _UPDATE_COLUMNS},
                "last_seen_at": case((is_will, devices.c.last_seen_at),
                                     else_=_later(devices, new, "last_seen_at")),
            },
            where=is_will | devices.c.status_at.is_(None)
            | (new.status_at > devices.c.status_at),
        )


class FleetStore:
    """Writes batches into the dashboard database; one instance per ingest worker."""

    def __init__(self, engine: Engine, worker: str,
                 telemetry_history: timedelta = TELEMETRY_HISTORY) -> None:
        self.engine = engine
        self.worker = worker
        self.telemetry_history = telemetry_history
        self._statements = _Statements(engine.dialect.name)
        self._pruned_at: datetime | None = None

    def write(self, batch: Batch, stored_at: datetime) -> BatchOutcome:
        """Store a batch in one transaction or, if the database refuses it, message by
        message, setting aside what it still refuses. Raises only while the database is
        unavailable (_database_unavailable): then nothing is lost by trying again."""
        try:
            outcome = self._write(batch, stored_at)
        except Exception as exc:
            if _database_unavailable(exc):
                raise
            log.warning("a batch of %d messages was refused (%s); storing them one by one",
                        len(batch), _describe(exc))
            outcome = self._write_one_by_one(batch, stored_at)
        if self._pruned_at is None or stored_at - self._pruned_at >= PRUNE_EVERY:
            self.prune_telemetry(stored_at)
        return outcome

    def _write(self, batch: Batch, stored_at: datetime) -> BatchOutcome:
        with Session(self.engine) as session, session.begin():
            stored, duplicates, conflicts = self._results(session, batch.results, stored_at)
            self._statuses(session, batch.statuses)
            self._live(session, batch.live)
            self._rejections(session, batch.rejections + conflicts)
        return BatchOutcome(stored, duplicates, len(batch.rejections) + len(conflicts))

    def _write_one_by_one(self, batch: Batch, stored_at: datetime) -> BatchOutcome:
        stored = duplicates = rejected = 0
        refused: list[Rejection] = []
        for item, single in batch.one_by_one():
            try:
                outcome = self._write(single, stored_at)
            except Exception as exc:
                if _database_unavailable(exc):
                    raise
                log.warning("set aside a message on %s that the database refused: %s",
                            item.topic, _describe(exc))
                refused.append(set_aside(item, f"could not be stored: {_describe(exc)}"))
                continue
            stored += outcome.stored
            duplicates += outcome.duplicates
            rejected += outcome.rejected
        rest = self._write(Batch(rejections=batch.rejections + refused), stored_at)
        return BatchOutcome(stored, duplicates, rejected + rest.rejected)

    def prune_telemetry(self, now: datetime) -> int:
        """Delete health samples older than the history, except each device's newest (the
        page shows it however old), and state changes older than the history except each
        device's newest of those (its state when the history begins). Its own short
        transaction, after the batch: a failure here only delays the clean-up. Returns the
        number of health samples deleted."""
        self._pruned_at = now
        sample = TelemetrySample
        is_current = select(Device.site).where(
            Device.site == sample.site, Device.device == sample.device,
            Device.telemetry_at == sample.at).exists()
        cutoff = now - self.telemetry_history
        change, later = DeviceStateChange, aliased(DeviceStateChange)
        superseded = select(later.id).where(
            later.site == change.site, later.device == change.device, later.at < cutoff,
            later.at > change.at).exists()
        try:
            with Session(self.engine) as session, session.begin():
                session.execute(delete(change).where(change.at < cutoff, superseded))
                return session.execute(delete(sample).where(
                    sample.received_at < cutoff, ~is_current)).rowcount
        except SQLAlchemyError as exc:
            log.warning("pruning the telemetry history failed (tried again in %s): %s",
                        PRUNE_EVERY, exc.__class__.__name__)
            return 0

    def _results(self, session: Session, results: list[Received],
                 stored_at: datetime) -> tuple[int, int, list[Rejection]]:
        """(new, duplicates, conflicts): a result whose id is stored (or earlier in the
        batch) with the same content is a duplicate; with other content, a conflict that
        is set aside and logged."""
        if not results:
            return 0, 0, []
        received = [(item, _result_row(item.payload, stored_at, self.worker))
                    for item in results]
        rows: dict[str, dict[str, Any]] = {}
        for _, row in received:  # a duplicate inside one batch counts as a duplicate too
            rows.setdefault(row["result_id"], row)
        # a fixed order: two workers inserting overlapping batches on PostgreSQL take the
        # unique-index locks in the same order and cannot deadlock
        ordered = [rows[result_id] for result_id in sorted(rows)]
        inserted = set(session.execute(self._statements.results, ordered).scalars())
        reference = {**rows, **_stored_content(session, sorted(set(rows) - inserted))}
        kept, conflicts = [], []
        for item, row in received:
            same = _same_content(row, reference.get(row["result_id"], row))
            (kept if same else conflicts).append(item)
        self._count(session, [rows[result_id] for result_id in sorted(inserted)])
        if kept:
            self._devices_seen_by_results(session, kept)
        rejections = []
        for item in conflicts:
            result_id = item.payload["result_id"]
            log.warning("result %s arrived again with different content: set aside", result_id)
            rejections.append(set_aside(item, f"duplicate id, different content: result_id "
                                              f"{result_id} is stored with other content"))
        return len(inserted), len(results) - len(inserted) - len(conflicts), rejections

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
        if totals:
            session.execute(self._statements.counts, [
                {"site": key[0], "device": key[1], "day": key[2], "model_name": key[3],
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
        session.execute(self._statements.devices_seen,
                        sorted(latest.values(), key=lambda r: (r["site"], r["device"])))

    def _statuses(self, session: Session, statuses: list[Received]) -> None:
        """In arrival order: the statement's ordering rule sorts out the device clock."""
        if not statuses:
            return
        rows = [_status_row(item) for item in statuses]
        changes = _state_changes(session, rows)
        session.execute(self._statements.status, rows)
        if changes:
            session.execute(self._statements.state_changes, changes)
        samples = [_telemetry_row(item) for item in statuses
                   if item.payload.get("health") and item.payload["at"] is not None]
        if samples:
            session.execute(self._statements.telemetry, samples)

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
        if latest:
            session.execute(self._statements.live,
                            sorted(latest.values(), key=lambda r: (r["site"], r["device"])))

    def _rejections(self, session: Session, rejections: list[Rejection]) -> None:
        if not rejections:
            return
        counts = Counter(r.digest for r in rejections)
        first = {r.digest: r for r in reversed(rejections)}
        session.execute(self._statements.rejections, [
            {"digest": digest, "topic": first[digest].topic, "reason": first[digest].reason,
             "size_bytes": first[digest].size_bytes, "payload": first[digest].payload,
             "first_seen": first[digest].received_at,
             "last_seen": first[digest].received_at, "times_seen": counts[digest]}
            for digest in sorted(counts)])


# what a result says (everything but when and by whom it was stored): equal for a
# duplicate, different for a conflicting reuse of its id
_CONTENT_COLUMNS = tuple(column.name for column in Result.__table__.columns
                         if column.name not in ("id", "stored_at", "stored_by"))


def _stored_content(session: Session, result_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not result_ids:
        return {}
    table = Result.__table__
    rows = session.execute(select(*(table.c[name] for name in _CONTENT_COLUMNS))
                           .where(table.c.result_id.in_(result_ids)))
    return {row.result_id: dict(row._mapping) for row in rows}


def _same_content(row: dict[str, Any], reference: dict[str, Any]) -> bool:
    return all(row[name] == reference[name] for name in _CONTENT_COLUMNS)


def _describe(exc: BaseException) -> str:
    """The exception's class and first line, without the SQL and parameters SQLAlchemy
    appends (they may quote the payload)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"


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
        **stored_columns(payload.get("measurements")),
    }


def _status_row(item: Received) -> dict[str, Any]:
    payload = item.payload
    model = payload["model"] or {}
    at = None if payload["at"] is None else parse_time(payload["at"])
    # the last will is fixed when the connection opens: its update may be older than what a
    # later status said, and it carries no health
    update = payload.get("update") if at is not None else None
    return {
        "site": payload["site"], "device": payload["device"], "state": payload["state"],
        "status_at": at, "state_since": item.received_at,
        # only the last will (the broker's, ``at`` null) says the connection was lost
        "connection_lost": payload["state"] == "offline" and at is None,
        "app_version": payload["app_version"],
        "model_name": model.get("name"), "model_sha256": model.get("sha256"),
        "queued_results": payload["queued_results"],
        "last_seen_at": item.received_at,
        "telemetry_at": at if payload.get("health") else None,
        "update_version": update["version"] if update else None,
        "update_outcome": update["outcome"] if update else None,
        "update_reason": update["reason"][:_UPDATE_REASON_CHARS] if update else None,
        "update_at": parse_time(update["at"]) if update else None,
        "update_model_sha256": update["model_sha256"] if update else None,
    }


def _state_changes(session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The online/offline changes these status rows make, by the rule of the status
    statement (``_Statements._status``): from the stored state, in arrival order, a status
    applies unless it is older (device clock) than the stored one, a last will always. Read
    in the transaction that writes them; a change two workers both record is one row (the
    unique key, ``DeviceStateChange``)."""
    devices = {(row["site"], row["device"]) for row in rows}
    stored = {(d.site, d.device): (d.state, d.status_at) for d in session.execute(
        select(Device.site, Device.device, Device.state, Device.status_at)
        .where(Device.site.in_({site for site, _ in devices}),
               Device.device.in_({device for _, device in devices})))}
    changes = []
    for row in rows:
        key = (row["site"], row["device"])
        state, status_at = stored.get(key, (None, None))
        is_will = row["status_at"] is None
        if not (is_will or status_at is None or row["status_at"] > status_at):
            continue  # an older status arriving late changes nothing
        if row["state"] != state and row["state"] in ("online", "offline"):
            changes.append({
                "site": row["site"], "device": row["device"], "state": row["state"],
                "at": row["state_since"] if is_will else row["status_at"],
                "status_at": (status_at or row["state_since"]) if is_will
                else row["status_at"],
                "connection_lost": row["connection_lost"]})
        stored[key] = (row["state"], status_at if is_will else row["status_at"])
    return changes


def _telemetry_row(item: Received) -> dict[str, Any]:
    payload = item.payload
    return {"site": payload["site"], "device": payload["device"],
            "at": parse_time(payload["at"]), "received_at": item.received_at,
            **{name: payload["health"][name] for name in schema.HEALTH_FIELDS}}
