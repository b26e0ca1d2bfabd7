"""The referral worklist: find a referral (by screening id, site, state), page through them,
and act on one: mark it referred, undo that, record what came of it, write a note.

Every action is also written to ``referral_events``, so a referral shows who did what when,
including a mark that was undone. Outcomes are a fixed list and notes are short and checked
for printable text: the page warns that a note must not identify the person (the screening id
is the only identifier the dashboard holds, docs/dashboard.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard.models import FollowUp, ReferralEvent, Result
from dashboard.queries import (
    POSITIVE,
    REFERRAL_DUE,
    Referral,
    referral_query,
    referral_records,
)
from sarco_core.errors import SarcoError

PER_PAGE = 25
NOTE_CHARS = 500
OUTCOMES = {
    "confirmed": "sarcopenia confirmed",
    "not_confirmed": "sarcopenia not confirmed",
    "declined": "declined the referral",
    "unreachable": "could not be reached",
}
State = Literal["open", "overdue", "referred", "all"]
STATES: tuple[State, ...] = ("open", "overdue", "referred", "all")


class ReferralError(SarcoError, ValueError):
    """An action that cannot be done; the message says why (shown to the user)."""


class ReferralEventRecord(BaseModel):
    kind: str
    text: str | None
    by_user: str
    at: datetime


@dataclass(frozen=True)
class ReferralSearch:
    """The referrals page's form: a part of a screening id, a site, a state, a page."""

    screening_id: str = ""
    site: str | None = None
    state: State = "open"
    page: int = 1


@dataclass(frozen=True)
class ReferralPage:
    referrals: list[Referral]
    history: dict[str, list[ReferralEventRecord]]
    total: int
    page: int
    pages: int


def search(session: Session, chosen: ReferralSearch, now: datetime) -> ReferralPage:
    where = _where(chosen, now)
    total = session.scalar(
        select(func.count()).select_from(Result)
        .outerjoin(FollowUp, FollowUp.result_id == Result.result_id)
        .where(Result.decision == POSITIVE, *where)) or 0
    pages = max(1, -(-total // PER_PAGE))
    page = min(max(chosen.page, 1), pages)
    rows = referral_records(session, referral_query(*where).offset((page - 1) * PER_PAGE)
                            .limit(PER_PAGE), now)
    return ReferralPage(referrals=rows, history=history(session, [r.result_id for r in rows]),
                        total=total, page=page, pages=pages)


def _where(chosen: ReferralSearch, now: datetime) -> list:
    where: list = []
    text = chosen.screening_id.strip().lower()
    if text:
        where.append(func.lower(Result.screening_id).contains(text, autoescape=True))
    if chosen.site:
        where.append(Result.site == chosen.site)
    if chosen.state in ("open", "overdue"):
        where.append(FollowUp.at.is_(None))
    if chosen.state == "overdue":
        where.append(Result.ended_at < now - REFERRAL_DUE)
    if chosen.state == "referred":
        where.append(FollowUp.at.is_not(None))
    return where


def history(session: Session, result_ids: list[str]) -> dict[str, list[ReferralEventRecord]]:
    found: dict[str, list[ReferralEventRecord]] = {}
    if not result_ids:
        return found
    for event in session.scalars(select(ReferralEvent)
                                 .where(ReferralEvent.result_id.in_(result_ids))
                                 .order_by(ReferralEvent.at, ReferralEvent.id)):
        found.setdefault(event.result_id, []).append(
            ReferralEventRecord.model_validate(event, from_attributes=True))
    return found


# ----------------------------------------------------------------------------- actions


def _require_positive(session: Session, result_id: str) -> None:
    found = session.scalar(select(Result.result_id).where(Result.result_id == result_id,
                                                          Result.decision == POSITIVE))
    if found is None:
        raise LookupError("no positive result with that id")


def _log(session: Session, result_id: str, kind: str, user: str, now: datetime,
         text: str | None = None) -> None:
    session.add(ReferralEvent(result_id=result_id, kind=kind, text=text, by_user=user, at=now))


def mark_referred(session: Session, result_id: str, user: str, now: datetime) -> None:
    """Record that the person was contacted and referred (once; a second mark is a no-op).
    LookupError if ``result_id`` is not a stored positive result."""
    _require_positive(session, result_id)
    if session.get(FollowUp, result_id) is None:
        session.add(FollowUp(result_id=result_id, by_user=user, at=now))
        _log(session, result_id, "referred", user, now)


def undo_referred(session: Session, result_id: str, user: str, now: datetime) -> None:
    """Take back a mark made by mistake: the referral is open again (its outcome goes too)."""
    _require_positive(session, result_id)
    follow_up = session.get(FollowUp, result_id)
    if follow_up is None:
        raise ReferralError("this referral is not marked referred")
    session.delete(follow_up)
    _log(session, result_id, "undone", user, now)


def record_outcome(session: Session, result_id: str, outcome: str, user: str,
                   now: datetime) -> None:
    _require_positive(session, result_id)
    if not outcome:
        raise ReferralError("choose an outcome from the list first: nothing was recorded")
    if outcome not in OUTCOMES:
        raise ReferralError(f"outcome {outcome!r}: one of {', '.join(OUTCOMES)}")
    follow_up = session.get(FollowUp, result_id)
    if follow_up is None:
        raise ReferralError("mark the referral referred before recording its outcome")
    follow_up.outcome, follow_up.outcome_by, follow_up.outcome_at = outcome, user, now
    _log(session, result_id, "outcome", user, now, outcome)


def add_note(session: Session, result_id: str, text: str, user: str, now: datetime) -> None:
    _require_positive(session, result_id)
    text = " ".join(text.split())  # one line: a note is shown in a list
    if not text:
        raise ReferralError("the note is empty")
    if len(text) > NOTE_CHARS or not text.isprintable():
        raise ReferralError(f"a note is at most {NOTE_CHARS} printable characters")
    _log(session, result_id, "note", user, now, text)
