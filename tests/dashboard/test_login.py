"""Login throttling over real HTTP: wrong passwords lock the user name and the address (the
right password included), the lock grows, survives a restart, is lifted by `sarco-dashboard
user unlock`; invalid API keys are throttled too; the log never repeats a typed non-account."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from dashboard import auth, throttle
from dashboard.cli import app as cli
from dashboard.db import utc_now
from dashboard.models import LoginThrottle
from tests.support.dashboard import sqlite_engine
from tests.support.dashboard_web import STAFF_PASSWORD, Browser, serving


def _attempt(base: str, name: str, password: str) -> tuple[int, dict, str]:
    """One login through the form, as a fresh browser; returns the raw answer."""
    browser = Browser(base)
    csrf = re.search(r'name="csrf" value="([^"]+)"', browser.request("/login")[2]).group(1)
    return browser.request("/login", {"username": name, "password": password, "csrf": csrf})


def _unlock(engine, *args: str):  # noqa: ANN001, ANN202
    return CliRunner().invoke(cli, ["user", "unlock", *args, "--db", str(engine.url)])


@pytest.fixture
def clock(monkeypatch):
    """The login's clock, moved by hand: ``clock.advance(seconds)``."""
    class Clock:
        now = utc_now()

        def advance(self, seconds: float) -> None:
            self.now += timedelta(seconds=seconds)

    moved = Clock()
    monkeypatch.setattr("dashboard.login.utc_now", lambda: moved.now)
    monkeypatch.setattr("dashboard.web.utc_now", lambda: moved.now)
    return moved


def test_wrong_passwords_lock_the_user_name_until_an_admin_unlocks_it(stored):
    engine, _ = stored
    with serving(engine) as base:
        for _ in range(throttle.ACCOUNT.limit - 1):
            status, headers, _ = _attempt(base, "nurse", "wrong password")
            assert (status, headers["location"]) == (303, "/login?failed=true")
        status, headers, page = _attempt(base, "nurse", "wrong password")
        assert status == 429 and headers["retry-after"] == "60"
        assert "Too many failed logins for this user name: try again in 1 minute" in page
        assert "sarco-dashboard user unlock NAME" in page
        status, _, page = _attempt(base, "nurse", STAFF_PASSWORD)  # the right one: refused too
        assert status == 429 and "Too many failed logins" in page
        assert _attempt(base, "viewer", STAFF_PASSWORD)[1]["location"] == "/"  # others may
    with serving(engine) as base:  # a restart keeps the lock (it is in the database)
        assert _attempt(base, "nurse", STAFF_PASSWORD)[0] == 429
        unlocked = _unlock(engine, "nurse")
        assert unlocked.exit_code == 0 and "user nurse: unlocked" in unlocked.stdout
        assert _attempt(base, "nurse", STAFF_PASSWORD)[1]["location"] == "/"


def test_each_failure_after_a_lock_doubles_it_and_a_success_forgets_them(stored, clock):
    engine, _ = stored
    with serving(engine) as base:
        for _ in range(throttle.ACCOUNT.limit):
            _attempt(base, "nurse", "wrong password")
        clock.advance(61)
        status, headers, page = _attempt(base, "nurse", "wrong password")
        assert (status, headers["retry-after"]) == (429, "120") and "2 minutes" in page
        clock.advance(119)
        assert _attempt(base, "nurse", STAFF_PASSWORD)[0] == 429
        clock.advance(2)
        assert _attempt(base, "nurse", STAFF_PASSWORD)[1]["location"] == "/"
        assert _attempt(base, "nurse", "wrong password")[1]["location"] == "/login?failed=true"


def test_guessing_many_names_from_one_address_locks_the_address(stored):
    engine, _ = stored
    with serving(engine) as base:
        for number in range(throttle.ADDRESS.limit - 1):
            assert _attempt(base, f"guess{number}", "wrong password")[0] == 303
        status, _, page = _attempt(base, "guess-last", "wrong password")
        assert status == 429 and "from this address (127.0.0.1)" in page
        assert "sarco-dashboard user unlock --address 127.0.0.1" in page
        assert _attempt(base, "nurse", STAFF_PASSWORD)[0] == 429
        assert _unlock(engine, "--address", "127.0.0.1").exit_code == 0
        assert _attempt(base, "nurse", STAFF_PASSWORD)[1]["location"] == "/"


def test_the_failed_login_log_names_accounts_but_never_other_typed_text(stored, caplog):
    engine, _ = stored
    typed = "correct-horse-typed-into-the-name-field"
    with serving(engine) as base, caplog.at_level(logging.WARNING, "dashboard.web"):
        _attempt(base, typed, "wrong password")
        _attempt(base, "nurse", "wrong password")
    assert typed not in caplog.text
    assert "failed login for an unknown user name from 127.0.0.1" in caplog.text
    assert "failed login for user nurse from 127.0.0.1" in caplog.text
    with Session(engine) as session:  # stored only as a hash, too
        assert session.get(LoginThrottle, ("account", throttle.account(typed)))


def test_invalid_api_keys_lock_the_address_even_for_a_valid_key(stored):
    engine, _ = stored
    with Session(engine) as session:
        key = auth.create_api_key(session, "registry")
        session.commit()
    with serving(engine) as base:
        client = Browser(base)
        for _ in range(throttle.API_ADDRESS.limit - 1):
            assert client.request("/api/v1/summary", headers={"X-API-Key": "sdk_guess"})[0] == 401
        status, headers, body = client.request("/api/v1/summary",
                                               headers={"X-API-Key": "sdk_guess"})
        assert status == 429 and "too many invalid API keys" in body and headers["retry-after"]
        assert client.request("/api/v1/summary", headers={"X-API-Key": key})[0] == 429
        assert _unlock(engine, "--address", "127.0.0.1").exit_code == 0
        assert client.request("/api/v1/summary", headers={"X-API-Key": key})[0] == 200


def test_lock_durations_grow_to_an_hour_and_old_failures_are_forgotten(tmp_path):
    assert [throttle.lock_duration(failures, 5) for failures in (5, 6, 7)] == [
        timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    assert throttle.lock_duration(10**6, 5) == throttle.LONGEST_LOCK
    engine = sqlite_engine(tmp_path)
    now = utc_now()
    with Session(engine) as session:
        for _ in range(4):
            assert throttle.record_failure(session, throttle.ACCOUNT, "x", now) is None
        throttle.record_failure(session, throttle.ADDRESS, "10.0.0.9", now)
        later = now + throttle.FORGET_AFTER + timedelta(seconds=1)
        assert throttle.record_failure(session, throttle.ACCOUNT, "x", later) is None  # 1 again
        session.commit()
        assert session.get(LoginThrottle, ("account", "x")).failures == 1
        assert session.get(LoginThrottle, ("address", "10.0.0.9")) is None  # its row is gone


def test_unlock_needs_a_name_or_an_address(stored):
    engine, _ = stored
    refused = _unlock(engine)
    assert refused.exit_code == 2 and "give a user NAME, --address IP, or both" in refused.stderr
    nothing = _unlock(engine, "nobody")
    assert nothing.exit_code == 0 and "user nobody: had no failed logins" in nothing.stdout
