"""The staff web pages (server-rendered, work offline: no CDN, no external tiles or fonts)
and the FastAPI application that also carries the REST API. This module has the login and
the fleet page; the other pages have their own modules (``*_pages.py``).

Security: staff log in (scrypt password hashes, server-side sessions in the database, cookie
HttpOnly + SameSite=Strict); every POST carries the session's CSRF token (the login form a
double-submit cookie); a Content-Security-Policy allows only this server's own scripts and
styles. ``auth_enabled=False`` (``serve --no-auth``) is for local trials only: everyone is
staff, and the page says so in red.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from dashboard import __doc__ as package_doc
from dashboard import alerts, auth, fleet_pages, queries, referral_pages, trend_pages, user_pages
from dashboard.alert_pages import router as alert_pages
from dashboard.api import router
from dashboard.commands import CommandPublisher
from dashboard.db import session_factory, utc_now
from dashboard.ingest import IngestWorker
from dashboard.local_days import DEFAULT_DAYS, local_today
from dashboard.login import attempt_login, lockout_message
from dashboard.page_support import (
    DB,
    same_site_referer,
    current_principal,
    SESSION_COOKIE,
    LoginRequired,
    Who,
    Zone,
    local_range,
    local_time,
    render,
    require_csrf,
    viewer_zone,
)
from sarco_core.measure import ECHO_CAVEAT

REFERRALS_ON_PAGE = 10  # the newest; the referrals page has them all
LOGIN_CSRF_COOKIE = "sarco_login_csrf"
_HERE = Path(__file__).parent
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def create_app(engine: Engine, *, auth_enabled: bool = True,
               ingest: IngestWorker | None = None, secure_cookies: bool = False) -> FastAPI:
    """The whole web side; ``ingest`` (if this process runs one) feeds the status line."""
    # no /docs page: Swagger UI loads its scripts from a CDN, and this page works offline;
    # /openapi.json is the typed description of the API
    app = FastAPI(title="sarco dashboard", version="1",
                  description=(package_doc or "").strip(), docs_url=None, redoc_url=None)
    app.state.sessions = session_factory(engine)
    app.state.auth_enabled = auth_enabled
    app.state.ingest = ingest
    app.state.secure_cookies = secure_cookies
    # with authentication off there is no session; one token per process still stops
    # another web site from posting through the browser
    app.state.trial_csrf = secrets.token_urlsafe(32)
    # commands to devices go through the broker this process's ingest uses
    app.state.commands = CommandPublisher(ingest.settings.broker) if ingest else None
    app.state.templates = Jinja2Templates(directory=_HERE / "templates")
    app.state.templates.env.filters["local"] = local_time
    # next to every echo intensity shown (docs/measurements.md)
    app.state.templates.env.globals["echo_caveat"] = ECHO_CAVEAT
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    app.include_router(router)
    for pages in (fleet_pages, referral_pages, trend_pages, user_pages):
        app.include_router(pages.router)
    app.include_router(alert_pages)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.middleware("http")(_security_headers)
    _add_pages(app)
    return app


async def _security_headers(request: Request, call_next):  # noqa: ANN202
    response = await call_next(request)
    response.headers.update(_SECURITY_HEADERS)
    return response


def _to_login(request: Request, exc: Exception) -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


# ----------------------------------------------------------------------------- errors
# The API (and /healthz, /openapi.json) answers errors in JSON, as FastAPI does; a page
# answers with a page: the layout, the message in words and a way back.

_ERROR_TITLES = {400: "That cannot be done", 401: "Not logged in", 403: "Not allowed",
                 404: "Not found", 405: "Not allowed here", 422: "Something in the address "
                 "or the form is not right", 429: "Too many attempts"}


def _answers_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path in ("/openapi.json", "/healthz")


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if _answers_json(request):
        return await http_exception_handler(request, exc)
    return await run_in_threadpool(_error_page, request, exc.status_code, str(exc.detail),
                                   exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    if _answers_json(request):
        return await request_validation_exception_handler(request, exc)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'][1:]) or error['loc'][0]}: "
        f"{error['msg']}" for error in exc.errors())
    return await run_in_threadpool(_error_page, request, 422, problems, None)


def _error_page(request: Request, status: int, message: str,
                headers: dict[str, str] | None) -> HTMLResponse:
    """The error in the pages' layout (with the navigation when someone is logged in), and
    a link back: to the page the request came from (same site), else to the fleet."""
    who = None
    try:
        with request.app.state.sessions() as session:
            who = current_principal(request, session)
    except LoginRequired:
        who = None
    referer = same_site_referer(request)
    came_from = referer is not None and referer != str(request.url)
    response = render(
        request, "error.html", who, viewer_zone(request), "", status_code=status,
        title=_ERROR_TITLES.get(status, f"Error {status}"), status=status, message=message,
        back_to=referer if came_from else "/",
        back_label="Back to the previous page" if came_from else "Back to the fleet")
    if headers:
        response.headers.update(headers)
    return response


def page_filters(zone: Zone, site: str | None = None, date_from: str | None = None,
                 date_to: str | None = None) -> queries.Filters:
    """The page's filter form, in days of the viewer's zone; empty fields mean all sites /
    the last 30 days (``local_days.DEFAULT_DAYS``)."""
    start, end = local_range(zone, date_from, date_to)
    if start > end:
        raise HTTPException(400, "the 'from' date is after the 'to' date")
    return queries.Filters(site or None, start, end, zone)


PageFilters = Annotated[queries.Filters, Depends(page_filters)]


def _add_pages(app: FastAPI) -> None:
    templates: Jinja2Templates = app.state.templates

    def login_page(request: Request, failed: bool = False, locked: str | None = None,
                   status_code: int = 200) -> HTMLResponse:
        token = secrets.token_urlsafe(32)
        response = templates.TemplateResponse(
            request, "login.html", {"csrf": token, "failed": failed, "locked": locked,
                                    "auth_enabled": app.state.auth_enabled},
            status_code=status_code)
        _set_cookie(app, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, failed: bool = False) -> HTMLResponse:
        return login_page(request, failed)

    @app.post("/login", include_in_schema=False)
    def login(request: Request, session: DB, username: Annotated[str, Form()],
              password: Annotated[str, Form()], csrf: Annotated[str, Form()]) -> Response:
        if not auth.csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf):
            raise HTTPException(403, "the login form expired: reload it")
        outcome = attempt_login(session, username, password,
                                request.client.host if request.client else None)
        if outcome.lockout is not None:
            now = utc_now()
            page = login_page(request, locked=lockout_message(outcome.lockout, now),
                              status_code=429)
            page.headers["Retry-After"] = str(outcome.lockout.seconds_left(now))
            return page
        user = outcome.user
        if user is None:
            return RedirectResponse("/login?failed=true", status_code=303)
        token = auth.open_session(session, user)
        session.commit()
        response = RedirectResponse("/", status_code=303)
        _set_cookie(app, response, SESSION_COOKIE, token,
                    max_age=int(auth.SESSION_LIFETIME.total_seconds()))
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, session: DB, who: Who,
               csrf: Annotated[str | None, Form()] = None) -> RedirectResponse:
        require_csrf(who, csrf)
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            auth.close_session(session, token)
            session.commit()
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(request: Request, session: DB, who: Who, zone: Zone,
                  chosen: PageFilters) -> HTMLResponse:
        """The fleet: with a site chosen, every figure (the tiles too) is that site's."""
        now = utc_now()
        health = queries.device_health(session, now, chosen.site, zone=zone)
        return render(
            request, "dashboard.html", who, zone, "fleet", filters=chosen, now=now,
            sites=queries.sites(session), default_days=DEFAULT_DAYS,
            summary=queries.summary(session, local_today(zone, now), chosen.site, zone),
            attention=alerts.attention(session, chosen.site),
            totals=queries.totals(session, chosen),
            fleet=queries.fleet_by_site(health), health=health, rules=queries.HealthRules(),
            daily=queries.daily_counts(session, chosen),
            referrals=queries.referrals(session, chosen, limit=REFERRALS_ON_PAGE, now=now),
            models=queries.model_versions(session, chosen),
            rejected=queries.rejected_messages(session),
            rejected_total=queries.rejected_total(session),
            ingest=app.state.ingest.state if app.state.ingest else None)

    @app.get("/export/{what}.csv", include_in_schema=False)
    def export(what: str, who: Who, chosen: PageFilters) -> StreamingResponse:
        if what not in _EXPORTS:
            raise HTTPException(404, f"export one of {', '.join(_EXPORTS)}")
        name = (f"sarco-{what}-{chosen.site or 'all-sites'}-{chosen.date_from}"
                f"-{chosen.date_to}.csv")
        return StreamingResponse(
            _csv(app.state.sessions, what, chosen), media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        """For clients that ask for /favicon.ico without reading the page's icon link."""
        return FileResponse(_HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        """503 with the reason while this process's ingest is stuck (a message waiting to be
        stored, no broker, a refused subscription; IngestWorker.problem), else 200."""
        ingest = app.state.ingest
        problem = ingest.problem(utc_now()) if ingest else None
        body = {"ok": problem is None,
                "ingest_connected": bool(ingest and ingest.state.connected)}
        if problem:
            body["problem"] = problem
        return JSONResponse(body, status_code=503 if problem else 200)


def _set_cookie(app: FastAPI, response, name: str, value: str, max_age: int) -> None:  # noqa: ANN001
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict",
                        secure=app.state.secure_cookies)


def _export_rows(session: Session, what: str,
                 chosen: queries.Filters) -> tuple[tuple[str, ...], Iterable[Iterable]]:
    if what == "results":
        return queries.RESULT_COLUMNS, queries.iter_results(session, chosen)
    if what == "referrals":
        header = ("screening_id", "ended_at", "site", "device", "probability", "decision",
                  "followed_up_by", "followed_up_at", "result_id")
        return header, ((r.screening_id, r.ended_at, r.site, r.device, r.probability,
                         r.decision, r.followed_up_by, r.followed_up_at, r.result_id)
                        for r in queries.referrals(session, chosen, limit=None))
    header = ("site", "day", "screened", "positive", "rescans", "positive_rate")
    return header, ((r.site, r.day, r.screened, r.positive, r.rescans, r.positive_rate)
                    for r in queries.daily_counts(session, chosen))


_EXPORTS = ("results", "referrals", "daily")


def _csv(sessions, what: str, chosen: queries.Filters) -> Iterator[str]:  # noqa: ANN001
    """CSV text in chunks: an export of a year of results is streamed, not built in memory.
    The generator has its own database session because it runs after the request handler
    has returned. Times are UTC."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    with sessions() as session:
        header, rows = _export_rows(session, what, chosen)
        writer.writerow(header)
        for count, row in enumerate(rows, 1):
            writer.writerow([_spreadsheet_safe(value) for value in row])
            if count % 1000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


# Spreadsheets run a cell that starts with one of these as a formula (=HYPERLINK(...), or
# DDE commands), and some strip a leading tab or line break first.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def _spreadsheet_safe(value: object) -> object:
    """A cell as the export writes it: text that a spreadsheet would run as a formula gets a
    leading apostrophe (OWASP's CSV injection advice; the apostrophe shows the cell is text),
    numbers stay numbers (-0.5 is a value, not a formula), None is an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
