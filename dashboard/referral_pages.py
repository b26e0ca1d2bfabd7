"""The referrals page (search by screening id, site and state, paged) and the referral
actions, which every page with a referral list posts to: mark referred, undo, outcome, note.
Each action returns to the page it was posted from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from dashboard import queries, referrals
from dashboard.auth import Principal
from dashboard.db import utc_now
from dashboard.page_support import DB, Who, Zone, back, render, require_staff

router = APIRouter(include_in_schema=False)


@router.get("/referrals", response_class=HTMLResponse)
def referrals_page(request: Request, session: DB, who: Who, zone: Zone,
                   screening_id: str = "", site: str = "", state: str = "open",
                   page: int = 1) -> HTMLResponse:
    if state not in referrals.STATES:
        raise HTTPException(400, f"state: one of {', '.join(referrals.STATES)}")
    chosen = referrals.ReferralSearch(screening_id=screening_id, site=site or None,
                                      state=state, page=page)  # type: ignore[arg-type]
    found = referrals.search(session, chosen, utc_now())
    return render(request, "referrals.html", who, zone, "referrals", chosen=chosen,
                  found=found, sites=queries.sites(session), states=referrals.STATES,
                  outcomes=referrals.OUTCOMES,
                  due_days=queries.REFERRAL_DUE.days)


def _act(request: Request, session: Session, who: Principal, csrf: str | None,
         action: Callable[[], None]) -> RedirectResponse:
    require_staff(who, csrf, "change referrals")
    try:
        action()
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except referrals.ReferralError as exc:
        raise HTTPException(400, str(exc)) from None
    session.commit()
    return back(request, "/referrals")


@router.post("/referrals/{result_id}/follow-up")
def mark_referred(request: Request, result_id: str, session: DB, who: Who,
                  csrf: Annotated[str | None, Form()] = None) -> RedirectResponse:
    return _act(request, session, who, csrf, lambda: referrals.mark_referred(
        session, result_id, who.name, utc_now()))


@router.post("/referrals/{result_id}/undo")
def undo_referred(request: Request, result_id: str, session: DB, who: Who,
                  csrf: Annotated[str | None, Form()] = None) -> RedirectResponse:
    return _act(request, session, who, csrf, lambda: referrals.undo_referred(
        session, result_id, who.name, utc_now()))


@router.post("/referrals/{result_id}/outcome")
def record_outcome(request: Request, result_id: str, session: DB, who: Who,
                   outcome: Annotated[str, Form()] = "",
                   csrf: Annotated[str | None, Form()] = None) -> RedirectResponse:
    """``outcome`` empty (the list's first entry, "choose an outcome") is refused with a
    message: one careless click must not record a clinical finding."""
    return _act(request, session, who, csrf, lambda: referrals.record_outcome(
        session, result_id, outcome, who.name, utc_now()))


@router.post("/referrals/{result_id}/notes")
def add_note(request: Request, result_id: str, session: DB, who: Who,
             note: Annotated[str, Form()],
             csrf: Annotated[str | None, Form()] = None) -> RedirectResponse:
    return _act(request, session, who, csrf, lambda: referrals.add_note(
        session, result_id, note, who.name, utc_now()))
