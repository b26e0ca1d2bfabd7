"""End to end in a real headless Chromium (Playwright, Debian's /usr/bin/chromium): Mosquitto,
`sarco-dashboard serve` and `sarco-dashboard simulate` as real processes; a staff member logs
in, sees the simulated fleet arrive with its health (a hot device flagged), filters by site and
exports the referral list.

Set SARCO_UPDATE_SCREENSHOT=1 to refresh docs/dashboard-screenshot.png from this run."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy.orm import Session

from dashboard import auth
from dashboard.db import make_engine, migrate
from dashboard.queries import HealthRules
from dashboard.simulate import plan_fleet
from testkit.mosquitto import requires_mosquitto
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, sync_playwright_or_skip
from tests.support.dashboard import (
    PASSWORD,
    REPO,
    SIMULATOR_USER,
    DashboardProcess,
    fleet_broker,
)
from tests.support.dashboard_web import api_get

DEVICES, RATE, DURATION_S, SEED = 12, 2, 4, 5  # 2 sites of 6 devices
STAFF_PASSWORD = "a long staff password"


@requires_mosquitto
def test_staff_log_in_watch_the_fleet_filter_and_export(tmp_path):
    sync_playwright = sync_playwright_or_skip()
    db_url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    with Session(engine) as session:  # (the CLI's `user add` / `apikey create` do the same)
        auth.add_user(session, "nurse", "staff", STAFF_PASSWORD)
        api_key = auth.create_api_key(session, "registry")
        session.commit()
    engine.dispose()
    broker_password = tmp_path / "broker-password"
    broker_password.write_text(PASSWORD + "\n")

    with fleet_broker(tmp_path / "broker") as broker, \
            DashboardProcess(tmp_path, broker, db_url) as dashboard, \
            sync_playwright() as playwright:
        simulator = subprocess.Popen(
            [sys.executable, "-m", "dashboard.cli", "simulate", "--broker", broker.url,
             "--devices", str(DEVICES), "--rate", str(RATE), "--duration", str(DURATION_S),
             "--seed", str(SEED), "--duplicates", "0.1", "--username", SIMULATOR_USER,
             "--password-file", str(broker_password)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900},
                                accept_downloads=True)
        page.goto(dashboard.url + "/")
        assert page.url.endswith("/login")
        page.fill("input[name=username]", "nurse")
        page.fill("input[name=password]", STAFF_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(dashboard.url + "/")

        # live: the fleet shows up while the simulator is still publishing
        deadline = time.monotonic() + 20
        while page.locator(".device.online").count() < DEVICES:
            assert time.monotonic() < deadline, "the simulated devices never showed online"
            page.reload()
        assert page.locator(".site h3").all_inner_texts() == ["site-01", "site-02"]
        shot = (REPO / "docs" / "dashboard-screenshot.png"
                if os.environ.get("SARCO_UPDATE_SCREENSHOT") == "1"
                else tmp_path / "dashboard-screenshot.png")
        page.screenshot(path=str(shot), full_page=False)
        # the device health panel: the plan's hot device is flagged with its temperature
        hot = [d.device for d in plan_fleet(DEVICES, SEED) if d.temp_c >= HealthRules().max_temp_c]
        assert hot, "the plan of this fleet should have a hot device"
        for device in hot:
            row = page.locator(f'#health tr[data-device="{device}"]')
            assert re.search(r"hot \(\d+ °C\)", row.inner_text())
            assert "warn" in row.get_attribute("class")

        out, errors = simulator.communicate(timeout=120)
        assert simulator.returncode == 0, errors
        published = int(re.fullmatch(r"published (\d+) results\n", out).group(1))
        assert published == DEVICES * RATE * DURATION_S
        deadline = time.monotonic() + 20
        while api_get(dashboard.url, "/api/v1/summary", api_key)["results_total"] < published:
            assert time.monotonic() < deadline, "not every published result was stored"
            time.sleep(0.2)
        assert api_get(dashboard.url, "/api/v1/summary", api_key)["results_total"] == published
        page.reload()
        assert page.inner_text("#results-total") == str(published)

        page.select_option("#site", "site-02")
        page.click("#filters button[type=submit]")
        page.wait_for_url(re.compile(r".*site=site-02.*"))
        sites_in_daily = page.locator("#daily tbody tr td:nth-child(2)").all_inner_texts()
        assert sites_in_daily and set(sites_in_daily) == {"site-02"}
        assert page.locator(".site h3").all_inner_texts() == ["site-02"]

        with page.expect_download() as download:
            page.click("#export-referrals")
        exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        expected = api_get(dashboard.url, "/api/v1/referrals?site=site-02", api_key)
        assert sorted(r["result_id"] for r in exported) == sorted(r["result_id"]
                                                                  for r in expected)
        assert {r["site"] for r in exported} == {"site-02"}
        browser.close()
    assert "Traceback" not in dashboard.log
