"""The same storage on a real PostgreSQL (started here with initdb/pg_ctl): migrations,
concurrent idempotent writes from two workers, the page's queries, the measurements and their
per-site figures, and the ingest end to end.
Skipped, with the reason, only where PostgreSQL cannot start."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from dashboard import local_days, measure_stats, queries, throttle, trends
from dashboard.db import make_engine, migrate, utc_now
from dashboard.models import (
    Base,
    Device,
    LoginThrottle,
    Result,
    ResultCount,
    TelemetrySample,
)
from dashboard.store import Batch, FleetStore, Received
from sarco_core.wire import schema
from testkit.mosquitto import requires_mosquitto
from tests.support.dashboard import (
    RawPublisher,
    encode,
    fleet_broker,
    health_figures,
    live_payload,
    result_payload,
    running_ingest,
    running_totals_match_the_results,
    screened_by_day,
    status_payload,
    store_results,
    update_outcome,
)
from tests.support.postgres import postgres_or_skip
from tests.support.wire import measurements_entry


@pytest.fixture(scope="module")
def engine():
    server = postgres_or_skip()
    engine = make_engine(server.url)
    migrate(engine)
    yield engine
    engine.dispose()
    server.stop()


@pytest.fixture(autouse=True)
def empty_tables(engine):
    yield
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE results, result_counts, devices, rejected_messages, "
                                "follow_ups, telemetry_samples CASCADE"))


def test_migrations_on_postgresql_build_exactly_the_models(engine):
    assert engine.dialect.name == "postgresql"
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_two_workers_writing_overlapping_batches_at_once_count_each_result_once(engine):
    payloads = [result_payload(seq=seq) for seq in range(1, 201)]
    # each worker gets 150 results; 100 of them reach both (redeliveries)
    shares = {"w1": payloads[:150], "w2": payloads[50:]}
    outcomes: dict[str, list] = {"w1": [], "w2": []}
    start = threading.Barrier(2)

    def work(worker: str) -> None:
        store = FleetStore(engine, worker)
        start.wait()
        for chunk in range(0, 150, 25):
            batch = Batch(results=[Received(p, utc_now())
                                   for p in shares[worker][chunk:chunk + 25]])
            outcomes[worker].append(store.write(batch, utc_now()))

    threads = [threading.Thread(target=work, args=(name,)) for name in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stored = sum(o.stored for results in outcomes.values() for o in results)
    duplicates = sum(o.duplicates for results in outcomes.values() for o in results)
    with Session(engine) as session:
        total = session.scalar(select(func.count()).select_from(Result))
        distinct = session.scalar(select(func.count(func.distinct(Result.result_id))))
    assert total == distinct == stored == 200
    assert duplicates == 100
    with Session(engine) as session:
        assert running_totals_match_the_results(session)


def test_a_days_frame_totals_beyond_32_bits_are_counted_on_postgresql(engine):
    """Sessions of the largest size the schema allows: a 32-bit day total overflowed after
    215 of them and PostgreSQL refused every later result of that device and day."""
    most = schema.MAX_SESSION_FRAMES
    payloads = [result_payload(seq=seq, processed_frames=most,
                               skipped={"no_tissue": most - 80, "frozen": 0, "transition": 0,
                                        "no_region": 0}) for seq in range(1, 221)]
    outcome = FleetStore(engine, "w1").write(
        Batch(results=[Received(p, utc_now()) for p in payloads]), utc_now())
    assert (outcome.stored, outcome.rejected) == (220, 0)
    with Session(engine) as session:
        assert running_totals_match_the_results(session)
        assert session.scalar(select(func.sum(ResultCount.processed_frames))) == 220 * most


def test_page_queries_run_on_postgresql(engine):
    now = time.time()
    store = FleetStore(engine, "w1")
    positive = result_payload(seq=1, decision="sarcopenia", probability=0.9, score_logit=2.2)
    store.write(Batch(
        results=[Received(p, utc_now()) for p in (positive, result_payload(seq=2))],
        statuses=[Received(status_payload("site-01", "us-001", "online", at=now,
                                          health=health_figures(temp_max_c=91.0),
                                          update=update_outcome("rolled_back")), utc_now()),
                  Received(status_payload("site-01", "us-001", "offline", at=None),
                           utc_now())],
        live=[Received(live_payload("site-01", "us-001", fps=4.0, at=now), utc_now()),
              Received(live_payload("site-01", "us-002", fps=25.0, at=now), utc_now())]),
        utc_now())
    with Session(engine) as session:
        summary = queries.summary(session, utc_now().date())
        chosen = queries.Filters.last_days(utc_now().date())
        assert (summary.results_total, summary.devices_online, summary.devices_total) == \
            (2, 0, 2)
        daily = queries.daily_counts(session, chosen)
        assert [(d.screened, d.positive) for d in daily] == [(2, 1)]
        assert [r.result_id for r in queries.referrals(session, chosen)] == \
            [positive["result_id"]]
        health = {d.device: d for d in queries.device_health(session, utc_now())}
        # offline: its last readings say nothing about now, a failed update still holds
        assert health["us-001"].issues == ["offline", "update 2025.06-1 rolled back"]
        assert health["us-001"].telemetry.ram_total_mb == health_figures()["ram_total_mb"]
        assert (health["us-002"].state, health["us-002"].fps) == ("unknown", 25.0)
        assert queries.model_versions(session, chosen)[0].results_in_range == 2
        assert len(list(queries.iter_results(session, chosen))) == 2


def test_measurements_are_stored_and_summed_up_per_site_on_postgresql(engine):
    """Migration 0008's columns take the schema's bounds (a double, 20 000 px) on
    PostgreSQL, and a site's distribution reads them in the viewer's days."""
    bounds = {**schema.MEASUREMENT_BOUNDS, "pennation_deg": 17.25}
    widest = measurements_entry(**bounds, frames_measured=80,
                                spread=dict(schema.MEASUREMENT_BOUNDS))
    payloads = [result_payload(seq=1, measurements=widest), result_payload(seq=2),
                result_payload(seq=3, measurements=measurements_entry(frames_measured=7))]
    outcome = FleetStore(engine, "w1").write(
        Batch(results=[Received(p, utc_now()) for p in payloads]), utc_now())
    assert (outcome.stored, outcome.rejected) == (3, 0)
    with Session(engine) as session:
        zone = local_days.parse_zone("Asia/Kathmandu")
        found = measure_stats.site_measurements(session, queries.Filters.last_days(
            local_days.local_today(zone, utc_now()), "site-01", zone=zone))
        stored = session.scalars(select(Result.muscle_thickness_px)
                                 .where(Result.result_id == payloads[0]["result_id"])).one()
    assert stored == schema.MEASUREMENT_BOUNDS["muscle_thickness_px"]
    assert (found.screened, found.with_measurements) == (3, 2)
    pennation = next(s for s in found.summaries if s.quantity == "pennation_deg")
    assert (pennation.n, pennation.median) == (2, (17.25 + 17.2) / 2)


def test_trends_count_local_days_on_postgresql(engine):
    store_results(engine, ("2025-03-08T20:00:00", "no_sarcopenia"),
                  ("2025-03-09T04:59:00", "sarcopenia"),
                  ("2025-03-10T04:30:00", "no_sarcopenia"))
    first, last = date(2025, 3, 8), date(2025, 3, 10)
    with Session(engine) as session:
        # +5:30, and Chicago's spring-forward day (-6:00 until 08:00 UTC on the 9th)
        assert screened_by_day(session, "Asia/Kolkata", first, last) == {
            date(2025, 3, 8): 0, date(2025, 3, 9): 2, date(2025, 3, 10): 1}
        assert screened_by_day(session, "America/Chicago", first, last) == {
            date(2025, 3, 8): 2, date(2025, 3, 9): 1, date(2025, 3, 10): 0}
        found = trends.trends(session, local_days.parse_zone("UTC"), first, last)
        assert [day.referrals_open for day in found.sites[0].days] == [0, 1, 1]


@requires_mosquitto
def test_ingest_into_postgresql_stores_duplicates_once(engine, tmp_path):
    payloads = [result_payload(seq=seq) for seq in range(1, 11)]
    topic = schema.topic_for("site-01", "us-001", "result")
    with fleet_broker(tmp_path / "broker") as broker, \
            running_ingest(engine, broker) as ingest:
        publisher = RawPublisher(broker)
        for payload in payloads + payloads[:4]:
            publisher.publish(topic, encode("result", payload))
        publisher.close()
        assert ingest.wait_for(lambda s: s.stored + s.duplicates >= 14, 20), ingest.state
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Result)) == 10
        assert session.get(Device, ("site-01", "us-001")) is not None


def test_the_telemetry_history_is_pruned_on_postgresql(engine):
    store = FleetStore(engine, "w1", telemetry_history=timedelta(hours=1))
    now, epoch = utc_now(), time.time()
    store.write(Batch(statuses=[
        Received(status_payload("site-01", "us-001", "online", at=epoch - age,
                                health=health_figures()), received_at)
        for age, received_at in ((7300, now - timedelta(hours=2)),
                                 (7200, now - timedelta(hours=2)), (10, now))]), now)
    with Session(engine) as session:
        kept = session.scalars(select(TelemetrySample.at)).all()
        device = session.get(Device, ("site-01", "us-001"))
    assert kept == [device.telemetry_at]  # the old ones gone, the newest kept


def test_failed_logins_from_parallel_requests_each_count_on_postgresql(engine):
    """The throttle's upsert is atomic: failures recorded at once by many sessions (as by
    several dashboard processes) are all counted, and the limit locks."""
    now = utc_now()
    attempts = 3 * throttle.ACCOUNT.limit
    locks = []

    def fail_once() -> None:
        with Session(engine) as session:
            locks.append(throttle.record_failure(session, throttle.ACCOUNT, "guessed", now))
            session.commit()

    threads = [threading.Thread(target=fail_once) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with Session(engine) as session:
        row = session.get(LoginThrottle, ("account", "guessed"))
        assert row.failures == attempts
        assert row.locked_until == now + throttle.LONGEST_LOCK
        assert sum(lock is not None for lock in locks) == attempts - throttle.ACCOUNT.limit + 1
        assert throttle.forget(session, throttle.ACCOUNT, "guessed")
        session.commit()
