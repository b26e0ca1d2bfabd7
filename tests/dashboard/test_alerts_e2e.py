"""Alerts end to end with real processes: Mosquitto, `sarco-dashboard serve` (its alert loop),
`sarco-dashboard simulate`, a real webhook receiver and headless Chromium.

* A device made to go offline in a simulated fleet run is ONE alert, delivered ONCE to the
  webhook, shown and acknowledged on /alerts, at desktop and at phone width; the rest of the
  fleet saying goodbye at the end of the run is no alert.
* A delivery that failed is retried by the next `serve` after a restart, and arrives once.

Set SARCO_UPDATE_SCREENSHOT=1 to refresh docs/alerts-1400x900.png and docs/alerts-390x844.png.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard import auth
from dashboard.db import make_engine, migrate
from dashboard.models import Alert, AlertDelivery
from dashboard.simulate import TROUBLE_SHARES, plan_fleet
from sarco_core.wire import schema
from testkit.mosquitto import requires_mosquitto
from tests.support.alerts import WebhookReceiver, alert_settings_file
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, sync_playwright_or_skip
from tests.support.dashboard import (
    PASSWORD,
    REPO,
    SIMULATOR_USER,
    DashboardProcess,
    RawPublisher,
    encode,
    fleet_broker,
    status_payload,
)

STAFF_PASSWORD = "a long staff password"
DEVICES, SEED, DURATION_S = 6, 5, 10
GONE, GONE_AFTER_S = "us-002", 2
OFFLINE_MINUTES = 0.05  # 3 s: the test's stand-in for the default 15 min
VIEWPORTS = {"desktop": (1400, 900), "phone": (390, 844)}


def _database(tmp_path) -> tuple[str, object]:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    engine = make_engine(url)
    migrate(engine)
    with Session(engine) as session:
        auth.add_user(session, "nurse", "staff", STAFF_PASSWORD)
        session.commit()
    return url, engine


def _rows(engine, model) -> list:  # noqa: ANN001
    with Session(engine) as session:
        return session.scalars(select(model).order_by(model.id)).all()


@pytest.mark.slow
@requires_mosquitto
@pytest.mark.parametrize("width", VIEWPORTS)
def test_a_device_gone_offline_is_one_alert_delivered_once_and_acknowledged(tmp_path, width):
    sync_playwright = sync_playwright_or_skip()
    fleet = plan_fleet(DEVICES, SEED)
    # this small fleet has none of the planned trouble: the offline device is the only alert
    assert all(round(share * DEVICES) == 0 for share in TROUBLE_SHARES.values())
    assert GONE in {d.device for d in fleet} and {d.site for d in fleet} == {"site-01"}
    db_url, engine = _database(tmp_path)
    broker_password = tmp_path / "broker-password"
    broker_password.write_text(PASSWORD + "\n")
    with WebhookReceiver() as hook, fleet_broker(tmp_path / "broker") as broker:
        settings = alert_settings_file(tmp_path, hook.url, offline_minutes=OFFLINE_MINUTES)
        with DashboardProcess(tmp_path, broker, db_url, "--alerts", str(settings)) as dashboard, \
                sync_playwright() as playwright:
            simulator = subprocess.Popen(
                [sys.executable, "-m", "dashboard.cli", "simulate", "--broker", broker.url,
                 "--devices", str(DEVICES), "--rate", "1", "--duration", str(DURATION_S),
                 "--seed", str(SEED), "--offline-after", f"{GONE}={GONE_AFTER_S}",
                 "--username", SIMULATOR_USER, "--password-file", str(broker_password)],
                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert hook.wait_for(1, 30), f"no webhook call:\n{dashboard.log}"
            [call] = hook.received
            assert call.answered == 204
            alert = call.json["alert"]
            assert (call.json["event"], alert["rule"], alert["site"], alert["device"]) == \
                ("opened", "device_offline", "site-01", GONE)

            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=CHROMIUM_ARGS)
            viewport_width, viewport_height = VIEWPORTS[width]
            page = browser.new_page(viewport={"width": viewport_width,
                                              "height": viewport_height},
                                    timezone_id="Pacific/Auckland")
            page.goto(dashboard.url + "/alerts")
            page.fill("input[name=username]", "nurse")
            page.fill("input[name=password]", STAFF_PASSWORD)
            page.click("button[type=submit]")
            page.goto(dashboard.url + "/alerts")
            item = page.locator(".alert-item")
            assert item.count() == 1
            text = item.inner_text()
            assert "Device offline · site-01/us-002" in text
            assert "webhook (opened): delivered" in text
            # how long, as the page is read, in the viewer's zone (named once)
            assert re.search(r"connection lost; no contact since \d{4}-\d\d-\d\d \d\d:\d\d "
                             r"\(\d+ (s|min) ago\)", text), text
            assert "Times in Pacific/Auckland, your browser's time zone" in page.inner_text(
                "#zone-note")
            assert page.text_content("#alert-count") == "1 unresolved"
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport_width
            button = item.locator("button.acknowledge")
            box = button.bounding_box()
            assert box and box["x"] + box["width"] <= viewport_width  # reachable, not clipped
            shot = (REPO / "docs" / f"alerts-{viewport_width}x{viewport_height}.png"
                    if os.environ.get("SARCO_UPDATE_SCREENSHOT") == "1"
                    else tmp_path / "alerts.png")
            page.screenshot(path=str(shot))
            button.click()
            page.wait_for_selector(".alert-item.acknowledged")
            assert re.search(r"acknowledged by nurse, \d{4}-\d\d-\d\d \d\d:\d\d",
                             page.locator(".alert-item").inner_text())
            assert page.locator("button.acknowledge").count() == 0
            browser.close()

            out, errors = simulator.communicate(timeout=120)
            assert simulator.returncode == 0, errors
            assert re.fullmatch(r"published \d+ results\n", out)
            assert "1 device(s) made to go offline" in " ".join(errors.split())
            # the others said goodbye: past the offline threshold, still nothing new
            time.sleep(OFFLINE_MINUTES * 60 + 2)
        assert "Traceback" not in dashboard.log
    [stored] = _rows(engine, Alert)
    assert (stored.rule, stored.device, stored.state, stored.acknowledged_by) == \
        ("device_offline", GONE, "acknowledged", "nurse")
    [delivery] = _rows(engine, AlertDelivery)
    assert (delivery.state, delivery.attempts) == ("delivered", 1)
    assert len(hook.received) == 1


@requires_mosquitto
def test_a_failed_delivery_is_retried_after_a_restart_and_arrives_once(tmp_path):
    db_url, engine = _database(tmp_path)
    with WebhookReceiver(fail_first=1) as hook, fleet_broker(tmp_path / "broker") as broker:
        # retried 6 s after the failure: the restart happens in between
        settings = alert_settings_file(tmp_path, hook.url, delivery={"first_retry_s": 6},
                                       offline_minutes=0.02)
        topic = schema.topic_for("site-01", "us-001", "status")
        will = encode("status", status_payload("site-01", "us-001", "offline", None))
        first_dir, second_dir = tmp_path / "first", tmp_path / "second"
        first_dir.mkdir()
        second_dir.mkdir()
        with DashboardProcess(first_dir, broker, db_url, "--alerts", str(settings)) as first:
            device = RawPublisher(broker, SIMULATOR_USER, will=(topic, will))
            device.publish(topic, encode("status", status_payload(
                "site-01", "us-001", "online", time.time())), retain=True)
            device.vanish()
            assert hook.wait_for(1, 30), f"no webhook call:\n{first.log}"
        [failed] = _rows(engine, AlertDelivery)
        assert (failed.state, failed.attempts, failed.last_error) == \
            ("pending", 1, "HTTP 500 Internal Server Error")

        with DashboardProcess(second_dir, broker, db_url, "--alerts", str(settings)) as second:
            assert hook.wait_for(2, 30), f"not retried after the restart:\n{second.log}"
            time.sleep(2)  # several more evaluations and delivery passes
        assert "Traceback" not in first.log + second.log
    assert [r.answered for r in hook.received] == [500, 204]
    assert len({r.headers["Idempotency-Key"] for r in hook.received}) == 1
    [delivered] = _rows(engine, AlertDelivery)
    assert (delivered.state, delivered.attempts) == ("delivered", 2)
    assert len(_rows(engine, Alert)) == 1
