"""Days in the viewer's time zone, counted in SQL: what the trends, site and fleet pages
share (docs/dashboard.md, "Trends and time zones").

Times are stored as naive UTC. A clinic's day in Jakarta or Chicago is not a UTC day, so the
results are grouped by the *local* date of ``ended_at``: the UTC time shifted by the zone's
offset. The offset changes at daylight-saving transitions; they are found with ``zoneinfo``
for the range and written into the query as a CASE on the time, so one grouped query serves
any zone, the half- and quarter-hour ones (India, Nepal) too, on SQLite and PostgreSQL.

This module imports no other query module, so ``queries`` and ``trends`` can both use it.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Date, case, func, literal_column, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from dashboard.models import Result

UTC = ZoneInfo("UTC")
DEFAULT_DAYS = 30  # every page's range when no dates are chosen, and the API's


def parse_zone(name: str | None) -> ZoneInfo:
    """An IANA zone such as ``Europe/Berlin`` (what the browser's Intl API reports); UTC when
    none is given. ValueError, saying so, for a name zoneinfo does not know."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: give an IANA name such as "
                         "Europe/Berlin") from None


def is_utc(zone: ZoneInfo) -> bool:
    """A zone that is UTC all year (its days are the running totals' days)."""
    return zone.key in ("UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal",
                        "Etc/Zulu", "Zulu", "Etc/GMT", "GMT")


def local_today(zone: ZoneInfo, now_utc: datetime) -> date:
    return now_utc.replace(tzinfo=timezone.utc).astimezone(zone).date()


def chosen_range(zone: ZoneInfo, now_utc: datetime, date_from: date | None,
                 date_to: date | None) -> tuple[date, date]:
    """The chosen local days; by default the last ``DEFAULT_DAYS`` up to today in ``zone``."""
    end = date_to or local_today(zone, now_utc)
    return date_from or end - timedelta(days=DEFAULT_DAYS - 1), end


def utc_start_of(day: date, zone: ZoneInfo) -> datetime:
    """The naive UTC instant a local day begins (the stored times are naive UTC)."""
    return (datetime.combine(day, time(), tzinfo=zone).astimezone(timezone.utc)
            .replace(tzinfo=None))


def utc_bounds(date_from: date, date_to: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in naive UTC of the local days ``date_from`` .. ``date_to``."""
    return utc_start_of(date_from, zone), utc_start_of(date_to + timedelta(1), zone)


def _offset_minutes(zone: ZoneInfo, utc: datetime) -> int:
    offset = utc.replace(tzinfo=timezone.utc).astimezone(zone).utcoffset()
    return round(offset.total_seconds() / 60) if offset else 0


def offset_changes(zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """(naive UTC instant, offset in minutes from then on) for ``[start, end)``, the first at
    ``start``. Checked once a day, a change is then narrowed down to its minute (zones change
    on whole minutes); two changes within one day, which no zone has, would be missed."""
    changes = [(start, _offset_minutes(zone, start))]
    moment = start
    while moment < end:
        following = min(moment + timedelta(days=1), end)
        if _offset_minutes(zone, following) != changes[-1][1]:
            before, after = moment, following
            while after - before > timedelta(minutes=1):
                middle = before + (after - before) / 2
                if _offset_minutes(zone, middle) == changes[-1][1]:
                    before = middle
                else:
                    after = middle
            exact = after.replace(second=0, microsecond=0)
            changes.append((exact, _offset_minutes(zone, exact)))
        moment = following
    return changes


class _ShiftedDate(FunctionElement):
    """The date of a naive UTC time shifted by a number of minutes (an SQL expression)."""

    type = Date()
    name = "shifted_date"
    inherit_cache = True


@compiles(_ShiftedDate, "sqlite")
def _sqlite_shifted_date(element, compiler, **kw) -> str:  # noqa: ANN001
    moment, minutes = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"date({moment}, ({minutes}) || ' minutes')"


@compiles(_ShiftedDate, "postgresql")
def _postgresql_shifted_date(element, compiler, **kw) -> str:  # noqa: ANN001
    moment, minutes = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"CAST({moment} + make_interval(mins => {minutes}) AS DATE)"


def local_date(moment, changes: list[tuple[datetime, int]]):  # noqa: ANN001, ANN201
    """SQL: the local date of a naive UTC column, for times inside the changes' range. The
    offsets are integers written into the SQL (no bind parameter whose type a database
    would have to guess)."""
    offsets = [literal_column(str(int(offset))) for _, offset in changes]
    if len(changes) == 1:
        return _ShiftedDate(moment, offsets[0])
    branches = [(moment < at, offset) for (at, _), offset in zip(changes[1:], offsets)]
    return _ShiftedDate(moment, case(*branches, else_=offsets[-1]))


def ended_between(start: datetime, end: datetime) -> list:
    """Results that ended in ``[start, end)`` (naive UTC); the UTC-day bounds let the
    (day, site) index narrow the scan."""
    return [Result.day >= start.date(), Result.day <= end.date(),
            Result.ended_at >= start, Result.ended_at < end]


def decisions_per_day(session: Session, zone: ZoneInfo, date_from: date, date_to: date,
                      site: str | None = None) -> dict[tuple[str, date], Counter]:
    """Results per (site, local day) and decision, for the local days of the range."""
    start, end = utc_bounds(date_from, date_to, zone)
    changes = offset_changes(zone, start, end)
    # grouped in an outer query because PostgreSQL does not see two renderings of an
    # expression with bind parameters as the same GROUP BY key
    inner = (select(Result.site, local_date(Result.ended_at, changes).label("day"),
                    Result.decision)
             .where(*ended_between(start, end), *([Result.site == site] if site else []))
             .subquery())
    rows = session.execute(select(inner.c.site, inner.c.day, inner.c.decision, func.count())
                           .group_by(inner.c.site, inner.c.day, inner.c.decision))
    found: dict[tuple[str, date], Counter] = {}
    for name, day, decision, count in rows:
        # SQLite gives the date as text
        key = (name, day if isinstance(day, date) else date.fromisoformat(day))
        found.setdefault(key, Counter())[decision] = count
    return found
