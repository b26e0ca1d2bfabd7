"""One login attempt: the throttle's locks checked first, the password only if none holds,
the outcome counted, and a log line that never repeats a typed name that is not an account
(it is often a password typed one field too early)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard import auth, throttle
from dashboard.db import utc_now
from dashboard.models import User

log = logging.getLogger("dashboard.web")

# Checking a password takes ~50 ms of scrypt. Without this, 30 guesses sent at once would all
# pass the lock check before the first failure is counted; one at a time, the fifth locks the
# sixth out. Logins are rare enough that queueing them costs nobody anything.
_ONE_AT_A_TIME = threading.Lock()


@dataclass(frozen=True)
class LoginOutcome:
    """The user logged in, or None; and the lock that refused (or now follows) the attempt."""

    user: User | None
    lockout: throttle.Lockout | None = None


def attempt_login(session: Session, name: str, password: str, host: str | None) -> LoginOutcome:
    """Refuse at once while the typed name or the address ``host`` is locked; else check the
    password, clear the name's failures on success or count a failure against both."""
    subjects = [(throttle.ACCOUNT, throttle.account(name)),
                (throttle.ADDRESS, throttle.address(host))]
    with _ONE_AT_A_TIME:
        now = utc_now()
        lockout = throttle.current_lockout(session, subjects, now)
        if lockout is not None:
            return LoginOutcome(None, lockout)
        user = auth.authenticate(session, name, password)
        if user is not None:
            throttle.forget(session, throttle.ACCOUNT, subjects[0][1])
            session.commit()
            return LoginOutcome(user)
        locks = [throttle.record_failure(session, rule, subject, now) for rule, subject in subjects]
        session.commit()
    who = _loggable_name(session, name)
    log.warning("failed login for %s from %s", who, throttle.address(host))
    lockout = max((lock for lock in locks if lock), key=lambda lock: lock.until, default=None)
    if lockout is not None:
        log.warning("logins for %s locked until %s UTC (too many failures)",
                    who if lockout.rule == throttle.ACCOUNT else f"address {lockout.subject}",
                    lockout.until.isoformat(timespec="seconds"))
    return LoginOutcome(None, lockout)


def lockout_message(lockout: throttle.Lockout, now: datetime) -> str:
    """What the login page says: how long, and who can lift the lock at once."""
    wait = lockout.try_again(now)
    if lockout.rule == throttle.ACCOUNT:
        return (f"Too many failed logins for this user name: {wait}, or ask an admin to run "
                "`sarco-dashboard user unlock NAME` (NAME: your user name).")
    return (f"Too many failed logins from this address ({lockout.subject}): {wait}, or ask an "
            f"admin to run `sarco-dashboard user unlock --address {lockout.subject}`.")


def _loggable_name(session: Session, name: str) -> str:
    exists = session.scalar(select(User.id).where(User.name == name)) is not None
    return f"user {name}" if exists else "an unknown user name"
