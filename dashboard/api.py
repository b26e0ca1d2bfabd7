"""REST API for other systems (``/api/v1``, OpenAPI at ``/openapi.json``): read-only, API keys.

A key goes in the ``X-API-Key`` header; ``sarco-dashboard apikey create NAME`` makes one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard import alerts, local_days, queries, throttle, trends
from dashboard.auth import api_key_name
from dashboard.db import utc_now
from dashboard.models import Result
from dashboard.store import TELEMETRY_HISTORY

_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="Created with `sarco-dashboard apikey create NAME`.")


def database(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def require_api_key(request: Request, session: Annotated[Session, Depends(database)],
                    key: Annotated[str | None, Security(_API_KEY)] = None) -> str:
    """The key's name. An address that sent too many invalid keys is refused before its key
    is even looked at (429), so keys cannot be guessed at full speed."""
    if not request.app.state.auth_enabled:
        return "auth-off"
    address = throttle.address(request.client.host if request.client else None)
    now = utc_now()
    lockout = throttle.current_lockout(session, [(throttle.API_ADDRESS, address)], now)
    if lockout is None:
        name = api_key_name(session, key)
        if name is not None:
            return name
        if key:
            lockout = throttle.record_failure(session, throttle.API_ADDRESS, address, now)
            session.commit()
    if lockout is not None:
        raise HTTPException(429, f"too many invalid API keys from {address}: "
                            f"{lockout.try_again(now)}, or ask an admin to run "
                            f"`sarco-dashboard user unlock --address {address}`",
                            headers={"Retry-After": str(lockout.seconds_left(now))})
    raise HTTPException(401, "missing or invalid API key (header X-API-Key)",
                        headers={"WWW-Authenticate": "X-API-Key"})


def filters(site: str | None = None, date_from: date | None = None,
            date_to: date | None = None) -> queries.Filters:
    """Site and inclusive UTC day range; by default the last 30 days (the pages' default
    too, in the viewer's days)."""
    default = queries.Filters.last_days(utc_now().date(), site)
    chosen = queries.Filters(site or None, date_from or default.date_from,
                             date_to or default.date_to)
    if chosen.date_from > chosen.date_to:
        raise HTTPException(400, "date_from is after date_to")
    return chosen


DB = Annotated[Session, Depends(database)]
Range = Annotated[queries.Filters, Depends(filters)]
router = APIRouter(prefix="/api/v1", tags=["api"], dependencies=[Depends(require_api_key)])


class ResultRecord(BaseModel):
    id: int
    result_id: str
    screening_id: str
    site: str
    device: str
    started_at: datetime
    ended_at: datetime
    decision: str
    probability: float | None
    threshold: float
    usable_frames: int
    processed_frames: int
    skipped_frames: int
    model_name: str
    model_sha256: str
    app_version: str
    stored_at: datetime
    # the muscle measurements (docs/mqtt.md, ``measurements``): all null for a result sent
    # without them; the four quantities are session medians, the ``_iqr`` their spread
    muscle_thickness_mm: float | None
    muscle_thickness_px: float | None
    pennation_deg: float | None
    echo_intensity: float | None = Field(description="mean grey (0-255) of the muscle band: "
                                                     "compare only within one scanner and preset")
    frames_measured: int | None
    muscle_thickness_mm_iqr: float | None
    muscle_thickness_px_iqr: float | None
    pennation_deg_iqr: float | None
    echo_intensity_iqr: float | None
    measure_model_name: str | None
    measure_model_sha256: str | None


class ResultPage(BaseModel):
    results: list[ResultRecord]
    next_after_id: int | None  # pass as after_id for the next page; null on the last


@router.get("/summary")
def summary(session: DB) -> queries.Summary:
    """Totals now: all results stored, devices online, and today's counts per site."""
    return queries.summary(session, utc_now().date())


@router.get("/daily")
def daily(session: DB, chosen: Range) -> list[queries.DailyCount]:
    """Screened, positive and rescans per site and UTC day."""
    return queries.daily_counts(session, chosen)


@router.get("/trends")
def trend(session: DB, tz: str = "UTC", site: str | None = None,
          date_from: date | None = None, date_to: date | None = None) -> trends.Trends:
    """Per site and day in the time zone ``tz`` (an IANA name such as Europe/Berlin):
    screened, positive, positive rate, rescans and referrals open at the end of the day;
    by default the last 30 days up to today there."""
    try:
        zone = local_days.parse_zone(tz)
        start, end = local_days.chosen_range(zone, utc_now(), date_from, date_to)
        return trends.trends(session, zone, start, end, site)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


@router.get("/referrals")
def referrals(session: DB, chosen: Range,
              limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> list[queries.Referral]:
    """Positive screens (open ones first) with pseudonymous screening ids."""
    return queries.referrals(session, chosen, limit)


@router.get("/devices")
def devices(session: DB, site: str | None = None) -> list[queries.DeviceHealth]:
    """Every device's state, model, health telemetry, last update and health issues."""
    return queries.device_health(session, utc_now(), site)


@router.get("/devices/{site}/{device}/telemetry")
def telemetry(session: DB, site: str, device: str,
              hours: Annotated[float, Query(gt=0, le=TELEMETRY_HISTORY.total_seconds() / 3600)
                               ] = 6.0) -> list[queries.Telemetry]:
    """One device's health figures from its statuses of the last ``hours`` (kept for 24
    hours), oldest first."""
    history = queries.telemetry_history(session, site, device,
                                         utc_now() - timedelta(hours=hours))
    if history is None:
        raise HTTPException(404, f"no device {device!r} at site {site!r}")
    return history


@router.get("/models")
def models(session: DB, chosen: Range) -> list[queries.ModelVersion]:
    """Model versions in the field: devices running each, results each produced."""
    return queries.model_versions(session, chosen)


@router.get("/rejected")
def rejected(session: DB, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
             ) -> list[queries.RejectedRecord]:
    """Messages the ingest refused, newest first, with the reason."""
    return queries.rejected_messages(session, limit)


@router.get("/results")
def results(session: DB, chosen: Range, after_id: int = 0,
            limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> ResultPage:
    """Stored results in storage order, paged by ``after_id``. Ids grow as results are
    stored; with several ingest workers on PostgreSQL a row can commit a moment after a
    higher id, so a client that polls for new results should re-read the last minute."""
    rows = session.scalars(select(Result).where(Result.id > after_id, *chosen.where())
                           .order_by(Result.id).limit(limit)).all()
    records = [ResultRecord.model_validate(row, from_attributes=True) for row in rows]
    return ResultPage(results=records,
                      next_after_id=records[-1].id if len(records) == limit else None)


@router.get("/alerts")
def alert_list(session: DB, state: alerts.StateFilter = "active", rule: str | None = None,
               site: str | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[alerts.AlertRecord]:
    """Alerts, newest first ("active": open and acknowledged), each with the delivery state
    of its notifications. Acknowledge and resolve them on the /alerts page."""
    return alerts.list_alerts(session, state, rule, site, limit)
