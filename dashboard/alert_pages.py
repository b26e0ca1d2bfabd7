"""The alerts page: the list with filters, and staff acknowledging and resolving alerts
(forms with the session's CSRF token, as every page; read-only accounts only look); and how
the pages word an alert (``describe``): what is known now, in the viewer's zone."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Annotated, Protocol
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from dashboard import alerts
from dashboard.alert_rules import duration
from dashboard.db import utc_now
from dashboard.models import Alert, Device
from dashboard.page_support import DB, Who, Zone, back, local_time, render, require_staff

router = APIRouter(include_in_schema=False)
STATES = ("active", "open", "acknowledged", "resolved", "all")
ALERTS_ON_PAGE = 200


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, session: DB, who: Who, zone: Zone,
                state: alerts.StateFilter = "active", rule: str = "",
                site: str = "") -> HTMLResponse:
    listed = alerts.list_alerts(session, state, rule or None, site or None, ALERTS_ON_PAGE)
    sites = session.scalars(select(Alert.site).distinct().order_by(Alert.site)).all()
    return render(request, "alerts.html", who, zone, "alerts", alerts=listed,
                  labels=alerts.RULE_LABELS, states=STATES, sites=sites,
                  texts=describe(session, listed, utc_now(), zone), cleared=alerts.CLEARED,
                  chosen={"state": state, "rule": rule, "site": site}, limit=ALERTS_ON_PAGE)


class _Alert(Protocol):
    id: int
    rule: str
    site: str
    device: str | None
    summary: str
    opened_at: datetime


def describe(session: Session, listed: Iterable[_Alert], now: datetime,
             zone: ZoneInfo) -> dict[int, str]:
    """Each alert's text as a page shows it, by id. The stored summary was written when the
    alert opened (and goes out in UTC in the notifications); a page says what holds now:
    how long an offline device has been out of contact, and that an offline device's
    temperature or backlog is unknown (such an alert stays open: docs/dashboard.md)."""
    listed = list(listed)
    wanted = {(a.site, a.device) for a in listed if a.device}
    devices = {(d.site, d.device): d for d in session.scalars(
        select(Device).where(tuple_(Device.site, Device.device).in_(wanted)))} if wanted else {}
    texts = {}
    for alert in listed:
        device = devices.get((alert.site, alert.device))
        unresolved = getattr(alert, "resolved_at", None) is None
        text = alert.summary
        if alert.rule == "device_offline":
            offline = device is not None and device.state == "offline"
            value = getattr(alert, "value", None)
            if unresolved and offline:
                last = device.last_seen_at
            elif value is not None:
                last = alert.opened_at - timedelta(minutes=value)
            else:
                last = None
            if last is not None:
                text = f"connection lost; no contact since {local_time(last, zone)}"
                if unresolved and offline:
                    text += f" ({duration((now - last).total_seconds() / 60)} ago)"
        elif (unresolved and alert.rule in ("temperature_high", "backlog_high")
              and device is not None and device.state != "online"):
            text += (f"; the device has been {device.state} since "
                     f"{local_time(device.state_since, zone)}: figures unknown until it "
                     "reports again")
        texts[alert.id] = text
    return texts


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(request: Request, alert_id: int, session: DB, who: Who,
                csrf: Annotated[str | None, Form()] = None) -> RedirectResponse:
    """Idempotent: acknowledging an alert that is no longer open changes nothing."""
    require_staff(who, csrf, "acknowledge alerts")
    _require_alert(session, alert_id)
    alerts.acknowledge(session, alert_id, who.name, utc_now())
    session.commit()
    return back(request, "/alerts")


@router.post("/alerts/{alert_id}/resolve")
def resolve(request: Request, alert_id: int, session: DB, who: Who,
            csrf: Annotated[str | None, Form()] = None) -> RedirectResponse:
    require_staff(who, csrf, "resolve alerts")
    _require_alert(session, alert_id)
    alerts.resolve(session, alert_id, who.name, utc_now())
    session.commit()
    return back(request, "/alerts")


def _require_alert(session: Session, alert_id: int) -> None:
    if session.get(Alert, alert_id) is None:
        raise HTTPException(404, f"no alert {alert_id}")
