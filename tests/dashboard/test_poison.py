"""Poison messages never stop the ingest: what the schema or the database refuses is set
aside with its reason, the rest of its batch is stored, a reused result id with other
content is kept aside, an unavailable database is waited for (never a reason to reject),
``/healthz`` says when the ingest is stuck, and a fuzz of decode + store in which every
message is either stored or rejected and nothing raises."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from dashboard.db import make_engine, migrate, utc_now
from dashboard.messages import Received, Rejection, admit
from dashboard.models import Device, RejectedMessage, Result
from dashboard.store import Batch, FleetStore
from dashboard.web import create_app
from sarco_core.wire import schema
from testkit.mosquitto import free_port, requires_mosquitto
from tests.support.dashboard import (
    RawPublisher,
    encode,
    fleet_broker,
    live_payload,
    result_payload,
    running_ingest,
    sqlite_engine,
    status_payload,
    wait_until,
)

RESULT_TOPIC = schema.topic_for("site-01", "us-001", "result")


def _admitted(payload: dict[str, Any]) -> Received:
    admitted = admit(RESULT_TOPIC, json.dumps(payload).encode(), utc_now())
    assert isinstance(admitted, tuple), admitted
    return admitted[1]


def _rejected(engine) -> list[RejectedMessage]:  # noqa: ANN001
    with Session(engine) as session:
        return list(session.scalars(select(RejectedMessage).order_by(RejectedMessage.id)))


def test_a_result_id_reused_with_other_content_is_kept_aside_and_a_respelling_is_a_duplicate(
        tmp_path):
    engine = sqlite_engine(tmp_path)
    store = FleetStore(engine, "w1")
    original = result_payload()
    respelled = {**original, "result_id": "{" + original["result_id"].replace("-", "").upper()
                 + "}"}
    changed = {**original, "decision": "sarcopenia", "probability": 0.8, "score_logit": 1.386}
    first = store.write(Batch(results=[_admitted(original)]), utc_now())
    # the same id twice in one batch: once as it was, once with a new decision
    again = store.write(Batch(results=[_admitted(respelled), _admitted(changed)]), utc_now())
    inside = store.write(Batch(results=[_admitted(other := result_payload(seq=2)),
                                        _admitted({**other, "seq": 3})]), utc_now())
    assert (first.stored, first.duplicates, first.rejected) == (1, 0, 0)
    assert (again.stored, again.duplicates, again.rejected) == (0, 1, 1)
    assert (inside.stored, inside.duplicates, inside.rejected) == (1, 0, 1)
    with Session(engine) as session:
        stored = {r.result_id: r for r in session.scalars(select(Result))}
    assert set(stored) == {original["result_id"], other["result_id"]}
    assert (stored[original["result_id"]].decision, stored[other["result_id"]].seq) == \
        ("no_sarcopenia", 2)
    rows = _rejected(engine)
    assert [row.reason.split(":")[0] for row in rows] == ["duplicate id, different content"] * 2
    assert json.loads(rows[0].payload) == changed  # kept, for whoever sorts it out


def test_a_message_the_database_refuses_is_set_aside_and_its_batch_is_stored(tmp_path):
    engine = sqlite_engine(tmp_path)
    with engine.begin() as connection:  # a refusal the schema cannot foresee
        connection.execute(text(
            "CREATE TRIGGER refuse BEFORE INSERT ON results WHEN NEW.screening_id = 'SCR-0666' "
            "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"))
    good = [result_payload(seq=seq) for seq in (1, 2, 3)]
    refused = result_payload(seq=4, screening_id="SCR-0666")
    now = time.time()
    batch = Batch(results=[_admitted(p) for p in (good[0], refused, *good[1:])],
                  statuses=[Received(status_payload("site-01", "us-001", "online", at=now),
                                     utc_now())])
    outcome = FleetStore(engine, "w1").write(batch, utc_now())
    assert (outcome.stored, outcome.duplicates, outcome.rejected) == (3, 0, 1)
    with Session(engine) as session:
        assert sorted(session.scalars(select(Result.result_id))) == \
            sorted(p["result_id"] for p in good)
        assert session.get(Device, ("site-01", "us-001")).state == "online"
    [row] = _rejected(engine)
    assert row.reason.startswith("could not be stored: IntegrityError")
    assert "refused by a test trigger" in row.reason
    assert json.loads(row.payload) == refused


def test_an_unavailable_database_is_waited_for_never_a_reason_to_set_aside(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'dashboard.db'}")
    migrate(engine)
    event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA busy_timeout=200"))
    engine.dispose()  # new connections, with the short timeout
    lock = sqlite3.connect(tmp_path / "dashboard.db")
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        with pytest.raises(OperationalError, match="locked"):
            FleetStore(engine, "w1").write(Batch(results=[_admitted(result_payload())]),
                                           utc_now())
    finally:
        lock.rollback()
        lock.close()
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(RejectedMessage)) == 0


@contextmanager
def _serving(app) -> Iterator[str]:  # noqa: ANN001
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 15), "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _health(base: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@requires_mosquitto
def test_healthz_turns_unhealthy_while_messages_wait_and_recovers(tmp_path):
    engine = sqlite_engine(tmp_path)
    with fleet_broker(tmp_path / "broker") as broker, \
            running_ingest(engine, broker, stall_after_s=1.0) as ingest, \
            _serving(create_app(engine, auth_enabled=False, ingest=ingest)) as base:
        assert _health(base) == (200, {"ok": True, "ingest_connected": True})
        lock = sqlite3.connect(tmp_path / "dashboard.db")
        lock.execute("BEGIN EXCLUSIVE")  # the database stops taking writes
        try:
            publisher = RawPublisher(broker)
            publisher.publish(RESULT_TOPIC, encode("result", result_payload()))
            publisher.close()
            assert wait_until(lambda: _health(base)[0] == 503, 20)
            _, body = _health(base)
            assert body["ok"] is False
            assert "ingest stalled: a message has waited" in body["problem"]
        finally:
            lock.rollback()
            lock.close()
        assert ingest.wait_for(lambda s: s.stored == 1, 40), ingest.state
        assert _health(base)[0] == 200
        broker.stop()  # no broker: nothing can arrive
        assert wait_until(lambda: _health(base)[0] == 503, 20)
        assert "no connection to the broker" in _health(base)[1]["problem"]


# --------------------------------------------------------------------------- the fuzz

NOW = utc_now()
IDS = [str(uuid.UUID(int=n, version=4)) for n in range(1, 6)]  # few: ids get reused
HOSTILE = [
    None, True, 0, -1, 2**31, 2**63, 10**30, 10**400, 0.5, -0.0, 1e308, float("nan"),
    float("inf"), float("-inf"), "", " ", "x" * 65, "x" * 301, "SCR-0042\n", "\x00",
    "\ud800", "Jane Doe", "２０２５-01-31T09:30:00.000Z", "2026-13-45T25:61:61.000Z",
    "2025-02-29T09:30:00.000Z", "2099-01-31T09:30:00.000Z", "1970-01-01T00:00:00.000Z",
    "2025-01-31T09:30:00.000", "2025-01-31T09:30:00.000Z\n", [], {}, {"a": 1},
    "urn:uuid:" + IDS[0].upper(), IDS[0].replace("-", "_"), "１" * 32,
]


def _time(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z"


def _epoch(moment: datetime) -> float:
    return (moment - datetime(1970, 1, 1)).total_seconds()


recent = st.datetimes(min_value=NOW - timedelta(days=30), max_value=NOW + timedelta(hours=1))


@st.composite
def result_payloads(draw) -> dict[str, Any]:  # noqa: ANN001
    """Mostly consistent results (so that some are stored) with reused, respelled ids."""
    processed = draw(st.integers(0, 2000))
    usable = draw(st.integers(0, processed))
    skip = draw(st.integers(0, processed - usable))
    probability = draw(st.floats(0, 1)) if usable else None
    decision = "rescan" if probability is None or usable < 20 else \
        draw(st.sampled_from(schema.DECISIONS))
    started = draw(recent)
    ended = started + timedelta(seconds=draw(st.integers(0, 3600)))
    result_id = str(draw(st.sampled_from(IDS) | st.uuids(version=4)))
    spelled = draw(st.sampled_from([str, str.upper, lambda u: "urn:uuid:" + u,
                                    lambda u: "{" + u.replace("-", "") + "}"]))
    return result_payload(
        seq=draw(st.integers(0, 10**6)), result_id=spelled(result_id),
        session_id=str(uuid.uuid4()), started_at=_time(started), ended_at=_epoch(ended),
        decision=decision, probability=probability,
        score_logit=None if probability is None else math.log((probability + 1e-9)
                                                              / (1 - probability + 1e-9)),
        uncertainty=None if probability is None else {
            "logit_sd": draw(st.floats(0, 5)), "agreement": draw(st.floats(0, 1)),
            "dirichlet_u": None},
        usable_frames=usable, processed_frames=processed, min_usable_frames=20,
        skipped={"no_tissue": skip, "frozen": 0, "transition": 0, "no_region": 0})


@st.composite
def messages(draw) -> tuple[str, bytes]:  # noqa: ANN001
    """A topic and the bytes on it: a valid payload of some kind, then hostile changes to
    its fields, its JSON or its topic."""
    kind = draw(st.sampled_from(["result", "result", "live", "status"]))
    at = _epoch(draw(recent))
    if kind == "result":
        payload = draw(result_payloads())
    elif kind == "live":
        payload = live_payload("site-01", "us-001", draw(st.floats(0, 60)), at)
    else:
        payload = status_payload("site-01", "us-001", draw(st.sampled_from(["online",
                                                                             "offline"])),
                                 at=None if draw(st.booleans()) else at)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        field = draw(st.sampled_from(sorted(payload)))
        action = draw(st.sampled_from(["replace", "replace", "delete", "nest"]))
        if action == "delete":
            payload.pop(field)
        elif action == "nest" and isinstance(payload[field], dict) and payload[field]:
            inner = draw(st.sampled_from(sorted(payload[field])))
            payload[field] = {**payload[field], inner: draw(st.sampled_from(HOSTILE))}
        else:
            payload[field] = draw(st.sampled_from(HOSTILE) | st.integers() | st.text(max_size=8))
    data = json.dumps(payload).encode()  # NaN and Infinity as JavaScript spells them
    damage = draw(st.sampled_from(["none"] * 14 + ["truncate", "newline", "utf16", "noise",
                                                  "oversize", "duplicate key", "1e400"]))
    if damage == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif damage == "newline":
        data += b"\n"
    elif damage == "utf16":
        data = data.decode().encode("utf-16")
    elif damage == "noise":
        data = draw(st.binary(max_size=64))
    elif damage == "oversize":
        data = data[:-1] + b',"pad":"' + b"x" * schema.MAX_PAYLOAD_BYTES + b'"}'
    elif damage == "duplicate key":
        data = data[:-1] + b',"kind":"result"}'
    elif damage == "1e400":
        data = data.replace(b": 0.", b": 1e400", 1)
    topic = draw(st.sampled_from([schema.topic_for("site-01", "us-001", kind)] * 15 + [
        schema.topic_for("site-01", "us-002", kind), "sarco/v1/site-01/us-001\n/result",
        "sarco/v1/site-01/result", "sarco/v1/site-01/us-001/cmd", "sarco/v2/a/b/result"]))
    return topic, data


def test_fuzz_every_message_is_stored_or_rejected_with_a_reason_and_nothing_raises():
    engine = make_engine("sqlite://")  # in memory: the fuzz is about the rules, not disks
    migrate(engine)
    store = FleetStore(engine, "fuzz")
    seen = {"stored": 0, "rejected": 0}

    @settings(max_examples=3000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(messages())
    def settle(message: tuple[str, bytes]) -> None:
        topic, data = message
        admitted = admit(topic, data, NOW)
        if isinstance(admitted, Rejection):
            batch = Batch(rejections=[admitted])
        else:
            kind, item = admitted
            assert kind in ("result", "live", "status"), kind
            batch = Batch(results=[item] if kind == "result" else [],
                          statuses=[item] if kind == "status" else [],
                          live=[item] if kind == "live" else [])
        outcome = store.write(batch, NOW)
        digest = hashlib.sha256(topic.encode() + b"\0" + data).hexdigest()
        with Session(engine) as session:
            if outcome.rejected:
                assert (outcome.rejected, outcome.stored, outcome.duplicates) == (1, 0, 0)
                row = session.scalar(select(RejectedMessage).where(
                    RejectedMessage.digest == digest))
                assert row.reason and "(got " not in row.reason
                # decode raised only PayloadError, and what it passed the store could store
                assert not row.reason.startswith(("could not be decoded", "could not be stored"))
                seen["rejected"] += 1
            elif batch.results:
                assert outcome.stored + outcome.duplicates == 1
                assert session.scalar(select(func.count()).select_from(Result).where(
                    Result.result_id == batch.results[0].payload["result_id"])) == 1
                seen["stored"] += 1
            else:
                assert session.get(Device, ("site-01", "us-001")) is not None
                seen["stored"] += 1

    settle()
    assert seen["stored"] > 100 and seen["rejected"] > 100, seen  # both paths exercised
