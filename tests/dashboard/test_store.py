"""Storage and the read side on SQLite, without a broker: migrations equal the models,
writes are idempotent, status ordering rules, and the counts the page shows."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from dashboard import queries
from dashboard import referrals as referral_workflow
from dashboard.db import (
    DatabaseError,
    current_revision,
    head_revision,
    make_engine,
    migrate,
    require_current,
    utc_now,
)
from dashboard.models import Base, Device, DeviceStateChange, Result, TelemetrySample
from dashboard.store import _DECISION_COLUMNS, Batch, FleetStore, Received, parse_time
from sarco_core.wire import schema
from tests.support.dashboard import (
    health_figures,
    live_payload,
    result_payload,
    running_totals_match_the_results,
    sqlite_engine,
    status_payload,
    update_outcome,
)


def _received(payload: dict) -> Received:
    return Received(payload, utc_now())


def _live(site: str, device: str, fps: float, at: float) -> Received:
    return _received(live_payload(site, device, fps, at))


def test_the_migrations_build_exactly_the_models(tmp_path):
    engine = sqlite_engine(tmp_path)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert current_revision(engine) == head_revision()


def test_upgrading_from_the_first_schema_keeps_the_devices(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    assert migrate(engine, "0001") == "0001"
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO devices (site, device, state, queued_results, "
                                "last_seen_at) VALUES ('site-01', 'us-001', 'online', 4, "
                                "'2025-01-31 09:30:00.000000')"))
    assert migrate(engine) == head_revision()
    with Session(engine) as session:
        [device] = queries.device_health(session, utc_now())
    assert (device.device, device.state, device.queued_results) == ("us-001", "online", 4)
    assert device.telemetry is None and device.update is None


def test_an_unmigrated_database_is_refused_with_the_fix(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(DatabaseError, match="sarco-dashboard migrate"):
        require_current(engine)


def test_writing_the_same_results_again_stores_nothing_new(tmp_path):
    engine = sqlite_engine(tmp_path)
    store = FleetStore(engine, "w1")
    payloads = [result_payload(seq=seq) for seq in range(1, 6)]
    batch = Batch(results=[_received(p) for p in payloads + payloads[:2]])
    first = store.write(batch, utc_now())
    again = store.write(batch, utc_now())
    assert (first.stored, first.duplicates) == (5, 2)  # two repeats inside the batch
    assert (again.stored, again.duplicates) == (0, 7)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Result)) == 5


def test_status_updates_apply_in_device_time_order(tmp_path):
    engine = sqlite_engine(tmp_path)
    store = FleetStore(engine, "w1")
    now = time.time()

    def apply(payload: dict) -> Device:
        store.write(Batch(statuses=[_received(payload)]), utc_now())
        with Session(engine) as session:
            return session.get(Device, ("site-01", "us-001"))

    first = apply(status_payload("site-01", "us-001", "online", at=now - 10, queued=1))
    assert first.state == "online"
    newer = apply(status_payload("site-01", "us-001", "online", at=now, queued=5))
    assert newer.queued_results == 5
    assert newer.state_since == first.state_since  # still online since the first
    older = apply(status_payload("site-01", "us-001", "offline", at=now - 5, queued=9))
    assert (older.state, older.queued_results) == ("online", 5)
    will = apply(status_payload("site-01", "us-001", "offline", at=None, model=None))
    assert (will.state, will.queued_results, will.model_name) == ("offline", 5,
                                                                 newer.model_name)
    assert will.status_at == parse_time(schema.utc_timestamp(now))


def test_counts_rates_referrals_and_filters(tmp_path):
    engine = sqlite_engine(tmp_path)
    store = FleetStore(engine, "w1")
    today = datetime.combine(utc_now().date(), datetime.min.time()) + timedelta(hours=12)
    yesterday = today - timedelta(days=1)
    plan = [  # (site, when, decision, how many)
        ("site-a", today, "sarcopenia", 3), ("site-a", today, "no_sarcopenia", 5),
        ("site-a", today, "rescan", 2), ("site-a", yesterday, "sarcopenia", 1),
        ("site-b", today, "no_sarcopenia", 4),
    ]
    payloads = []
    for site, when, decision, count in plan:
        for _ in range(count):
            epoch = (when - datetime(1970, 1, 1)).total_seconds()
            probability = {"sarcopenia": 0.8, "no_sarcopenia": 0.2, "rescan": None}[decision]
            payloads.append(result_payload(
                site=site, seq=len(payloads) + 1, ended_at=epoch, decision=decision,
                probability=probability,
                score_logit=None if probability is None else 0.0,
                uncertainty=None if probability is None else {"logit_sd": 0.1,
                                                              "agreement": 1.0,
                                                              "dirichlet_u": None}))
    store.write(Batch(results=[_received(p) for p in payloads]), utc_now())
    with Session(engine) as session:
        daily = {(row.site, row.day): row for row in queries.daily_counts(
            session, queries.Filters.last_days(today.date()))}
        site_a_today = daily[("site-a", today.date())]
        assert (site_a_today.screened, site_a_today.positive, site_a_today.rescans) == (8, 3, 2)
        assert site_a_today.positive_rate == pytest.approx(3 / 8)
        assert daily[("site-a", yesterday.date())].positive == 1
        assert daily[("site-b", today.date())].positive_rate == 0.0

        only_today_a = queries.Filters("site-a", today.date(), today.date())
        referrals = queries.referrals(session, only_today_a)
        assert len(referrals) == 3
        assert {r.site for r in referrals} == {"site-a"}
        assert queries.totals(session, only_today_a).referrals_open == 3
        referral_workflow.mark_referred(session, referrals[0].result_id, "nurse", utc_now())
        with pytest.raises(LookupError):
            referral_workflow.mark_referred(session, "not-a-result", "nurse", utc_now())
        session.commit()
        assert queries.totals(session, only_today_a).referrals_open == 2
        # open referrals come first
        assert queries.referrals(session, only_today_a)[-1].followed_up_by == "nurse"

        summary = queries.summary(session, today.date())
        assert summary.results_total == len(payloads)
        assert {s.site: s.screened_today for s in summary.sites} == {"site-a": 8, "site-b": 4}


def test_health_flags_low_fps_rejected_frames_and_backlog(tmp_path):
    engine = sqlite_engine(tmp_path)
    store = FleetStore(engine, "w1")
    now = time.time()
    rules = queries.HealthRules()
    noisy = result_payload(device="us-002", skipped={"no_tissue": 40, "frozen": 20,
                                                     "transition": 10, "no_region": 0},
                           usable_frames=30, processed_frames=100)
    store.write(Batch(
        results=[_received(result_payload(device="us-001")), _received(noisy)],
        statuses=[_received(status_payload("site-01", device, "online", at=now,
                                           queued=queued))
                  for device, queued in (("us-001", 0), ("us-002", 0),
                                         ("us-003", rules.max_backlog + 1))],
        live=[_live("site-01", "us-001", fps=rules.min_fps - 4, at=now),
              _live("site-01", "us-002", fps=25.0, at=now)]), utc_now())
    with Session(engine) as session:
        health = {d.device: d for d in queries.device_health(session, utc_now(),
                                                              rules=rules)}
    assert health["us-001"].issues == [f"low fps ({rules.min_fps - 4:.1f})"]
    assert health["us-001"].rejected_share == pytest.approx(0.2)
    assert health["us-002"].issues == ["70% frames rejected"]
    assert health["us-003"].issues == [f"backlog of {rules.max_backlog + 1} results"]


def test_running_totals_count_each_stored_result_once(tmp_path):
    engine = sqlite_engine(tmp_path)
    store = FleetStore(engine, "w1")
    rng = np.random.default_rng(3)
    payloads = [result_payload(site=f"site-{rng.integers(1, 4)}", device=f"us-{i % 5:03d}",
                               seq=i, decision=str(rng.choice(schema.DECISIONS)),
                               ended_at=time.time() - float(rng.uniform(0, 3 * 86400)))
                for i in range(1, 120)]
    for start in range(0, len(payloads), 25):  # overlapping batches: redeliveries
        chunk = payloads[max(start - 10, 0):start + 25]
        store.write(Batch(results=[_received(p) for p in chunk]), utc_now())
    with Session(engine) as session:
        assert running_totals_match_the_results(session)
        assert queries.summary(session, utc_now().date()).results_total == len(payloads)


def test_every_decision_of_the_schema_is_counted():
    assert set(_DECISION_COLUMNS) == set(schema.DECISIONS)


def _device_health(engine, device: str = "us-001") -> queries.DeviceHealth:  # noqa: ANN001
    with Session(engine) as session:
        return {d.device: d for d in queries.device_health(session, utc_now())}[device]


def _samples(engine) -> list[tuple[str, datetime]]:  # noqa: ANN001
    with Session(engine) as session:
        return [(s.device, s.at) for s in session.scalars(
            select(TelemetrySample).order_by(TelemetrySample.device, TelemetrySample.at))]


def test_health_and_update_follow_the_newest_status_and_each_sample_is_kept_once(tmp_path):
    engine = sqlite_engine(tmp_path)
    store = FleetStore(engine, "w1")
    now = time.time()
    older = status_payload("site-01", "us-001", "online", at=now - 60,
                           health=health_figures(temp_max_c=50.0),
                           update=update_outcome("installed", version="2025.06-1"))
    newer = status_payload("site-01", "us-001", "online", at=now,
                           health=health_figures(temp_max_c=70.0),
                           update=update_outcome("rolled_back", version="2025.07-1"))

    def apply(*payloads: dict) -> queries.DeviceHealth:
        store.write(Batch(statuses=[_received(p) for p in payloads]), utc_now())
        return _device_health(engine)

    # the newer first, a late older one, and the newer again (retained, or a second worker)
    device = apply(newer, older, newer)
    assert device.telemetry.temp_max_c == 70.0
    assert device.telemetry.at == parse_time(newer["at"])
    assert (device.update.version, device.update.outcome) == ("2025.07-1", "rolled_back")
    assert _samples(engine) == [("us-001", parse_time(older["at"])),
                                ("us-001", parse_time(newer["at"]))]
    # an app without telemetry, then the last will: both keep what is known
    device = apply(status_payload("site-01", "us-001", "online", at=now + 1))
    assert (device.telemetry.temp_max_c, device.update.outcome) == (70.0, "rolled_back")
    will = status_payload("site-01", "us-001", "offline", at=None, model=None, health=None,
                          update=update_outcome("failed", version="2025.05-9"))
    device = apply(will)
    assert device.state == "offline"
    assert (device.telemetry.temp_max_c, device.update.version) == (70.0, "2025.07-1")
    assert len(_samples(engine)) == 2


def test_health_flags_hot_devices_failed_updates_and_ignores_stale_telemetry(tmp_path):
    engine = sqlite_engine(tmp_path)
    rules = queries.HealthRules()
    now = time.time()
    hot, slow = rules.max_temp_c + 3, rules.min_fps - 3
    stale = now - rules.live_stale_s - 60
    statuses = {  # device: (status time, health, update)
        "us-001": (now, health_figures(temp_max_c=hot), None),
        "us-002": (stale, health_figures(temp_max_c=hot, fps=slow), None),
        "us-003": (now, health_figures(fps=slow), None),
        "us-004": (now, health_figures(), update_outcome("refused")),
        "us-005": (now - 20, health_figures(fps=25.0), update_outcome("installed")),
    }
    FleetStore(engine, "w1").write(Batch(
        statuses=[_received(status_payload("site-01", device, "online", at=at, health=health,
                                           update=update))
                  for device, (at, health, update) in statuses.items()],
        # a live reading newer than the status: its fps is the one that counts
        live=[_live("site-01", "us-005", fps=slow, at=now)]), utc_now())
    with Session(engine) as session:
        health = {d.device: d for d in queries.device_health(session, utc_now(), rules=rules)}
    assert health["us-001"].issues == [f"hot ({hot:.0f} °C)"]
    assert health["us-002"].issues == []  # old figures say nothing about now
    assert health["us-002"].fps is None and health["us-002"].telemetry.temp_max_c == hot
    assert health["us-003"].issues == [f"low fps ({slow:.1f})"]
    assert health["us-004"].issues == ["update 2025.06-1 refused"]
    assert health["us-005"].issues == [f"low fps ({slow:.1f})"]


def test_the_telemetry_history_forgets_old_samples_but_not_a_devices_newest(tmp_path):
    engine = sqlite_engine(tmp_path)
    store = FleetStore(engine, "w1", telemetry_history=timedelta(hours=1))
    now, epoch = utc_now(), time.time()
    long_ago = now - timedelta(hours=2)

    def sample(device: str, age_s: float, received_at: datetime) -> Received:
        return Received(status_payload("site-01", device, "online", at=epoch - age_s,
                                       health=health_figures()), received_at)

    store.write(Batch(statuses=[
        sample("us-001", 7300, long_ago), sample("us-001", 7200, long_ago),  # offline since
        sample("us-002", 7200, long_ago), sample("us-002", 10, now)]), now)
    with Session(engine) as session:
        ages = sorted((s.device, round(epoch - (s.at - datetime(1970, 1, 1)).total_seconds()))
                      for s in session.scalars(select(TelemetrySample)))
    assert ages == [("us-001", 7200), ("us-002", 10)]


def _state_changes(engine) -> list[tuple[str, datetime, bool]]:  # noqa: ANN001
    with Session(engine) as session:
        return [(c.state, c.at, c.connection_lost) for c in session.scalars(
            select(DeviceStateChange).order_by(DeviceStateChange.at, DeviceStateChange.id))]


def test_online_and_offline_changes_are_recorded_once_whoever_stores_them(tmp_path):
    """A device switched off cleanly 13:14-13:17 is offline then, not "online 13:00-13:17":
    the history records the state changes its statuses make (not every status), by the
    statement's own ordering rule, once even when two workers store the same statuses."""
    engine = sqlite_engine(tmp_path)
    first, second = FleetStore(engine, "w1"), FleetStore(engine, "w2")
    t0 = float(int(time.time()) - 3600)
    received = utc_now() - timedelta(minutes=10)

    def status(state: str, minute: float | None) -> Received:
        at = None if minute is None else t0 + minute * 60
        return Received(status_payload("site-01", "us-001", state, at,
                                       **({"health": health_figures()} if at else {})),
                        received)

    statuses = [status("online", 0), status("online", 0.5), status("online", 13.5),
                status("offline", 14),  # a goodbye: the app was switched off
                status("online", 17), status("online", 17.5),
                status("online", 5),  # late and older than the stored state: no change
                status("offline", None)]  # the last will: the connection was lost
    first.write(Batch(statuses=statuses[:4]), utc_now())
    second.write(Batch(statuses=statuses[:4]), utc_now())  # the same, at a second worker
    first.write(Batch(statuses=statuses[4:]), utc_now())
    second.write(Batch(statuses=statuses[4:]), utc_now())

    def moment(minute: float) -> datetime:
        return parse_time(schema.utc_timestamp(t0 + minute * 60))

    assert _state_changes(engine) == [("online", moment(0), False),
                                      ("offline", moment(14), False),
                                      ("online", moment(17), False),
                                      ("offline", received, True)]
    # a device known from its results only ("unknown") coming online is a change too
    first.write(Batch(results=[_received(result_payload(device="us-002"))]), utc_now())
    first.write(Batch(statuses=[_received(status_payload("site-01", "us-002", "online",
                                                         at=t0))]), utc_now())
    assert [(c[0], c[1]) for c in _state_changes(engine) if c[1] == moment(0)] == [
        ("online", moment(0)), ("online", moment(0))]


def test_old_state_changes_are_pruned_but_not_the_state_the_history_starts_in(tmp_path):
    engine = sqlite_engine(tmp_path)
    store = FleetStore(engine, "w1", telemetry_history=timedelta(hours=1))
    epoch = float(int(time.time()))
    store.write(Batch(statuses=[_received(status_payload("site-01", "us-001", state, at))
                                for state, at in (("online", epoch - 9000),
                                                  ("offline", epoch - 8000),
                                                  ("online", epoch - 7000),
                                                  ("offline", epoch - 60))]), utc_now())
    store.prune_telemetry(utc_now())
    assert [(state, round(epoch - (at - datetime(1970, 1, 1)).total_seconds()))
            for state, at, _ in _state_changes(engine)] == [("online", 7000), ("offline", 60)]
