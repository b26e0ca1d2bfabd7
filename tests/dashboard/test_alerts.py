"""Alerts in process: each rule opens one alert per subject and resolves it when the condition
clears; a bad row does not stop the others; notifications reach a real HTTP receiver (and a
real SMTP server) once, signed, with nothing about a screened person, retried with backoff
and given up after the bound; the page and the API show and change them; the settings file
refuses what it does not know. Two dashboards evaluating at once on PostgreSQL open one
alert."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from dashboard import alert_rules, alerts, auth
from dashboard.alert_service import AlertService
from dashboard.alert_settings import AlertSettingsError, load_alert_settings
from dashboard.cli import app as cli
from dashboard.db import make_engine, migrate, utc_now
from dashboard.models import Alert, AlertDelivery, ResultCount
from dashboard.store import Batch, FleetStore, Received
from testkit.mosquitto import free_port
from tests.support.alerts import WebhookReceiver, alert_settings_file
from tests.support.dashboard import (
    health_figures,
    sqlite_engine,
    status_payload,
    update_outcome,
)
from tests.support.dashboard_web import STAFF_PASSWORD, Browser, serving
from tests.support.postgres import postgres_or_skip

SITE = "site-01"


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


_STATUS_ORDER = itertools.count()


def _status(engine, device: str, state: str, received_at: datetime,  # noqa: ANN001
            will: bool = False, **extras: object) -> None:
    """A status as the store gets it; the device clock a touch later each time, so a status
    always counts as newer than the last (the store drops older ones)."""
    at = received_at.replace(tzinfo=timezone.utc).timestamp() + next(_STATUS_ORDER) / 1000
    payload = status_payload(SITE, device, state, None if will else at, **extras)
    FleetStore(engine, "w1").write(Batch(statuses=[Received(payload, received_at)]),
                                   received_at)


def _alerts(engine) -> list[Alert]:  # noqa: ANN001
    with Session(engine) as session:
        return session.scalars(select(Alert).order_by(Alert.id)).all()


def _deliveries(engine) -> list[AlertDelivery]:  # noqa: ANN001
    with Session(engine) as session:
        return session.scalars(select(AlertDelivery).order_by(AlertDelivery.id)).all()


@pytest.fixture
def engine(tmp_path):
    return sqlite_engine(tmp_path)


def _troubled_fleet(engine, now: datetime) -> None:  # noqa: ANN001
    """One device per rule, and two that are fine: one switched off properly long ago."""
    _status(engine, "us-001", "online", now, health=health_figures(temp_max_c=91.0))
    _status(engine, "us-002", "online", now, queued=50)
    _status(engine, "us-003", "online", now, update=update_outcome("rolled_back"))
    _status(engine, "us-004", "online", now - timedelta(minutes=40))
    _status(engine, "us-004", "offline", now - timedelta(minutes=39), will=True)
    _status(engine, "us-005", "online", now - timedelta(minutes=40))
    _status(engine, "us-005", "offline", now - timedelta(minutes=39))  # a goodbye
    _status(engine, "us-006", "online", now, queued=0, health=health_figures(),
            update=update_outcome("installed"))


def test_each_rule_opens_one_alert_per_subject_and_resolves_when_it_clears(engine):
    clock = Clock()
    _troubled_fleet(engine, clock.now)
    service = AlertService(engine, load_alert_settings(), clock)
    opened = service.evaluate().opened
    got = {(a.rule, a.device): a for a in _alerts(engine)}
    assert set(got) == {("temperature_high", "us-001"), ("backlog_high", "us-002"),
                        ("update_failed", "us-003"), ("device_offline", "us-004")}
    assert len(opened) == 4 and all(a.state == "open" for a in got.values())
    assert got[("temperature_high", "us-001")].summary == \
        "hottest sensor 91 °C (limit 85 °C)"
    # a time, not "no contact for 40 min", which would be wrong as soon as it was read
    assert got[("device_offline", "us-004")].summary == \
        f"connection lost; last contact {clock.now - timedelta(minutes=40):%Y-%m-%d %H:%M} UTC"
    assert _deliveries(engine) == []  # no channel configured: shown on the page only

    clock.advance(30)
    assert service.evaluate().opened == []  # still firing: no second alert
    assert len(_alerts(engine)) == 4

    # the offline device is back, the hot one is in the margin, then cool
    _status(engine, "us-004", "online", clock.now)
    _status(engine, "us-001", "online", clock.now, health=health_figures(temp_max_c=83.5))
    changes = service.evaluate()
    resolved = {a.device: a for a in _alerts(engine) if a.state == "resolved"}
    assert set(resolved) == {"us-004"} and changes.resolved == [resolved["us-004"].id]
    assert (resolved["us-004"].resolved_by, resolved["us-004"].resolved_at) == \
        ("automatic", clock.now)
    clock.advance(1)
    _status(engine, "us-001", "online", clock.now, health=health_figures(temp_max_c=80.0))
    service.evaluate()
    assert {a.device for a in _alerts(engine) if a.state == "resolved"} == {"us-001", "us-004"}

    # the same device losing its connection again is a new alert
    _status(engine, "us-004", "offline", clock.now, will=True)
    clock.advance(16 * 60)
    service.evaluate()
    offline = [a for a in _alerts(engine) if a.rule == "device_offline"]
    assert [a.state for a in offline] == ["resolved", "open"]


def test_a_row_that_breaks_a_rule_is_skipped_and_the_rest_are_evaluated(engine, caplog):
    clock = Clock()
    _troubled_fleet(engine, clock.now)
    with engine.begin() as connection:  # SQLite keeps whatever it is given
        connection.execute(text("UPDATE devices SET queued_results = 'lots' "
                                "WHERE device = 'us-006'"))
    AlertService(engine, load_alert_settings(), clock).run_once()
    assert len(_alerts(engine)) == 4
    assert "alert rule backlog_high failed on device site-01/us-006" in caplog.text


def test_disabled_rules_and_thresholds_come_from_the_file(engine, tmp_path):
    clock = Clock()
    _troubled_fleet(engine, clock.now)
    settings = load_alert_settings(alert_settings_file(
        tmp_path, max_temp_c=95, offline_minutes=60, disabled=["update_failed"]))
    AlertService(engine, settings, clock).evaluate()
    assert [a.rule for a in _alerts(engine)] == ["backlog_high"]


def _counts(engine, day: date, positive: int, negative: int, site: str = SITE,  # noqa: ANN001
            device: str = "us-001") -> None:
    with Session(engine) as session:
        session.add(ResultCount(site=site, device=device, day=day, model_name="m",
                                model_sha256="ab" * 32, results=positive + negative,
                                positive=positive, negative=negative, rescans=0,
                                skipped_frames=0, processed_frames=0))
        session.commit()


def test_the_positive_rate_fires_outside_its_band_only_with_enough_results(engine):
    clock = Clock()
    today = clock.now.date()
    for days_ago in range(1, 29):  # the usual: 20 % of 15 a day
        _counts(engine, today - timedelta(days=days_ago), 3, 12)
    _counts(engine, today - timedelta(days=40), 300, 0)  # before the baseline: ignored
    service = AlertService(engine, load_alert_settings(), clock)
    _counts(engine, today, 12, 8)  # 60 % but of 20 screened: too few to say
    service.evaluate()
    assert _alerts(engine) == []
    _counts(engine, today, 12, 8, site="site-02")  # another site: no baseline there
    _counts(engine, today, 6, 4, device="us-002")  # now 18 of 30: 60 %
    service.evaluate()
    [alert] = _alerts(engine)
    assert (alert.rule, alert.subject, alert.device) == ("positive_rate_unusual", SITE, None)
    assert alert.summary.startswith("positive rate 60% of 30 screened today; usual 20% (band ")
    assert alert.value == 0.6 and 0.2 < alert.threshold < 0.6
    _counts(engine, today, 0, 70, device="us-003")  # the day settles: 18 of 100, 18 %
    service.evaluate()
    assert _alerts(engine)[0].resolved_by == "automatic"


def test_a_webhook_gets_each_notification_once_signed_and_without_patient_data(engine,
                                                                                tmp_path):
    clock = Clock()
    _status(engine, "us-002", "online", clock.now, queued=50)
    secret = tmp_path / "webhook-secret"
    secret.write_text("s3cret-for-signing\n")
    with WebhookReceiver() as hook:
        path = alert_settings_file(tmp_path, hook.url)
        path.write_text(path.read_text() + f'secret_file = "{secret}"\n')
        service = AlertService(engine, load_alert_settings(path), clock)
        service.run_once()
        service.run_once()
        assert len(hook.received) == 1
        [request] = hook.received
        body = request.json
        assert body["event"] == "opened"
        assert set(body) == {"event", "idempotency_key", "sent_at", "alert"}
        assert set(body["alert"]) == {
            "id", "rule", "title", "site", "device", "state", "summary", "value",
            "threshold", "opened_at", "acknowledged_at", "acknowledged_by", "resolved_at",
            "resolved_by"}
        assert (body["alert"]["rule"], body["alert"]["device"], body["alert"]["value"]) == \
            ("backlog_high", "us-002", 50)
        assert "SCR-" not in request.body.decode()
        assert request.headers["Idempotency-Key"] == body["idempotency_key"]
        expected = hmac.new(b"s3cret-for-signing", request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Sarco-Signature"] == f"sha256={expected}"

        _status(engine, "us-002", "online", clock.now + timedelta(seconds=1), queued=0)
        service.run_once()
        assert [r.json["event"] for r in hook.received] == ["opened", "resolved"]
        assert hook.received[1].json["alert"]["state"] == "resolved"
    assert [(d.event, d.state, d.attempts) for d in _deliveries(engine)] == [
        ("opened", "delivered", 1), ("resolved", "delivered", 1)]


def test_a_failing_receiver_is_retried_with_backoff_then_given_up_and_shown(engine, tmp_path):
    clock = Clock()
    _status(engine, "us-002", "online", clock.now, queued=50)
    with WebhookReceiver(always_fail=True) as hook:
        path = alert_settings_file(tmp_path, hook.url, delivery={
            "max_attempts": 3, "first_retry_s": 10, "max_retry_s": 15})
        service = AlertService(engine, load_alert_settings(path), clock)
        service.run_once()
        [delivery] = _deliveries(engine)
        assert (delivery.state, delivery.attempts, delivery.last_error) == \
            ("pending", 1, "HTTP 500 Internal Server Error")
        assert delivery.next_attempt_at == clock.now + timedelta(seconds=10)
        clock.advance(9)
        service.run_once()
        assert len(hook.received) == 1  # not yet due
        clock.advance(1)
        service.run_once()
        assert _deliveries(engine)[0].next_attempt_at == clock.now + timedelta(seconds=15)
        clock.advance(15)
        service.run_once()
        clock.advance(3600)
        service.run_once()
    assert len(hook.received) == 3
    assert {r.headers["Idempotency-Key"] for r in hook.received} == {delivery.idempotency_key}
    [delivery] = _deliveries(engine)
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    assert delivery.last_error == "gave up after 3 attempts: HTTP 500 Internal Server Error"


def test_an_unreachable_receiver_is_an_error_on_the_row_not_a_dead_loop(engine, tmp_path):
    clock = Clock()
    _status(engine, "us-002", "online", clock.now, queued=50)
    url = f"http://127.0.0.1:{free_port()}/hook?token=do-not-show"
    service = AlertService(engine, load_alert_settings(None, url), clock)
    service.start()
    try:
        deadline = time.monotonic() + 10
        while not _deliveries(engine) or _deliveries(engine)[0].attempts == 0:
            assert time.monotonic() < deadline, "no delivery was attempted"
            time.sleep(0.05)
    finally:
        service.stop()
    [delivery] = _deliveries(engine)
    assert delivery.state == "pending" and delivery.last_error.startswith("127.0.0.1: ")
    assert "token" not in delivery.last_error


def test_email_goes_through_a_real_smtp_server(engine, tmp_path):
    pytest.importorskip("aiosmtpd", reason="needs aiosmtpd (the dev extra)")
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    got = []

    class Keep(Message):
        def handle_message(self, message) -> None:  # noqa: ANN001
            got.append(message)

    port = free_port()
    smtp = Controller(Keep(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        path = tmp_path / "alerts.toml"
        path.write_text(f'[email]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\n'
                        'security = "none"\nsender = "sarco@example.org"\n'
                        'recipients = ["ops@example.org", "lead@example.org"]\n')
        clock = Clock()
        _status(engine, "us-003", "online", clock.now, update=update_outcome("failed"))
        AlertService(engine, load_alert_settings(path), clock).run_once()
    finally:
        smtp.stop()
    [message] = got
    [delivery] = _deliveries(engine)
    assert message["Subject"] == "[sarco] opened: Update failed at site-01/us-003"
    assert message["To"] == "ops@example.org, lead@example.org"
    assert message["Message-ID"] == f"<{delivery.idempotency_key}@sarco-dashboard>"
    assert "model update 2025.06-1 failed" in message.get_payload()
    assert delivery.state == "delivered"


def test_staff_acknowledge_and_resolve_on_the_page_read_only_users_cannot(engine):
    clock = Clock()
    _troubled_fleet(engine, clock.now)
    AlertService(engine, load_alert_settings(None, "http://127.0.0.1:9/hook"),
                 clock).evaluate()
    with Session(engine) as session:
        auth.add_user(session, "nurse", "staff", STAFF_PASSWORD)
        auth.add_user(session, "viewer", "readonly", STAFF_PASSWORD)
        api_key = auth.create_api_key(session, "monitor")
        session.commit()
    offline = next(a for a in _alerts(engine) if a.rule == "device_offline")
    with serving(engine) as base:
        viewer = Browser(base)
        viewer.login("viewer", STAFF_PASSWORD)
        status, _, page = viewer.request("/alerts")
        assert status == 200 and page.count('class="alert-item open"') == 4
        assert "Acknowledge</button>" not in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        assert viewer.request(f"/alerts/{offline.id}/acknowledge", {"csrf": csrf})[0] == 403

        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        _, _, page = nurse.request("/alerts?rule=device_offline")
        assert page.count('class="alert-item') == 1 and "site-01/us-004" in page
        assert "webhook (opened): queued" in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        assert nurse.request(f"/alerts/{offline.id}/acknowledge", {"csrf": "forged"})[0] == 403
        assert nurse.request(f"/alerts/{offline.id}/acknowledge", {"csrf": csrf})[0] == 303
        assert nurse.request("/alerts/999999/resolve", {"csrf": csrf})[0] == 404
        _, _, page = nurse.request("/alerts?state=acknowledged")
        assert "acknowledged by nurse" in page and "site-01/us-004" in page
        assert nurse.request(f"/alerts/{offline.id}/resolve", {"csrf": csrf})[0] == 303
        _, _, page = nurse.request("/alerts")
        assert "site-01/us-004" not in page  # active only by default

        status, _, body = nurse.request("/api/v1/alerts?state=all",
                                        headers={"X-API-Key": api_key})
    listed = {a["device"]: a for a in json.loads(body)}
    assert status == 200 and len(listed) == 4
    done = listed["us-004"]
    assert (done["state"], done["acknowledged_by"], done["resolved_by"]) == \
        ("resolved", "nurse", "nurse")
    # the resolution goes to the channel that was told of the alert
    assert [(d["event"], d["state"]) for d in done["deliveries"]] == [
        ("opened", "pending"), ("resolved", "pending")]


def test_the_settings_file_refuses_unknown_keys_bad_urls_and_missing_secrets(tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_text("[rules]\noffline_minute = 5\n")
    with pytest.raises(AlertSettingsError, match=r"rules\.offline_minute: Extra inputs"):
        load_alert_settings(path)
    path.write_text('[rules]\ndisabled = ["temperature"]\n')
    with pytest.raises(AlertSettingsError, match=r"rules\.disabled\.0: Input should be"):
        load_alert_settings(path)
    with pytest.raises(AlertSettingsError, match="is not an http:// or https:// URL"):
        load_alert_settings(None, "ftp://example.org/hook")
    path.write_text('[webhook]\nurl = "https://example.org/hook"\n'
                    f'secret_file = "{tmp_path / "missing"}"\n')
    with pytest.raises(AlertSettingsError, match="cannot be read"):
        load_alert_settings(path)
    outcome = CliRunner().invoke(cli, ["serve", "--broker", "mqtt://127.0.0.1:1",
                                       "--alerts", str(path)])
    assert outcome.exit_code == 2
    assert "webhook.secret_file" in outcome.output and "cannot be read" in " ".join(
        outcome.output.split())


def test_two_dashboards_evaluating_at_once_open_each_alert_once_on_postgresql():
    server = postgres_or_skip()
    engine = make_engine(server.url)
    try:
        migrate(engine)
        now = utc_now()
        _troubled_fleet(engine, now)
        settings = load_alert_settings(None, "http://127.0.0.1:9/hook")
        with Session(engine) as first, Session(engine) as second:
            findings = alert_rules.evaluate(first, now, settings)
            assert len(alerts.apply_findings(first, findings, now, settings.channels).opened) == 4
            outcome = {}

            def evaluate_too() -> None:  # waits on the first's uncommitted rows
                outcome["changes"] = alerts.apply_findings(second, findings, now,
                                                           settings.channels)
                second.commit()

            other = threading.Thread(target=evaluate_too)
            other.start()
            time.sleep(0.5)
            first.commit()
            other.join(30)
        assert outcome["changes"].opened == []
        assert len(_alerts(engine)) == 4 and len(_deliveries(engine)) == 4
    finally:
        engine.dispose()
        server.stop()


def test_an_offline_devices_temperature_and_backlog_alerts_stay_open_and_say_why(engine):
    """Going offline does not clear a temperature or a backlog: the figures are unknown, so
    the alert stays open (it used to be resolved "automatically (condition cleared)"), the
    page says so, and the device's next status decides."""
    clock = Clock()
    _troubled_fleet(engine, clock.now)
    service = AlertService(engine, load_alert_settings(), clock)
    service.evaluate()
    clock.advance(30)
    _status(engine, "us-001", "offline", clock.now, will=True)  # the hot one: power cut
    _status(engine, "us-002", "offline", clock.now)  # the backlog: switched off
    assert service.evaluate().resolved == []
    assert {a.device: a.state for a in _alerts(engine)
            if a.rule in ("temperature_high", "backlog_high")} == {"us-001": "open",
                                                                  "us-002": "open"}
    with Session(engine) as session:
        auth.add_user(session, "nurse", "staff", STAFF_PASSWORD)
        session.commit()
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        page = nurse.request("/alerts?tz=UTC")[2]
        summaries = dict(re.findall(
            r'data-rule="(temperature_high|backlog_high)">.*?<p class="alert-summary">(.*?)</p>',
            page, re.DOTALL))
        since = f"{clock.now:%Y-%m-%d %H:%M}"
        assert summaries == {
            "temperature_high": "hottest sensor 91 °C (limit 85 °C); the device has been "
                                f"offline since {since}: figures unknown until it reports "
                                "again",
            "backlog_high": "50 results waiting on the device (limit 20); the device has "
                            f"been offline since {since}: figures unknown until it reports "
                            "again"}
        # back: its own figures decide, and the page says what cleared
        clock.advance(60)
        _status(engine, "us-002", "online", clock.now, queued=3)
        _status(engine, "us-004", "online", clock.now)
        assert len(service.evaluate().resolved) == 2
        page = nurse.request("/alerts?state=resolved")[2]
        assert "resolved automatically (the backlog is back down)" in page
        assert "resolved automatically (the device is back online)" in page
        assert "condition cleared" not in page
        # the offline alert's text is no frozen "no contact for 40 min"
        assert re.search(r"connection lost; no contact since \d{4}-\d\d-\d\d \d\d:\d\d<", page)
