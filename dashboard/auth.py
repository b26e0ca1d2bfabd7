"""Staff accounts, web sessions, CSRF tokens and API keys; only hashes are stored.

Passwords: scrypt (hashlib, memory-hard, no extra dependency) with a random salt, encoded as
``scrypt$N$r$p$salt$hash`` so the cost can be raised later without breaking old hashes.
Session cookies and API keys are 256-bit random tokens; for those a plain SHA-256 is enough
(nothing to brute-force) and lets a request's token be looked up by its digest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dashboard.db import utc_now
from dashboard.models import ApiKey, User, WebSession
from sarco_core.errors import SarcoError

ROLES = ("admin", "staff", "readonly")
SESSION_LIFETIME = timedelta(hours=12)  # one working day, then log in again
MIN_PASSWORD_CHARS = 10
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # ~16 MiB and ~50 ms per check
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
API_KEY_PREFIX = "sdk_"


class AuthError(SarcoError, ValueError):
    """A user or key could not be created; the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a logged-in user (or everyone, with authentication off)."""

    name: str
    role: str
    csrf_token: str = ""

    @property
    def can_act(self) -> bool:
        """Staff and admins change things (follow-ups); read-only users only look."""
        return self.role in ("admin", "staff")


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    encode = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${encode(salt)}${encode(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise AuthError(f"name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")


def add_user(session: Session, name: str, role: str, password: str) -> User:
    check_name(name)
    if role not in ROLES:
        raise AuthError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    check_password(password)
    user = User(name=name, role=role, password_hash=hash_password(password),
                created_at=utc_now())
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise AuthError(f"user {name!r} exists already") from None
    return user


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def remove_user(session: Session, name: str) -> None:
    """Delete an account and, with it, its web sessions. The last admin is kept: without
    one, only someone with the database could manage accounts again."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise AuthError(f"no user named {name!r}")
    if user.role == "admin" and _admins(session) == 1:
        raise AuthError(f"{name!r} is the last admin: make another admin first")
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    session.delete(user)


def reset_password(session: Session, name: str, password: str) -> None:
    """Set a new password and log the account out everywhere (whoever knew the old one
    may hold a session)."""
    check_password(password)
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise AuthError(f"no user named {name!r}")
    user.password_hash = hash_password(password)
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))


def _admins(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)
                          .where(User.role == "admin")) or 0


def authenticate(session: Session, name: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        verify_password(password, _dummy_hash())  # same time whether or not the name exists
        return None
    return user if verify_password(password, user.password_hash) else None


def open_session(session: Session, user: User) -> str:
    """Start a web session; returns the cookie token (shown once, stored hashed)."""
    token = secrets.token_urlsafe(32)
    now = utc_now()
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    session.add(WebSession(token_sha256=_sha256(token), user_id=user.id,
                           csrf_token=secrets.token_urlsafe(32), created_at=now,
                           expires_at=now + SESSION_LIFETIME))
    return token


def principal_for_session(session: Session, token: str | None) -> Principal | None:
    if not token:
        return None
    row = session.execute(
        select(WebSession, User).join(User, User.id == WebSession.user_id)
        .where(WebSession.token_sha256 == _sha256(token))).first()
    if row is None or row.WebSession.expires_at < utc_now():
        return None
    return Principal(row.User.name, row.User.role, row.WebSession.csrf_token)


def close_session(session: Session, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_sha256 == _sha256(token)))


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(expected, given)


def create_api_key(session: Session, name: str) -> str:
    """A new key for another system; returns the key (shown once, stored hashed)."""
    check_name(name)
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, key_sha256=_sha256(key), created_at=utc_now()))
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise AuthError(f"API key {name!r} exists already; revoke it or choose another "
                        "name") from None
    return key


def revoke_api_key(session: Session, name: str) -> bool:
    key = session.scalar(select(ApiKey).where(ApiKey.name == name,
                                              ApiKey.revoked_at.is_(None)))
    if key is None:
        return False
    key.revoked_at = utc_now()
    return True


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key ever made, active ones first (a revoked key's name stays taken)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.revoked_at.is_not(None),
                                                        ApiKey.name)))


def api_key_name(session: Session, key: str | None) -> str | None:
    """The name of a valid, unrevoked key, else None."""
    if not key:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.key_sha256 == _sha256(key),
                                              ApiKey.revoked_at.is_(None)))
    return row.name if row else None


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))
