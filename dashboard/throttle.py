"""Failed-login throttling: per typed user name and per client address, kept in the database.

Why in the database: a lockout must survive a restart (or an attacker restarts the count by
crashing the process) and hold for every process serving the same database. Each rule counts
failures (a user name's until its next successful login); at ``limit`` failures the subject is
locked for one minute, and every further failure after a lock doubles it, up to an hour.
Failures are forgotten (their row deleted) a day after the last one. A lock is lifted early by
``sarco-dashboard user unlock``.

User names are stored as their SHA-256 only: the name field sometimes holds a password typed
one field too early, and it must not be written down in clear text.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from dashboard.db import dialect_insert
from dashboard.models import LoginThrottle

FIRST_LOCK = timedelta(minutes=1)
LONGEST_LOCK = timedelta(hours=1)
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class Rule:
    """What is counted (``kind`` names the subject) and after how many failures it locks."""

    kind: str
    limit: int


# a person mistypes a few times; a guesser tries thousands
ACCOUNT = Rule("account", 5)
# several people may share an address (a ward's PC, a NAT): a higher limit
ADDRESS = Rule("address", 20)
# invalid API keys from one address (keys are random, but guessing must not be free)
API_ADDRESS = Rule("api-address", 20)


@dataclass(frozen=True)
class Lockout:
    """A subject that may not try again before ``until``."""

    rule: Rule
    subject: str
    until: datetime

    def seconds_left(self, now: datetime) -> int:
        """For the Retry-After header."""
        return max(1, math.ceil((self.until - now).total_seconds()))

    def try_again(self, now: datetime) -> str:
        """``try again in N minutes``, N rounded up."""
        minutes = math.ceil(self.seconds_left(now) / 60)
        return f"try again in {minutes} minute{'s' if minutes > 1 else ''}"


def address(host: str | None) -> str:
    """The subject of a client address (as the server sees it: behind a proxy on this host,
    the X-Forwarded-For address uvicorn takes from it)."""
    return (host or "unknown")[:64]


def account(name: str) -> str:
    """The subject of a typed user name: its SHA-256, never the text itself."""
    return hashlib.sha256(name.encode()).hexdigest()


def lock_duration(failures: int, limit: int) -> timedelta:
    """One minute at ``limit`` failures, doubling with each further failure, at most an hour."""
    doublings = min(failures - limit, 16)  # 2**16 minutes is far beyond the cap already
    return min(FIRST_LOCK * 2 ** doublings, LONGEST_LOCK)


def current_lockout(session: Session, subjects: list[tuple[Rule, str]],
                    now: datetime) -> Lockout | None:
    """The lock (the longest, if several) on any of these subjects, else None; reads only,
    so a locked-out guesser costs no write."""
    found = []
    for rule, subject in subjects:
        until = session.scalar(select(LoginThrottle.locked_until).where(
            LoginThrottle.kind == rule.kind, LoginThrottle.subject == subject))
        if until is not None and until > now:
            found.append(Lockout(rule, subject, until))
    return max(found, key=lambda lock: lock.until, default=None)


def record_failure(session: Session, rule: Rule, subject: str,
                   now: datetime) -> Lockout | None:
    """Count one failure (an atomic upsert, so concurrent requests and processes each count);
    returns the lock it set, if it reached the limit. Rows of every subject quiet for
    ``FORGET_AFTER`` are deleted first (never locked by then: the longest lock is shorter), so
    no hash of a mistyped name stays longer than that. The caller commits."""
    table = LoginThrottle.__table__
    session.execute(delete(table).where(table.c.last_failure_at < now - FORGET_AFTER))
    insert = dialect_insert(session.get_bind().dialect.name)
    statement = insert(table).values(kind=rule.kind, subject=subject, failures=1,
                                     last_failure_at=now)
    failures = session.scalar(statement.on_conflict_do_update(
        index_elements=["kind", "subject"],
        set_={"failures": table.c.failures + 1, "last_failure_at": now},
    ).returning(table.c.failures))
    if failures < rule.limit:
        return None
    until = now + lock_duration(failures, rule.limit)
    session.execute(update(table).where(table.c.kind == rule.kind, table.c.subject == subject)
                    .values(locked_until=until))
    return Lockout(rule, subject, until)


def forget(session: Session, rule: Rule, subject: str) -> bool:
    """Drop a subject's failures and lock (after a successful login, or an admin's unlock);
    True if there were any. The caller commits."""
    return bool(session.execute(delete(LoginThrottle).where(
        LoginThrottle.kind == rule.kind, LoginThrottle.subject == subject)).rowcount)
