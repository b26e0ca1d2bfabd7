"""The users page, for admins: staff accounts (list, add, remove, reset a password) and the
API keys of other systems (list, revoke). The same as ``sarco-dashboard user ...`` and
``apikey ...``; new keys are made on the command line, where the key is printed once."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from dashboard import auth
from dashboard.page_support import DB, Who, Zone, render, require_csrf

router = APIRouter(include_in_schema=False)
_DONE = {"added": "Account {} added.", "removed": "Account {} removed.",
         "reset": "Password of {} reset; its sessions were ended.",
         "revoked": "API key {} revoked."}


def _require_admin(who: auth.Principal) -> None:
    if who.role != "admin":
        raise HTTPException(403, "only admins manage accounts and API keys")


def _page(request: Request, session: Session, who: auth.Principal, zone: ZoneInfo,
          error: str | None = None, done: str = "", name: str = "",
          status_code: int = 200) -> HTMLResponse:
    response = render(request, "users.html", who, zone, "users",
                      users=auth.list_users(session), keys=auth.list_api_keys(session),
                      roles=auth.ROLES, min_password=auth.MIN_PASSWORD_CHARS, error=error,
                      notice=_DONE[done].format(name) if done in _DONE else None)
    response.status_code = status_code
    return response


def _done(what: str, name: str) -> RedirectResponse:
    return RedirectResponse("/users?" + urlencode({"done": what, "name": name}),
                            status_code=303)


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, session: DB, who: Who, zone: Zone, done: str = "",
               name: str = "") -> HTMLResponse:
    _require_admin(who)
    return _page(request, session, who, zone, done=done, name=name)


def _check_twice(password: str, again: str) -> None:
    if password != again:
        raise auth.AuthError("the two passwords differ")


@router.post("/users", response_model=None)
def add_user(request: Request, session: DB, who: Who, zone: Zone,
             name: Annotated[str, Form()], role: Annotated[str, Form()],
             password: Annotated[str, Form()], again: Annotated[str, Form()],
             csrf: Annotated[str | None, Form()] = None) -> HTMLResponse | RedirectResponse:
    require_csrf(who, csrf)
    _require_admin(who)
    try:
        _check_twice(password, again)
        auth.add_user(session, name.strip(), role, password)
    except auth.AuthError as exc:
        return _page(request, session, who, zone, error=str(exc), status_code=400)
    session.commit()
    return _done("added", name.strip())


@router.post("/users/{name}/remove", response_model=None)
def remove_user(request: Request, name: str, session: DB, who: Who, zone: Zone,
                csrf: Annotated[str | None, Form()] = None) -> HTMLResponse | RedirectResponse:
    require_csrf(who, csrf)
    _require_admin(who)
    try:
        if name == who.name:
            raise auth.AuthError("you cannot remove your own account: ask another admin")
        auth.remove_user(session, name)
    except auth.AuthError as exc:
        return _page(request, session, who, zone, error=str(exc), status_code=400)
    session.commit()
    return _done("removed", name)


@router.post("/users/{name}/password", response_model=None)
def reset_password(request: Request, name: str, session: DB, who: Who, zone: Zone,
                   password: Annotated[str, Form()], again: Annotated[str, Form()],
                   csrf: Annotated[str | None, Form()] = None,
                   ) -> HTMLResponse | RedirectResponse:
    require_csrf(who, csrf)
    _require_admin(who)
    try:
        _check_twice(password, again)
        auth.reset_password(session, name, password)
    except auth.AuthError as exc:
        return _page(request, session, who, zone, error=str(exc), status_code=400)
    session.commit()
    return _done("reset", name)


@router.post("/api-keys/{name}/revoke", response_model=None)
def revoke_key(request: Request, name: str, session: DB, who: Who, zone: Zone,
               csrf: Annotated[str | None, Form()] = None) -> HTMLResponse | RedirectResponse:
    require_csrf(who, csrf)
    _require_admin(who)
    if not auth.revoke_api_key(session, name):
        return _page(request, session, who, zone, error=f"no active API key named {name!r}",
                     status_code=400)
    session.commit()
    return _done("revoked", name)
