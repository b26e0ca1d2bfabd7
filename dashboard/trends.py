"""Trends per site and day in the viewer's time zone: screened, positive rate, rescans and
open referrals, for the charts of the trends and site pages and ``/api/v1/trends``.

Why the results are grouped here and not read from ``result_counts``: the running totals are
per UTC day, and a clinic's day in Jakarta or Chicago is not a UTC day. So the results are
grouped in SQL by the *local* date of ``ended_at``: the UTC time shifted by the zone's offset.
The offset changes at daylight-saving transitions; they are found with ``zoneinfo`` for the
range and written into the query as a CASE on the time, so one grouped query serves any zone,
the half- and quarter-hour ones (India, Nepal) too.

"Referrals open" is the backlog at the end of each local day: every positive result so far
minus the referrals marked by then (an undone mark counts as never made).
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field
from sqlalchemy import Date, case, func, literal_column, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from dashboard.models import Device, FollowUp, Result
from dashboard.queries import NEGATIVE, POSITIVE, RESCAN

MAX_DAYS = 366  # one CASE branch per transition, one row per site and day: bounded
DEFAULT_DAYS = 30
UTC = ZoneInfo("UTC")


class TrendDay(BaseModel):
    day: date = Field(description="local date in the chosen time zone")
    screened: int
    positive: int
    rescans: int
    positive_rate: float | None = Field(description="positive / screened; null when none")
    referrals_open: int = Field(description="positive results not yet marked referred, at "
                                            "the end of the day")


class SiteTrend(BaseModel):
    site: str
    days: list[TrendDay]


class Trends(BaseModel):
    time_zone: str = Field(description="IANA name the days are counted in")
    date_from: date
    date_to: date
    sites: list[SiteTrend]


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


def trends(session: Session, zone: ZoneInfo, date_from: date, date_to: date,
           site: str | None = None) -> Trends:
    """Every day of the range for every site (days without results count zero)."""
    if date_from > date_to:
        raise ValueError("the 'from' date is after the 'to' date")
    if (date_to - date_from).days >= MAX_DAYS:
        raise ValueError(f"a trend covers at most {MAX_DAYS} days")
    start, end = utc_start_of(date_from, zone), utc_start_of(date_to + timedelta(1), zone)
    changes = offset_changes(zone, start, end)
    decisions = _decisions_per_day(session, changes, start, end, site)
    referred = _referred_per_day(session, changes, start, end, site)
    open_before = _open_before(session, start, site)
    days = [date_from + timedelta(n) for n in range((date_to - date_from).days + 1)]
    names = sorted(set(_sites(session, site)) | {key[0] for key in decisions})
    series = []
    for name in names:
        backlog = open_before.get(name, 0)
        points = []
        for day in days:
            counts = decisions.get((name, day), Counter())
            screened = counts[POSITIVE] + counts[NEGATIVE]
            backlog += counts[POSITIVE] - referred.get((name, day), 0)
            points.append(TrendDay(day=day, screened=screened, positive=counts[POSITIVE],
                                   rescans=counts[RESCAN],
                                   positive_rate=counts[POSITIVE] / screened if screened
                                   else None, referrals_open=backlog))
        series.append(SiteTrend(site=name, days=points))
    return Trends(time_zone=zone.key, date_from=date_from, date_to=date_to, sites=series)


# ----------------------------------------------------------------------------- local days


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


# ----------------------------------------------------------------------------- queries


def _sites(session: Session, site: str | None) -> list[str]:
    query = select(Device.site).distinct()
    if site:
        query = query.where(Device.site == site)
    return list(session.scalars(query))


def _decisions_per_day(session: Session, changes: list[tuple[datetime, int]],
                       start: datetime, end: datetime,
                       site: str | None) -> dict[tuple[str, date], Counter]:
    # the UTC-day bounds let the (day, site) index narrow the scan; grouped in an outer
    # query because PostgreSQL does not see two renderings of an expression with bind
    # parameters as the same GROUP BY key
    inner = (select(Result.site, local_date(Result.ended_at, changes).label("day"),
                    Result.decision)
             .where(Result.day >= start.date(), Result.day <= end.date(),
                    Result.ended_at >= start, Result.ended_at < end,
                    *([Result.site == site] if site else []))
             .subquery())
    rows = session.execute(select(inner.c.site, inner.c.day, inner.c.decision, func.count())
                           .group_by(inner.c.site, inner.c.day, inner.c.decision))
    found: dict[tuple[str, date], Counter] = {}
    for name, day, decision, count in rows:
        found.setdefault((name, day), Counter())[decision] = count
    return found


def _referred_per_day(session: Session, changes: list[tuple[datetime, int]],
                      start: datetime, end: datetime,
                      site: str | None) -> dict[tuple[str, date], int]:
    inner = (select(Result.site, local_date(FollowUp.at, changes).label("day"))
             .join(Result, Result.result_id == FollowUp.result_id)
             .where(FollowUp.at >= start, FollowUp.at < end,
                    *([Result.site == site] if site else []))
             .subquery())
    rows = session.execute(select(inner.c.site, inner.c.day, func.count())
                           .group_by(inner.c.site, inner.c.day))
    return {(name, day): count for name, day, count in rows}


def _open_before(session: Session, start: datetime, site: str | None) -> dict[str, int]:
    """Per site: positives ended before ``start`` that were not marked referred before it."""
    where_site = [Result.site == site] if site else []
    positives = dict(session.execute(
        select(Result.site, func.count())
        .where(Result.decision == POSITIVE, Result.day <= start.date(),
               Result.ended_at < start, *where_site)
        .group_by(Result.site)).all())
    referred = dict(session.execute(
        select(Result.site, func.count())
        .join(FollowUp, FollowUp.result_id == Result.result_id)
        .where(FollowUp.at < start, *where_site)
        .group_by(Result.site)).all())
    return {name: count - referred.get(name, 0) for name, count in positives.items()}
