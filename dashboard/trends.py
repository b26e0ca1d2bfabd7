"""Trends per site and day in the viewer's time zone: screened, positive rate, rescans and
open referrals, for the charts of the trends and site pages and ``/api/v1/trends``.

Why the results are grouped here and not read from ``result_counts``: the running totals are
per UTC day, and a clinic's day in Jakarta or Chicago is not a UTC day. So the results are
grouped in SQL by the *local* date of ``ended_at`` (``dashboard.local_days``, which the fleet
page uses too).

"Referrals open" is the backlog at the end of each local day: every positive result so far
minus the referrals marked by then (an undone mark counts as never made).
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard.local_days import decisions_per_day, local_date, offset_changes, utc_bounds
from dashboard.models import Device, FollowUp, Result
from dashboard.queries import NEGATIVE, POSITIVE, RESCAN

MAX_DAYS = 366  # one CASE branch per transition, one row per site and day: bounded


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


def trends(session: Session, zone: ZoneInfo, date_from: date, date_to: date,
           site: str | None = None) -> Trends:
    """Every day of the range for every site (days without results count zero)."""
    if date_from > date_to:
        raise ValueError("the 'from' date is after the 'to' date")
    if (date_to - date_from).days >= MAX_DAYS:
        raise ValueError(f"a trend covers at most {MAX_DAYS} days")
    start, end = utc_bounds(date_from, date_to, zone)
    changes = offset_changes(zone, start, end)
    decisions = decisions_per_day(session, zone, date_from, date_to, site)
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


# ----------------------------------------------------------------------------- queries


def _sites(session: Session, site: str | None) -> list[str]:
    query = select(Device.site).distinct()
    if site:
        query = query.where(Device.site == site)
    return list(session.scalars(query))


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
