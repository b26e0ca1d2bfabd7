"""The ingest against a real Mosquitto: results stored once whatever the delivery order or
repetition, bad messages rejected with their reason while good ones keep flowing, device
state from retained statuses and last wills, no loss while the dashboard is down or the broker
crashes, and two shared-subscription workers splitting the load without double counting
(results, and the health telemetry every worker receives)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard import queries
from dashboard.db import utc_now
from dashboard.ingest import IngestSettings, IngestWorker
from dashboard.models import Device, RejectedMessage, Result, TelemetrySample
from dashboard.simulate import FleetSimulator, plan_fleet
from sarco_core.wire import schema
from sarco_core.wire.broker import BrokerSettings
from testkit.mosquitto import requires_mosquitto
from tests.support.dashboard import (
    DASHBOARD_USER,
    MODEL,
    PASSWORD,
    RawPublisher,
    encode,
    fleet_broker,
    result_payload,
    running_ingest,
    settings_for,
    sqlite_engine,
    status_payload,
    wait_until,
)

pytestmark = requires_mosquitto
RESULT_TOPIC = schema.topic_for("site-01", "us-001", "result")
STATUS_TOPIC = schema.topic_for("site-01", "us-001", "status")


def _stored_ids(engine) -> list[str]:  # noqa: ANN001
    with Session(engine) as session:
        return list(session.scalars(select(Result.result_id)))


def test_duplicates_and_out_of_order_deliveries_are_stored_once(tmp_path):
    rng = np.random.default_rng(7)
    payloads = [result_payload(seq=seq) for seq in range(1, 21)]
    order = rng.permutation(len(payloads))
    repeated = [payloads[i] for i in rng.choice(len(payloads), size=6, replace=False)]
    engine = sqlite_engine(tmp_path)
    with fleet_broker(tmp_path / "broker") as broker, \
            running_ingest(engine, broker) as ingest:
        publisher = RawPublisher(broker)
        for i in order:  # shuffled: seq order is not delivery order
            publisher.publish(RESULT_TOPIC, encode("result", payloads[i]))
        for payload in repeated:  # re-sent after newer ones, as after a lost PUBACK
            publisher.publish(RESULT_TOPIC, encode("result", payload))
        publisher.close()
        assert ingest.wait_for(lambda s: s.stored + s.duplicates >= 26, 20), ingest.state
        assert ingest.state.stored == 20
        assert ingest.state.duplicates == 6
    ids = _stored_ids(engine)
    assert sorted(ids) == sorted(p["result_id"] for p in payloads)


def test_bad_messages_are_rejected_with_a_reason_and_ingest_keeps_going(tmp_path):
    good = result_payload(seq=1)
    wrong_version = {**result_payload(seq=2), "schema_version": 2}
    a_name = {**result_payload(seq=3), "screening_id": "Jane Doe"}
    other_device = result_payload(device="us-002", seq=4)
    oversized = json.dumps({**result_payload(seq=5), "padding": "x" * 5000}).encode()
    bad = [
        (RESULT_TOPIC, b"{not json", "not JSON"),
        (RESULT_TOPIC, oversized, "byte limit"),
        (RESULT_TOPIC, json.dumps(wrong_version).encode(), "schema_version: must be 1"),
        (RESULT_TOPIC, json.dumps(a_name).encode(), "screening_id"),
        (RESULT_TOPIC, json.dumps(other_device).encode(), "differ from the topic"),
        ("sarco/v1/site-01/result", encode("result", good), "expected sarco/v1/SITE/DEVICE"),
    ]
    engine = sqlite_engine(tmp_path)
    with fleet_broker(tmp_path / "broker") as broker, \
            running_ingest(engine, broker) as ingest:
        publisher = RawPublisher(broker)
        for topic, data, _ in bad:
            publisher.publish(topic, data)
        publisher.publish(RESULT_TOPIC, b"{not json")  # the same bad message again
        publisher.publish(RESULT_TOPIC, encode("result", good))
        publisher.close()
        assert ingest.wait_for(lambda s: s.stored == 1 and s.rejected == len(bad) + 1, 20), \
            ingest.state
    assert _stored_ids(engine) == [good["result_id"]]
    with Session(engine) as session:
        rows = session.scalars(select(RejectedMessage)).all()
    assert len(rows) == len(bad)  # one row per distinct message
    reasons = " | ".join(row.reason for row in rows)
    for _, _, expected in bad:
        assert expected in reasons
    assert "Jane" not in reasons  # a rejected value may be a name: never stored
    assert {row.times_seen for row in rows if "not JSON" in row.reason} == {2}


def test_device_state_follows_retained_status_order_and_last_will(tmp_path):
    now = time.time()
    engine = sqlite_engine(tmp_path)
    with fleet_broker(tmp_path / "broker", devices=("us-001",)) as broker:
        will = encode("status", status_payload("site-01", "us-001", "offline", at=None))
        device = RawPublisher(broker, user="us-001", client_id="edge-us-001",
                              will=(STATUS_TOPIC, will))
        # retained before the dashboard exists: it must still learn the device is online
        device.publish(STATUS_TOPIC, encode("status", status_payload(
            "site-01", "us-001", "online", at=now, queued=3)), retain=True)
        with running_ingest(engine, broker) as ingest:
            def device_row() -> Device | None:
                with Session(engine) as session:
                    return session.get(Device, ("site-01", "us-001"))

            assert ingest.wait_for(lambda s: s.messages >= 1, 15), ingest.state
            assert device_row().state == "online"
            assert device_row().queued_results == 3
            # a late, older status must not overwrite the newer one
            device.publish(STATUS_TOPIC, encode("status", status_payload(
                "site-01", "us-001", "offline", at=now - 60, queued=99)))
            assert ingest.wait_for(lambda s: s.messages >= 2, 15), ingest.state
            assert (device_row().state, device_row().queued_results) == ("online", 3)
            device.vanish()  # power cut: the broker sends the last will
            assert ingest.wait_for(lambda s: s.messages >= 3, 15), ingest.state
            row = device_row()
            assert row.state == "offline"
            # the will knows neither model nor backlog: the last known ones stay
            assert (row.model_name, row.queued_results) == (MODEL["name"], 3)


def test_results_sent_while_the_dashboard_is_down_arrive_when_it_is_back(tmp_path):
    payloads = [result_payload(seq=seq) for seq in range(1, 11)]
    engine = sqlite_engine(tmp_path)
    with fleet_broker(tmp_path / "broker") as broker:
        with running_ingest(engine, broker, worker="w1"):
            pass  # the first connection creates the persistent session
        publisher = RawPublisher(broker)
        for payload in payloads:
            publisher.publish(RESULT_TOPIC, encode("result", payload))
        publisher.close()
        assert _stored_ids(engine) == []
        with running_ingest(engine, broker, worker="w1") as ingest:
            assert ingest.wait_for(lambda s: s.stored >= 10, 20), ingest.state
    assert sorted(_stored_ids(engine)) == sorted(p["result_id"] for p in payloads)


def test_two_shared_subscription_workers_split_the_load_without_double_counting(tmp_path):
    engine = sqlite_engine(tmp_path)
    with fleet_broker(tmp_path / "broker") as broker, \
            running_ingest(engine, broker, worker="w1") as first, \
            running_ingest(engine, broker, worker="w2") as second:
        fleet = plan_fleet(8, seed=3)
        simulator = FleetSimulator(settings_for(broker, "simulator"), fleet, rate=5,
                                   duration_s=3, seed=3, duplicate_share=0.2, live_rate=1)
        report = simulator.run()
        assert report.results == 8 * 5 * 3
        assert report.duplicates > 0

        def done() -> bool:
            return (first.state.stored + second.state.stored
                    + first.state.duplicates + second.state.duplicates
                    >= report.results + report.duplicates)

        assert wait_until(done, 30), (first.state, second.state)
        assert first.state.stored > 0 and second.state.stored > 0  # both did work
        assert first.state.stored + second.state.stored == report.results

        def telemetry_samples() -> int:
            with Session(engine) as session:
                return session.scalar(select(func.count()).select_from(TelemetrySample))

        # every status but the last will carries health; both workers get every status
        assert wait_until(lambda: telemetry_samples() >= report.statuses, 15)
        assert telemetry_samples() == report.statuses
    with Session(engine) as session:
        total = session.scalar(select(func.count()).select_from(Result))
        distinct = session.scalar(select(func.count(func.distinct(Result.result_id))))
        by_worker = dict(session.execute(select(Result.stored_by, func.count())
                                         .group_by(Result.stored_by)).all())
        devices = session.scalar(select(func.count()).select_from(Device))
    assert total == distinct == report.results
    assert by_worker == {"w1": first.state.stored, "w2": second.state.stored}
    assert devices == 8
    with Session(engine) as session:
        health = {d.device: d for d in queries.device_health(session, utc_now())}
    for profile in fleet:  # what each simulated device reported arrived with it
        device = health[profile.device]
        assert device.state == "offline"  # its goodbye
        assert device.telemetry.temp_max_c == pytest.approx(profile.temp_c, abs=5)
        assert (device.update.version, device.update.outcome) == (profile.update_version,
                                                                   profile.update_outcome)


def test_a_retired_worker_hands_over_what_the_broker_kept_for_it(tmp_path):
    engine = sqlite_engine(tmp_path)
    first_wave = [result_payload(seq=seq) for seq in range(1, 21)]
    second_wave = [result_payload(seq=seq) for seq in range(21, 31)]
    with fleet_broker(tmp_path / "broker") as broker, \
            running_ingest(engine, broker, worker="w1") as staying:
        with running_ingest(engine, broker, worker="w2"):
            pass  # w2 stops; its session (and group membership) stays on the broker
        publisher = RawPublisher(broker)
        for payload in first_wave:
            publisher.publish(RESULT_TOPIC, encode("result", payload))
        assert staying.wait_for(lambda s: s.stored >= 1, 10)
        assert len(_stored_ids(engine)) < 20  # part of the wave waits in w2's queue
        leaving = IngestWorker(engine, IngestSettings(settings_for(broker, "dashboard"),
                                                      worker="w2"))
        leaving.start()
        assert leaving.retire(quiet_s=1.0, timeout_s=30)
        assert leaving.state.stored > 0
        assert sorted(_stored_ids(engine)) == sorted(p["result_id"] for p in first_wave)
        for payload in second_wave:  # the group is w1 alone now: nothing strands in w2
            publisher.publish(RESULT_TOPIC, encode("result", payload))
        publisher.close()
        assert staying.wait_for(lambda s: s.stored >= 30 - leaving.state.stored, 15), \
            staying.state
    assert len(_stored_ids(engine)) == 30


def test_ingest_reconnects_by_itself_after_a_broker_crash(tmp_path):
    engine = sqlite_engine(tmp_path)
    before = [result_payload(seq=seq) for seq in range(1, 6)]
    after = [result_payload(seq=seq) for seq in range(6, 16)]
    with fleet_broker(tmp_path / "broker", persistent=True) as broker, \
            running_ingest(engine, broker) as ingest:
        publisher = RawPublisher(broker)
        for payload in before:
            publisher.publish(RESULT_TOPIC, encode("result", payload))
        publisher.close()
        assert ingest.wait_for(lambda s: s.stored >= 5, 15), ingest.state
        broker.kill()  # no goodbye: the worker notices the lost connection
        assert ingest.wait_for(lambda s: not s.connected, 15), ingest.state
        broker.start()
        # back, and subscribed again (Mosquitto 2.0 does not restore a shared subscription
        # from its persistence file: docs/dashboard.md)
        assert ingest.wait_for(lambda s: s.connected, 15), ingest.state
        assert ingest.wait_subscribed(15)
        publisher = RawPublisher(broker)
        for payload in after:
            publisher.publish(RESULT_TOPIC, encode("result", payload))
        publisher.close()
        assert ingest.wait_for(lambda s: s.stored >= 15, 15), ingest.state
    assert sorted(_stored_ids(engine)) == sorted(p["result_id"] for p in before + after)


def _raw(payload: dict) -> bytes:
    """JSON as a hostile sender writes it: no schema check, NaN and huge numbers allowed."""
    return json.dumps(payload).encode()


def test_poison_messages_are_set_aside_and_acknowledged_and_the_stream_goes_on(tmp_path):
    first, last = result_payload(seq=1), result_payload(seq=12)
    other_content = {**first, "probability": 0.3, "score_logit": -0.847}
    poison = [  # (bytes, a word of the reason); each once stopped all ingest or was stored
        (_raw({**result_payload(seq=2), "ended_at": "2026-13-45T25:61:61.000Z"}), "ended_at"),
        (_raw({**result_payload(seq=3), "ended_at": "２０２６-01-31T09:30:00.000Z"}),
         "ended_at"),
        (_raw(result_payload(seq=4) | {"usable_frames": 10**30}), "usable_frames"),
        (_raw(result_payload(seq=5) | {"probability": 10**400}), "probability"),
        (_raw(result_payload(seq=6)).replace(b'"logit_sd": 0.4', b'"logit_sd": Infinity'),
         "NaN or Infinity"),
        (_raw(result_payload(seq=7, ended_at=time.time() + 86400 * 365 * 70)),
         "ahead of the receiver's clock"),
        (_raw(result_payload(seq=8) | {"started_at": schema.utc_timestamp(time.time() + 5)}),
         "before started_at"),
        (_raw(result_payload(seq=9) | {"usable_frames": 101}), "more than processed_frames"),
        (_raw(result_payload(seq=10) | {"screening_id": "SCR-0010\n"}), "screening_id"),
        (_raw(other_content), "duplicate id, different content"),
    ]
    engine = sqlite_engine(tmp_path)
    with fleet_broker(tmp_path / "broker") as broker:
        with running_ingest(engine, broker) as ingest:
            publisher = RawPublisher(broker)
            publisher.publish(RESULT_TOPIC, encode("result", first))
            for data, _ in poison:
                publisher.publish(RESULT_TOPIC, data)
            # the same result again, its id spelled otherwise: a duplicate, not a new result
            publisher.publish(RESULT_TOPIC, _raw({**first, "result_id": "urn:uuid:"
                                                  + first["result_id"].upper()}))
            publisher.publish(RESULT_TOPIC, encode("result", last))
            publisher.close()
            assert ingest.wait_for(lambda s: s.stored == 2 and s.duplicates == 1
                                   and s.rejected == len(poison), 20), ingest.state
        # all acknowledged: a restarted worker gets nothing again
        with running_ingest(engine, broker) as again:
            assert not again.wait_for(lambda s: s.messages > 0, 3), again.state
    assert sorted(_stored_ids(engine)) == sorted([first["result_id"], last["result_id"]])
    with Session(engine) as session:
        rows = session.scalars(select(RejectedMessage)).all()
        stored_first = session.scalar(select(Result).where(
            Result.result_id == first["result_id"]))
    assert stored_first.probability == first["probability"]  # the later content is set aside
    reasons = [row.reason for row in rows]
    for _, words in poison:
        assert any(words in reason for reason in reasons), (words, reasons)
    kept = {row.reason.split(":")[0]: row.payload for row in rows if row.payload is not None}
    # kept only where the payload broke no schema rule: a wrong clock, a reused id
    assert set(kept) == {"result.started_at", "duplicate id, different content"}
    assert json.loads(kept["duplicate id, different content"]) == other_content


def test_after_a_broker_restart_the_worker_is_back_within_seconds_and_subscribed(tmp_path):
    """Mosquitto restores a persistent session without its shared subscription: results
    reach a worker only once it has subscribed again. It retries every 5 s at most, not on
    the devices' backoff (doubling to 30 s), which would leave the fleet without a
    subscriber for up to half a minute."""
    engine = sqlite_engine(tmp_path)
    after = [result_payload(seq=seq) for seq in range(1, 11)]
    with fleet_broker(tmp_path / "broker", persistent=True) as broker:
        settings = BrokerSettings.from_url(broker.url, username=DASHBOARD_USER,
                                           password=PASSWORD)  # the devices' backoff
        worker = IngestWorker(engine, IngestSettings(settings, worker="w1"))
        worker.start()
        try:
            assert worker.wait_subscribed(15), worker.state
            broker.stop()  # SIGTERM: the broker saves its sessions and exits
            assert worker.wait_for(lambda s: not s.connected, 15), worker.state
            time.sleep(16)  # long enough for a doubling backoff to reach 16 s
            broker.start()
            back_at = time.monotonic()
            assert worker.wait_subscribed(15), worker.state
            assert time.monotonic() - back_at < 7
            publisher = RawPublisher(broker)
            for payload in after:
                publisher.publish(RESULT_TOPIC, encode("result", payload))
            publisher.close()
            assert worker.wait_for(lambda s: s.stored >= 10, 15), worker.state
        finally:
            worker.stop()
    assert sorted(_stored_ids(engine)) == sorted(p["result_id"] for p in after)
