"""Trends in the viewer's time zone, on SQLite (test_dashboard_postgres.py runs the same
grouping on PostgreSQL): a session's day is its local day, across daylight-saving changes
and in half-hour zones, and open referrals are the backlog at each day's end."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy.orm import Session

from dashboard import local_days, referrals, trends
from tests.support.dashboard import screened_by_day, sqlite_engine, store_results


def test_a_session_counts_on_its_local_day_in_any_zone(tmp_path):
    engine = sqlite_engine(tmp_path)
    store_results(engine, ("2025-03-08T20:00:00", "no_sarcopenia"),
                  ("2025-03-09T03:30:00", "sarcopenia"))
    first, last = date(2025, 3, 7), date(2025, 3, 10)
    with Session(engine) as session:
        assert screened_by_day(session, "UTC", first, last) == {
            date(2025, 3, 7): 0, date(2025, 3, 8): 1, date(2025, 3, 9): 1, date(2025, 3, 10): 0}
        # +5:30: 20:00 UTC is 01:30 the next morning
        assert screened_by_day(session, "Asia/Kolkata", first, last) == {
            date(2025, 3, 7): 0, date(2025, 3, 8): 0, date(2025, 3, 9): 2, date(2025, 3, 10): 0}
        # Chicago: -6:00 until 08:00 UTC on 9 March, -5:00 after; 03:30 UTC is still the 8th
        assert screened_by_day(session, "America/Chicago", first, last) == {
            date(2025, 3, 7): 0, date(2025, 3, 8): 2, date(2025, 3, 9): 0, date(2025, 3, 10): 0}


def test_the_offset_changes_at_the_minute_the_clocks_do():
    chicago = local_days.parse_zone("America/Chicago")
    assert local_days.offset_changes(chicago, datetime(2025, 3, 1), datetime(2025, 12, 1)) == [
        (datetime(2025, 3, 1), -360), (datetime(2025, 3, 9, 8), -300),
        (datetime(2025, 11, 2, 7), -360)]
    # Lord Howe Island moves its clocks by half an hour
    lord_howe = local_days.parse_zone("Australia/Lord_Howe")
    assert [offset for _, offset in local_days.offset_changes(
        lord_howe, datetime(2025, 3, 1), datetime(2025, 12, 1))] == [660, 630, 660]


def test_sessions_on_the_day_clocks_change_land_on_the_right_side(tmp_path):
    engine = sqlite_engine(tmp_path)
    # Chicago springs forward at 08:00 UTC on 9 March: 04:59 UTC is 22:59 on the 8th (-6),
    # 05:30 UTC on the 10th is 00:30 on the 10th (-5), 04:30 UTC on the 10th is the 9th
    store_results(engine, ("2025-03-09T04:59:00", "no_sarcopenia"),
                  ("2025-03-10T04:30:00", "no_sarcopenia"),
                  ("2025-03-10T05:30:00", "no_sarcopenia"))
    with Session(engine) as session:
        assert screened_by_day(session, "America/Chicago", date(2025, 3, 8),
                               date(2025, 3, 10)) == {
            date(2025, 3, 8): 1, date(2025, 3, 9): 1, date(2025, 3, 10): 1}


def test_referrals_open_is_the_backlog_at_each_days_end(tmp_path):
    engine = sqlite_engine(tmp_path)
    payloads = store_results(engine, ("2025-03-01T10:00:00", "sarcopenia"),
                             ("2025-03-03T10:00:00", "sarcopenia"),
                             ("2025-03-03T11:00:00", "sarcopenia"),
                             ("2025-03-03T12:00:00", "rescan"))
    with Session(engine) as session:
        referrals.mark_referred(session, payloads[0]["result_id"], "nurse",
                                datetime(2025, 3, 4, 9))
        referrals.mark_referred(session, payloads[1]["result_id"], "nurse",
                                datetime(2025, 3, 5, 9))
        referrals.undo_referred(session, payloads[1]["result_id"], "nurse",
                                datetime(2025, 3, 5, 10))  # a mistake: as if never marked
        session.commit()
        found = trends.trends(session, local_days.UTC, date(2025, 3, 2), date(2025, 3, 5))
    days = found.sites[0].days
    # one open from before the range, two more on the 3rd, one marked on the 4th
    assert [day.referrals_open for day in days] == [1, 3, 2, 2]
    assert [(day.positive, day.rescans, day.positive_rate) for day in days][1] == (2, 1, 1.0)
    assert days[0].positive_rate is None  # nobody screened


def test_unknown_zones_and_oversized_ranges_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        local_days.parse_zone("Mars/Olympus")
    assert local_days.parse_zone(None) is local_days.UTC
    engine = sqlite_engine(tmp_path)
    with Session(engine) as session, pytest.raises(ValueError, match="at most 366 days"):
        trends.trends(session, local_days.UTC, date(2024, 1, 1), date(2025, 1, 1))
