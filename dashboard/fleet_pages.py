"""The site page (its devices, trends, muscle measurements and model versions) and the device
page (state and status history, telemetry sparklines, model, results with their measurements,
and the commands staff send it)."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from dashboard import alerts, charts, commands, device_view, measure_stats, queries, trends
from dashboard.alert_pages import describe
from dashboard.local_days import DEFAULT_DAYS, local_today
from dashboard.auth import Principal
from dashboard.db import utc_now
from dashboard.page_support import DB, Who, Zone, local_range, render, require_staff
from dashboard.store import TELEMETRY_HISTORY
from sarco_core.wire import schema

router = APIRouter(include_in_schema=False)


@router.get("/sites/{site}", response_class=HTMLResponse)
def site_page(request: Request, site: str, session: DB, who: Who, zone: Zone,
              date_from: str | None = None, date_to: str | None = None) -> HTMLResponse:
    if site not in queries.sites(session):
        raise HTTPException(404, f"no site {site!r}")
    now = utc_now()
    start, end = local_range(zone, date_from, date_to)
    try:
        trend = trends.trends(session, zone, start, end, site)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    health = queries.device_health(session, now, site, zone=zone)
    chosen = queries.Filters(site, start, end, zone)
    measured = measure_stats.site_measurements(session, chosen)
    chart_data = charts.trend_charts(trend)
    chart_data["charts"] += charts.measurement_charts(measured)
    days = trend.sites[0].days if trend.sites else []
    screened = sum(day.screened for day in days)
    positive = sum(day.positive for day in days)
    summary = queries.summary(session, local_today(zone, now), site, zone)
    return render(
        request, "site.html", who, zone, "fleet", site=site, now=now, trend=trend,
        chart_data=chart_data, measured=measured, health=health,
        fleet=queries.fleet_by_site(health), rules=queries.HealthRules(),
        summary=summary, today=summary.sites[0] if summary.sites else None,
        attention=alerts.attention(session, site), default_days=DEFAULT_DAYS,
        range_totals={"screened": screened, "positive": positive,
                      "rescans": sum(day.rescans for day in days),
                      "positive_rate": positive / screened if screened else None,
                      "referrals_open": days[-1].referrals_open if days else 0},
        models=queries.model_versions(session, chosen))


def _device_page(request: Request, session: Session, who: Principal, zone: ZoneInfo,
                 site: str, device: str, page: int = 1, error: str | None = None,
                 sent: bool = False, status_code: int = 200) -> HTMLResponse:
    now = utc_now()
    health = next((d for d in queries.device_health(session, now, site, zone=zone)
                   if d.device == device), None)
    if health is None:
        raise HTTPException(404, f"no device {device!r} at site {site!r}")
    since = now - TELEMETRY_HISTORY
    samples = queries.telemetry_history(session, site, device, since) or []
    changes = device_view.state_changes(session, site, device, since)
    results, page, pages = device_view.results_page(session, site, device, page)
    raised = alerts.unresolved(session, site, device)
    return render(
        request, "device.html", who, zone, "fleet", status_code=status_code, d=health,
        now=now, rules=queries.HealthRules(),
        periods=device_view.status_periods(samples, changes, since, now),
        gap_minutes=int(device_view.GAP.total_seconds() // 60),
        chart_data=charts.telemetry_charts(device_view.telemetry_series(samples), device,
                                           since, now, zone),
        samples=len(samples), results=results, page=page, pages=pages,
        raised=raised, texts=describe(session, raised, now, zone),
        commands=commands.recent(session, site, device), error=error, sent=sent,
        can_send=request.app.state.commands is not None)


@router.get("/devices/{site}/{device}", response_class=HTMLResponse)
def device_page(request: Request, site: str, device: str, session: DB, who: Who,
                zone: Zone, page: int = 1, sent: bool = False) -> HTMLResponse:
    return _device_page(request, session, who, zone, site, device, page, sent=sent)


@router.post("/devices/{site}/{device}/commands", response_model=None)
def send_command(request: Request, site: str, device: str, session: DB, who: Who,
                 zone: Zone, command: Annotated[str, Form()],
                 csrf: Annotated[str | None, Form()] = None,
                 screening_id: Annotated[str, Form()] = "",
                 url: Annotated[str, Form()] = "",
                 sha256: Annotated[str, Form()] = "") -> HTMLResponse | RedirectResponse:
    """Publish a command; a refused one (schema) re-renders the page with the reason."""
    require_staff(who, csrf, "send commands")
    wanted = commands.Command(command, screening_id.strip() or None, url.strip() or None,
                              sha256.strip().lower() or None)
    try:
        commands.send(session, request.app.state.commands, site, device, wanted, who.name,
                      utc_now())
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except schema.PayloadError as exc:
        return _device_page(request, session, who, zone, site, device,
                            error=f"Not sent: {exc}", status_code=400)
    session.commit()
    return RedirectResponse(f"/devices/{site}/{device}?sent=true#commands", status_code=303)
