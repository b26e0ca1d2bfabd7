"""What every staff page needs: who is asking (login, role), the CSRF check, the viewer's
time zone, and rendering a template with the parts the layout shows (navigation with the
number of unresolved alerts, user).

The time zone: the browser reports its IANA zone (``Intl.DateTimeFormat``) in the
``sarco_tz`` cookie (static/page.js); a ``tz`` query parameter overrides it. Times are
stored in UTC and shown in that zone, and days are counted in it; without either, the page
uses UTC and says so.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from dashboard import alerts, auth
from dashboard.api import database
from dashboard.db import utc_now
from dashboard.local_days import UTC, chosen_range, parse_zone

SESSION_COOKIE = "sarco_session"
ZONE_COOKIE = "sarco_tz"


class LoginRequired(Exception):
    """Raised by the page dependencies; answered with a redirect to /login."""


DB = Annotated[Session, Depends(database)]


def current_principal(request: Request, session: DB) -> auth.Principal:
    if not request.app.state.auth_enabled:
        return auth.Principal("local trial", "staff", request.app.state.trial_csrf)
    principal = auth.principal_for_session(session, request.cookies.get(SESSION_COOKIE))
    if principal is None:
        raise LoginRequired
    return principal


Who = Annotated[auth.Principal, Depends(current_principal)]


def require_csrf(who: auth.Principal, token: str | None) -> None:
    if not auth.csrf_matches(who.csrf_token, token):
        raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page")


def require_staff(who: auth.Principal, token: str | None, doing: str) -> None:
    """A form that changes something: a valid CSRF token and a role that may act."""
    require_csrf(who, token)
    if not who.can_act:
        raise HTTPException(403, f"read-only accounts cannot {doing}")


def viewer_zone(request: Request) -> ZoneInfo:
    """The ``tz`` parameter, else the browser's cookie, else UTC (an unknown name too: a
    stale cookie must not break the page). Where it came from goes in
    ``request.state.zone_source``: "query", "browser" or "default"."""
    for source, name in (("query", request.query_params.get("tz")),
                         ("browser", request.cookies.get(ZONE_COOKIE))):
        if name:
            try:
                zone = parse_zone(name)
            except ValueError:
                continue
            request.state.zone_source = source
            return zone
    request.state.zone_source = "default"
    return UTC


Zone = Annotated[ZoneInfo, Depends(viewer_zone)]


def local_range(zone: ZoneInfo, date_from: str | None,
                date_to: str | None) -> tuple[date, date]:
    """A form's local days (empty: the last 30 days up to today in ``zone``)."""
    try:
        chosen = [date.fromisoformat(text) if text else None for text in (date_from, date_to)]
    except ValueError:
        raise HTTPException(400, "dates must look like 2025-01-31") from None
    return chosen_range(zone, utc_now(), *chosen)


def local_time(moment: datetime | None, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored (naive UTC) time as the viewer reads it; a dash for none."""
    if moment is None:
        return "–"
    return moment.replace(tzinfo=timezone.utc).astimezone(zone).strftime(fmt)


def render(request: Request, template: str, who: auth.Principal | None, zone: ZoneInfo,
           nav: str, status_code: int = 200, **context: object) -> HTMLResponse:
    """``nav`` names the navigation entry to highlight. The navigation shows how many alerts
    are open or acknowledged (every page, so nobody has to visit /alerts to learn of one)."""
    unresolved = 0
    if who is not None:
        with request.app.state.sessions() as session:
            unresolved = alerts.unresolved_count(session)
    return request.app.state.templates.TemplateResponse(request, template, {
        "who": who, "auth_enabled": request.app.state.auth_enabled, "zone": zone,
        "zone_source": getattr(request.state, "zone_source", "default"),
        "alerts_unresolved": unresolved, "nav": nav, "query": request.url.query,
        **context}, status_code=status_code)


def same_site_referer(request: Request) -> str | None:
    """The page the request came from, when it is one of ours (never send anyone off-site)."""
    referer = request.headers.get("referer") or ""
    return referer if referer.startswith(str(request.base_url)) else None


def back(request: Request, default: str) -> RedirectResponse:
    """303 to the page the form was on (same site only), else to ``default``."""
    return RedirectResponse(same_site_referer(request) or default, status_code=303)
