"""The staff workflow below the pages, on SQLite: the referral worklist (search, paging,
overdue, mark/undo, outcome, notes and their history), device commands (what is refused and
recorded), and account management (last admin kept, a reset ends sessions)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard import auth, commands, referrals
from dashboard.db import utc_now
from dashboard.models import DeviceCommand, WebSession
from dashboard.store import Batch, FleetStore, Received
from sarco_core.wire import schema
from sarco_core.wire.broker import BrokerSettings
from testkit.mosquitto import free_port
from tests.support.dashboard import result_payload, sqlite_engine, status_payload


@pytest.fixture
def engine(tmp_path):
    return sqlite_engine(tmp_path)


def store(engine, results=(), statuses=()) -> None:  # noqa: ANN001
    FleetStore(engine, "w1").write(Batch(results=[Received(p, utc_now()) for p in results],
                                         statuses=[Received(p, utc_now()) for p in statuses]),
                                   utc_now())


def positives(count: int, days_old: float = 0, prefix: str = "SCR-A") -> list[dict]:
    return [result_payload(seq=n, screening_id=f"{prefix}{n:03d}", decision="sarcopenia",
                           probability=0.8, score_logit=1.4,
                           ended_at=time.time() - days_old * 86400 - n)
            for n in range(1, count + 1)]


def test_referrals_are_found_by_part_of_their_id_and_paged(engine):
    store(engine, positives(30) + positives(2, prefix="SCR_B"))
    now = utc_now()
    with Session(engine) as session:
        first = referrals.search(session, referrals.ReferralSearch(), now)
        assert (first.total, first.pages, len(first.referrals)) == (32, 2, referrals.PER_PAGE)
        second = referrals.search(session, referrals.ReferralSearch(page=2), now)
        assert len(second.referrals) == 32 - referrals.PER_PAGE
        seen = {r.screening_id for r in first.referrals + second.referrals}
        assert len(seen) == 32
        # case does not matter; "_" is a character of the id, not a wildcard
        assert [r.screening_id for r in referrals.search(
            session, referrals.ReferralSearch(screening_id="a007"), now).referrals] == \
            ["SCR-A007"]
        assert {r.screening_id for r in referrals.search(
            session, referrals.ReferralSearch(screening_id="r_b"), now).referrals} == \
            {"SCR_B001", "SCR_B002"}
        beyond = referrals.search(session, referrals.ReferralSearch(page=99), now)
        assert beyond.page == 2


def test_mark_undo_outcome_and_notes_are_kept_in_order(engine):
    old, new = positives(1, days_old=10), positives(1, prefix="SCR-N")
    store(engine, old + new)
    late, recent = old[0]["result_id"], new[0]["result_id"]
    now = utc_now()
    with Session(engine) as session:
        overdue = referrals.search(session, referrals.ReferralSearch(state="overdue"), now)
        assert [r.result_id for r in overdue.referrals] == [late]
        assert overdue.referrals[0].overdue
        with pytest.raises(referrals.ReferralError, match="before recording its outcome"):
            referrals.record_outcome(session, late, "confirmed", "nurse", now)
        referrals.mark_referred(session, late, "nurse", now)
        referrals.record_outcome(session, late, "confirmed", "nurse", now)
        referrals.add_note(session, late, "  called twice,\n booked  ", "nurse", now)
        referrals.undo_referred(session, late, "lead", now)
        with pytest.raises(referrals.ReferralError, match="not marked referred"):
            referrals.undo_referred(session, late, "lead", now)
        referrals.mark_referred(session, late, "nurse", now)
        with pytest.raises(referrals.ReferralError, match="outcome 'cured'"):
            referrals.record_outcome(session, late, "cured", "nurse", now)
        with pytest.raises(referrals.ReferralError, match="at most 500"):
            referrals.add_note(session, late, "x" * 501, "nurse", now)
        with pytest.raises(referrals.ReferralError, match="empty"):
            referrals.add_note(session, late, " \n ", "nurse", now)
        with pytest.raises(LookupError):
            referrals.add_note(session, "no-such-result", "hello", "nurse", now)
        session.commit()
        events = referrals.history(session, [late, recent])
        assert [(e.kind, e.text, e.by_user) for e in events[late]] == [
            ("referred", None, "nurse"), ("outcome", "confirmed", "nurse"),
            ("note", "called twice, booked", "nurse"), ("undone", None, "lead"),
            ("referred", None, "nurse")]
        assert recent not in events
        referred = referrals.search(session, referrals.ReferralSearch(state="referred"), now)
        assert [(r.result_id, r.outcome, r.overdue) for r in referred.referrals] == [
            (late, None, False)]  # the undo took the outcome with it


def test_commands_that_cannot_reach_a_device_are_refused_and_recorded(engine):
    now = time.time()
    store(engine, statuses=[status_payload("site-01", "us-001", "online", at=now),
                            status_payload("site-01", "us-002", "online", at=now),
                            status_payload("site-01", "us-002", "offline", at=None)])
    nowhere = commands.CommandPublisher(BrokerSettings("127.0.0.1", free_port()),
                                        timeout_s=2)
    start = commands.Command("start_session", screening_id="SCR-0042")
    with Session(engine) as session:
        offline = commands.send(session, nowhere, "site-01", "us-002", start, "nurse",
                                utc_now())
        assert not offline.accepted and "the device is offline" in offline.detail
        unreachable = commands.send(session, nowhere, "site-01", "us-001", start, "nurse",
                                    utc_now())
        assert not unreachable.accepted and "unreachable" in unreachable.detail
        no_broker = commands.send(session, None, "site-01", "us-001", start, "nurse",
                                  utc_now())
        assert "no broker connection" in no_broker.detail
        with pytest.raises(schema.PayloadError, match="never a name"):
            commands.send(session, nowhere, "site-01", "us-001",
                          commands.Command("start_session", screening_id="John Smith"),
                          "nurse", utc_now())
        with pytest.raises(schema.PayloadError, match="cmd.url"):
            commands.send(session, nowhere, "site-01", "us-001",
                          commands.Command("update_model", url="ftp://x"), "nurse", utc_now())
        with pytest.raises(LookupError):
            commands.send(session, nowhere, "site-01", "us-999", start, "nurse", utc_now())
        session.commit()
        assert session.scalar(select(func.count()).select_from(DeviceCommand)) == 3
        history = commands.recent(session, "site-01", "us-001")
        assert [(c.command, c.screening_id, c.by_user) for c in history] == [
            ("start_session", "SCR-0042", "nurse")] * 2


def test_the_last_admin_stays_and_a_reset_ends_the_sessions(engine):
    with Session(engine) as session:
        boss = auth.add_user(session, "boss", "admin", "a long password")
        auth.add_user(session, "nurse", "staff", "a long password")
        auth.open_session(session, boss)
        session.commit()
        with pytest.raises(auth.AuthError, match="last admin"):
            auth.remove_user(session, "boss")
        with pytest.raises(auth.AuthError, match="at least 10"):
            auth.reset_password(session, "boss", "short")
        auth.reset_password(session, "boss", "another long one")
        session.commit()
        assert session.scalar(select(func.count()).select_from(WebSession)) == 0
        assert auth.authenticate(session, "boss", "another long one") is not None
        auth.remove_user(session, "nurse")
        with pytest.raises(auth.AuthError, match="no user named 'nurse'"):
            auth.remove_user(session, "nurse")
        session.commit()
        assert [u.name for u in auth.list_users(session)] == ["boss"]
        auth.create_api_key(session, "old")
        auth.create_api_key(session, "registry")
        auth.revoke_api_key(session, "old")
        session.commit()
        assert [(k.name, k.revoked_at is None) for k in auth.list_api_keys(session)] == [
            ("registry", True), ("old", False)]


def test_overdue_starts_a_week_after_the_screen(engine):  # queries.REFERRAL_DUE
    store(engine, positives(1, days_old=6.9) + positives(1, days_old=7.1, prefix="SCR-L"))
    with Session(engine) as session:
        found = referrals.search(session, referrals.ReferralSearch(state="all"), utc_now())
    assert {r.screening_id: r.overdue for r in found.referrals} == {
        "SCR-A001": False, "SCR-L001": True}
