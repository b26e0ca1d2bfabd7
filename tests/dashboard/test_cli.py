"""`sarco-dashboard` as a user meets it: clear errors instead of tracebacks, --no-auth only on
loopback and loudly logged, accounts and keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from dashboard import auth
from dashboard.cli import app
from dashboard.db import make_engine
from dashboard.models import ApiKey, User
from testkit.mosquitto import free_port, requires_mosquitto
from tests.support.dashboard import (
    DASHBOARD_USER,
    PASSWORD,
    REPO,
    DashboardProcess,
    SubscriptionRefusingBroker,
    fleet_broker,
)


def test_usage_errors_are_explained_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # Rich wraps messages at the terminal width
    runner = CliRunner()

    def run(*args: str):  # noqa: ANN202 - in-process: each case costs no interpreter start
        return runner.invoke(app, list(args))

    db = f"sqlite:///{tmp_path / 'd.db'}"
    bad_url = run("simulate", "--broker", "http://example.org", "--duration", "1")
    assert bad_url.exit_code == 2 and "mqtt://HOST:PORT" in bad_url.stderr
    open_port = run("serve", "--broker", "mqtt://127.0.0.1:1", "--no-auth", "--host",
                    "0.0.0.0", "--db", db)
    assert open_port.exit_code == 2 and "local trials only" in open_port.stderr
    short = tmp_path / "short"
    short.write_text("short\n")
    weak = run("user", "add", "nurse", "--password-file", str(short), "--db", db)
    assert weak.exit_code == 2 and "at least 10 characters" in weak.stderr
    unmigrated = run("ingest", "--broker", "mqtt://127.0.0.1:1", "--worker", "w2", "--db",
                     f"sqlite:///{tmp_path / 'new.db'}")
    assert unmigrated.exit_code == 1 and "sarco-dashboard migrate" in unmigrated.stderr
    nowhere = run("simulate", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--devices", "1",
                  "--duration", "1")
    assert nowhere.exit_code == 1 and "cannot reach the broker" in nowhere.stderr
    for result in (bad_url, open_port, weak, unmigrated, nowhere):
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_accounts_and_keys_are_stored_as_hashes_only(tmp_path):
    db = f"sqlite:///{tmp_path / 'd.db'}"
    password_file = tmp_path / "password"
    password_file.write_text("a long staff password\n")
    runner = CliRunner()
    added = runner.invoke(app, ["user", "add", "nurse", "--role", "readonly",
                                "--password-file", str(password_file), "--db", db])
    assert added.exit_code == 0, added.stderr
    again = runner.invoke(app, ["user", "add", "nurse", "--password-file", str(password_file),
                                "--db", db])
    assert again.exit_code == 2 and "exists already" in again.stderr
    created = runner.invoke(app, ["apikey", "create", "registry", "--db", db])
    key = created.stdout.strip()
    assert created.exit_code == 0 and key.startswith("sdk_")
    engine = make_engine(db)
    with Session(engine) as session:
        user = session.scalar(select(User))
        stored_key = session.scalar(select(ApiKey))
        assert (user.name, user.role) == ("nurse", "readonly")
        assert "a long staff password" not in user.password_hash
        assert key not in stored_key.key_sha256
        assert auth.api_key_name(session, key) == "registry"
    revoked = runner.invoke(app, ["apikey", "revoke", "registry", "--db", db])
    assert revoked.exit_code == 0
    with Session(engine) as session:
        assert auth.api_key_name(session, key) is None


def test_accounts_and_keys_are_listed_removed_and_reset(tmp_path):
    db = f"sqlite:///{tmp_path / 'd.db'}"
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("a long staff password\n")
    second.write_text("another long password\n")
    runner = CliRunner()

    def run(*args: str):  # noqa: ANN202
        return runner.invoke(app, [*args, "--db", db])

    for name, role in (("boss", "admin"), ("nurse", "staff")):
        assert run("user", "add", name, "--role", role, "--password-file", str(first)
                   ).exit_code == 0
    listed = run("user", "list")
    assert [line.split("\t")[:2] for line in listed.stdout.splitlines()] == [
        ["boss", "admin"], ["nurse", "staff"]]
    reset = run("user", "reset-password", "nurse", "--password-file", str(second))
    assert reset.exit_code == 0, reset.stderr
    with Session(make_engine(db)) as session:
        assert auth.authenticate(session, "nurse", "another long password") is not None
    short = tmp_path / "short"
    short.write_text("short\n")
    assert run("user", "reset-password", "nurse", "--password-file", str(short)).exit_code == 2
    unknown = run("user", "reset-password", "nobody", "--password-file", str(second))
    assert unknown.exit_code == 1 and "no user named 'nobody'" in unknown.stderr
    last_admin = run("user", "remove", "boss")
    assert last_admin.exit_code == 1 and "last admin" in last_admin.stderr
    assert run("user", "remove", "nurse").exit_code == 0
    with Session(make_engine(db)) as session:
        assert [u.name for u in auth.list_users(session)] == ["boss"]
    assert run("apikey", "list").stdout == ""
    run("apikey", "create", "registry")
    run("apikey", "create", "old")
    run("apikey", "revoke", "old")
    keys = [line.split("\t") for line in run("apikey", "list").stdout.splitlines()]
    assert [(key[0], key[2].split()[0]) for key in keys] == [("registry", "active"),
                                                             ("old", "revoked")]


@requires_mosquitto
def test_no_auth_is_logged_loudly_and_serves_without_keys(tmp_path):
    with fleet_broker(tmp_path / "broker") as broker:
        refused = CliRunner().invoke(app, ["simulate", "--broker", broker.url, "--devices", "1",
                                           "--duration", "1", "--username", DASHBOARD_USER])
        assert refused.exit_code == 1 and "refused" in refused.stderr  # no password given
        with DashboardProcess(tmp_path, broker, f"sqlite:///{tmp_path / 'd.db'}",
                              "--no-auth") as dashboard:
            with urllib.request.urlopen(dashboard.url + "/api/v1/summary", timeout=10) as r:
                summary = json.loads(r.read())
    assert summary["results_total"] == 0
    assert "AUTHENTICATION IS OFF" in dashboard.log
    # a log file or journald gets plain lines, not lines padded to a console's width
    assert max(len(line) for line in dashboard.log.splitlines()) < 400


@requires_mosquitto
def test_serve_exits_1_when_the_broker_refuses_the_subscription(tmp_path):
    password_file = tmp_path / "broker-password"
    password_file.write_text(PASSWORD + "\n")
    with SubscriptionRefusingBroker(tmp_path / "broker") as broker:
        served = subprocess.run(
            [sys.executable, "-m", "dashboard.cli", "serve", "--broker", broker.url,
             "--db", f"sqlite:///{tmp_path / 'd.db'}", "--port", str(free_port()),
             "--username", DASHBOARD_USER, "--password-file", str(password_file),
             "--worker", "web-1"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
            env={**os.environ, "COLUMNS": "200"})
    assert served.returncode == 1, served.stderr
    assert "refused the subscription (Not authorized)" in served.stderr
    assert "ACL must let user dashboard subscribe to sarco/v1/#" in served.stderr
    assert "Traceback" not in served.stderr
