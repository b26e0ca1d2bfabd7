"""The alerts page: the list with filters, and staff acknowledging and resolving alerts
(forms with the session's CSRF token, as every page; read-only accounts only look)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard import alerts
from dashboard.db import utc_now
from dashboard.models import Alert
from dashboard.page_support import DB, Who, Zone, back, render, require_staff

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
                  chosen={"state": state, "rule": rule, "site": site}, limit=ALERTS_ON_PAGE)


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
