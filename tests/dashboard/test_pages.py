"""Every staff page in a real headless Chromium at desktop (1400x900) and phone (390x844)
size, against `sarco-dashboard serve` with a real Mosquitto and a seeded month of a screening
program (tests/support/dashboard_program.py): each page renders, its key parts are visible and inside
the viewport, the body never scrolls sideways; and the main actions work: a referral marked,
given an outcome and a note, and un-marked; a command that a subscriber on the device's
topic receives; an account added, reset and removed; the trends counted in the browser's
time zone.

Set SARCO_UPDATE_SCREENSHOT=1 to refresh docs/dashboard-PAGE-WIDTH.png from this run."""

from __future__ import annotations

import os
import queue
import re
import threading
import time
import urllib.error
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session

from dashboard import alerts, auth, trends
from dashboard.db import make_engine, migrate, utc_now
from dashboard.store import Batch, FleetStore, Received
from sarco_core.wire import schema
from testkit.mosquitto import requires_mosquitto
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, sync_playwright_or_skip
from tests.support.dashboard import (
    PASSWORD,
    REPO,
    DashboardProcess,
    fleet_broker,
    health_figures,
    status_payload,
)
from tests.support.dashboard_program import OFFLINE, seed_program
from tests.support.dashboard_web import api_get

DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}
ZONE = "Europe/Berlin"
ADMIN, STAFF_PASSWORD = "lead", "a long admin password"
DEVICE = ("clinic-north", "us-001")  # the broker knows this device's user: it subscribes
# page name: (path, what must be visible and inside the viewport, charts drawn)
PAGES = {
    "fleet": ("/", ["header.top", "#results-total", "#fleet .site", "#referrals",
                    "#referrals .mark"], 0),
    "trends": ("/trends", ["#trend-filters button", "#zone-note",
                           "figure[data-chart=screened] canvas"], 4),
    "site": ("/sites/clinic-north", ["#site-devices-online", "#site-devices .device",
                                     "figure[data-chart=positive_rate] canvas",
                                     "figure[data-chart=histogram-echo_intensity] canvas",
                                     "#measurement-table"], 7),
    "device": (f"/devices/{DEVICE[0]}/{DEVICE[1]}",
               ["#device-facts", "figure[data-chart=temp_max_c] canvas",
                "#start-session button", "#update-model input[name=url]", "#echo-caveat"], 3),
    "referrals": ("/referrals", ["#referral-search button", "#referral-list .mark",
                                 "#next-page"], 0),
    "users": ("/users", ["#users .reset-form button", "#users .remove-form button",
                         "#add-user button", "#api-keys"], 0),
}
SCREENSHOTS = REPO / "docs"
# a part further down a page that gets a screenshot of its own: (selector, file name part)
SECTIONS = {"site": ("#measurements", "measurements"), "device": ("#device-results", "results")}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(dashboard, program, API key): serve on a seeded database, its broker running."""
    sync_playwright = sync_playwright_or_skip()  # skips (or fails in CI) without Chromium
    folder = tmp_path_factory.mktemp("pages")
    db_url = f"sqlite:///{folder / 'dashboard.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    program = seed_program(engine)
    with Session(engine) as session:
        auth.add_user(session, ADMIN, "admin", STAFF_PASSWORD)
        auth.add_user(session, "nurse", "staff", STAFF_PASSWORD)
        key = auth.create_api_key(session, "registry")
        auth.create_api_key(session, "old-system")
        session.commit()
    engine.dispose()
    with fleet_broker(folder / "broker", devices=(DEVICE[1],)) as broker, \
            DashboardProcess(folder, broker, db_url) as dashboard, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=CHROMIUM_ARGS)
        yield dashboard, broker, browser, program, key, engine
        browser.close()
    assert "Traceback" not in dashboard.log, dashboard.log


def open_page(served, viewport: dict, user: str = ADMIN):  # noqa: ANN001, ANN201
    """A logged-in page in ``ZONE``, its cookie set beforehand as page.js sets it on the
    first visit, so no page reloads itself under the test."""
    dashboard, _, browser, *_ = served
    context = browser.new_context(viewport=viewport, timezone_id=ZONE)
    context.add_cookies([{"name": "sarco_tz", "value": ZONE, "url": dashboard.url}])
    page = context.new_page()
    page.goto(dashboard.url + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", STAFF_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(dashboard.url + "/")
    return page


def inside_viewport(page, selector: str, width: int) -> None:  # noqa: ANN001
    element = page.locator(selector).first
    assert element.is_visible(), f"{selector} is not visible"
    element.scroll_into_view_if_needed()
    box = element.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, \
        f"{selector} sticks out of the {width} px viewport: {box}"


def no_sideways_scroll(page) -> None:  # noqa: ANN001
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"the page is {scroll} px wide in a {inner} px viewport"


@requires_mosquitto
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_page_fits_and_shows_its_parts(served, viewport):
    page = open_page(served, viewport)
    base = served[0].url
    for name, (path, parts, charts) in PAGES.items():
        response = page.goto(base + path)
        assert response.status == 200, f"{path}: {response.status}"
        assert page.locator("html").get_attribute("data-zone") == ZONE
        if charts:
            page.wait_for_function(f"document.querySelectorAll('figure.chart canvas')"
                                   f".length === {charts}")
        if os.environ.get("SARCO_UPDATE_SCREENSHOT") == "1":
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}-{viewport['width']}.png"))
            if name in SECTIONS:
                section, part = SECTIONS[name]
                page.evaluate(f"document.querySelector('{section}').scrollIntoView()")
                page.screenshot(path=str(
                    SCREENSHOTS / f"dashboard-{name}-{part}-{viewport['width']}.png"))
        no_sideways_scroll(page)
        for part in parts:
            inside_viewport(page, part, viewport["width"])
    page.context.close()


@requires_mosquitto
def test_trends_are_counted_in_the_browsers_time_zone(served):
    # no cookie yet: page.js reports the browser's zone and the page comes back in it
    dashboard, _, browser, _, key, engine = served
    context = browser.new_context(viewport=PHONE, timezone_id="Australia/Adelaide")
    page = context.new_page()
    page.goto(dashboard.url + "/login")
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", STAFF_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_function("document.documentElement.dataset.zone === 'Australia/Adelaide'")
    page.goto(dashboard.url + "/trends?site=mobile-van")
    assert "Australia/Adelaide" in page.inner_text("#zone-note")
    page.click("details.figures summary")
    shown = {(row[0], row[1]): int(row[2]) for row in (
        line.split("\t") for line in page.locator("#trend-table tbody tr").all_inner_texts())}
    start = date.fromisoformat(page.input_value("#date_from"))
    end = date.fromisoformat(page.input_value("#date_to"))
    with Session(engine) as session:
        expected = trends.trends(session, ZoneInfo("Australia/Adelaide"), start, end,
                                 "mobile-van")
    assert shown == {(str(day.day), "mobile-van"): day.screened
                     for day in expected.sites[0].days}
    assert sum(shown.values()) > 0
    context.close()
    # the REST API gives other systems the same figures
    query = f"tz=Australia/Adelaide&site=mobile-van&date_from={start}&date_to={end}"
    assert api_get(dashboard.url, f"/api/v1/trends?{query}", key) == expected.model_dump(
        mode="json")
    with pytest.raises(urllib.error.HTTPError, match="400"):
        api_get(dashboard.url, "/api/v1/trends?tz=Mars/Olympus", key)


@requires_mosquitto
def test_a_browser_in_utc_is_a_browser_that_reported_its_zone(served):
    """page.js used to set no cookie when the browser's zone was the page's (UTC), so the
    trends said "your browser did not report a time zone" to a browser that had."""
    dashboard, _, browser, *_ = served
    context = browser.new_context(viewport=DESKTOP, timezone_id="UTC")
    page = context.new_page()
    page.goto(dashboard.url + "/login")
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", STAFF_PASSWORD)
    page.click("button[type=submit]")
    page.goto(dashboard.url + "/trends")
    page.wait_for_function("document.documentElement.dataset.zoneSource === 'browser'")
    assert "UTC, your browser's time zone" in page.inner_text("#zone-note")
    context.close()


@requires_mosquitto
def test_a_referral_is_marked_given_an_outcome_and_a_note_and_unmarked_on_a_phone(served):
    program = served[3]
    screening_id = next(sid for sid in sorted(program.positives) if sid != program.referred)
    page = open_page(served, PHONE)
    page.goto(f"{served[0].url}/referrals?state=all&screening_id={screening_id}")
    row = page.locator(f'#referral-list tr[data-screening="{screening_id}"]')
    assert page.locator("#referral-list tbody tr").count() == 1
    inside_viewport(page, "#referral-list .mark", PHONE["width"])
    row.locator("button.mark").click()
    page.wait_for_load_state()
    assert "done by lead" in row.inner_text()
    # nothing is preselected: Save without a choice records nothing
    outcome = row.locator("select[name=outcome]")
    assert outcome.input_value() == "" and outcome.locator("option").first.inner_text() == \
        "choose an outcome…"
    row.locator(".outcome-form button").click()
    assert outcome.evaluate("select => select.validity.valueMissing")
    assert "outcome:" not in row.inner_text()
    outcome.select_option("declined")
    row.locator(".outcome-form button").click()
    page.wait_for_load_state()
    assert "declined the referral" in row.inner_text()
    row.locator("summary").click()
    row.locator("input[name=note]").fill("called, prefers the clinic in March")
    inside_viewport(page, f'tr[data-screening="{screening_id}"] .note-form button',
                    PHONE["width"])
    row.locator(".note-form button").click()
    page.wait_for_load_state()
    assert "called, prefers the clinic in March" in row.inner_text()
    inside_viewport(page, f'tr[data-screening="{screening_id}"] button.undo', PHONE["width"])
    row.locator("button.undo").click()
    page.wait_for_load_state()
    assert row.locator("button.mark").is_visible()
    events = row.locator("ul.events li").all_inner_texts()
    assert [text.split(": ", 1)[1] for text in events] == [
        "marked referred", "outcome: declined the referral",
        "called, prefers the clinic in March", 'undid "referred"']
    no_sideways_scroll(page)
    page.context.close()


class DeviceSubscriber:
    """The device's side of its cmd topic, on the real broker, as the device's user."""

    def __init__(self, broker, site: str, device: str) -> None:  # noqa: ANN001
        self.received: queue.Queue[dict] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=f"{device}-test")
        self.client.username_pw_set(device, PASSWORD)
        subscribed = threading.Event()
        self.client.on_connect = lambda client, *_: client.subscribe(
            schema.topic_for(site, device, "cmd"), qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda client, userdata, message: self.received.put(
            schema.decode(message.topic, message.payload)[1])
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "the device could not subscribe to its cmd topic"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@requires_mosquitto
def test_commands_reach_the_device_and_are_recorded(served):
    dashboard, broker = served[0], served[1]
    device = DeviceSubscriber(broker, *DEVICE)
    try:
        page = open_page(served, PHONE)
        page.goto(f"{dashboard.url}/devices/{DEVICE[0]}/{DEVICE[1]}")
        page.fill("#start-session input[name=screening_id]", "SCR-0042")
        page.click("#start-session button")
        page.wait_for_url("**/devices/**?sent=true#commands")
        assert device.received.get(timeout=10) == {
            "schema_version": 1, "kind": "cmd", "command": "start_session",
            "screening_id": "SCR-0042"}
        assert "sent (QoS 1" in page.inner_text("#command-notice")
        history = page.locator("#command-history tbody tr").first.inner_text()
        assert "lead" in history and "SCR-0042" in history

        # passes the form's pattern, not the schema (no digit: it could be a name)
        page.fill("#start-session input[name=screening_id]", "ABC-DEF")
        page.click("#start-session button")
        assert "must contain a digit" in page.inner_text("#command-error")
        page.goto(f"{dashboard.url}/devices/{DEVICE[0]}/{DEVICE[1]}")
        page.fill("#update-model input[name=url]", "https://models.example.org/v4.tar")
        page.click("#update-model button")
        page.wait_for_url("**/devices/**?sent=true#commands")
        assert device.received.get(timeout=10) == {
            "schema_version": 1, "kind": "cmd", "command": "update_model",
            "url": "https://models.example.org/v4.tar", "sha256": None}
        assert device.received.empty()  # the refused one never went out

        page.goto(f"{dashboard.url}/devices/clinic-south/{OFFLINE}")
        page.fill("#start-session input[name=screening_id]", "SCR-0043")
        page.click("#start-session button")
        assert "not sent: the device is offline" in page.inner_text("#command-notice")
        page.context.close()
    finally:
        device.close()


@requires_mosquitto
def test_an_admin_adds_resets_and_removes_an_account_on_a_phone(served):
    page = open_page(served, PHONE)
    page.goto(served[0].url + "/users")
    page.fill("#add-user input[name=name]", "temp-nurse")
    page.select_option("#add-user select[name=role]", "readonly")
    page.fill("#add-user input[name=password]", "a temporary password")
    page.fill("#add-user input[name=again]", "a temporary password")
    page.click("#add-user button")
    assert "Account temp-nurse added" in page.inner_text("#user-notice")
    row = page.locator('#users tr[data-user="temp-nurse"]')
    assert "readonly" in row.inner_text()
    row.locator("input[name=password]").fill(STAFF_PASSWORD)
    row.locator("input[name=again]").fill(STAFF_PASSWORD)
    inside_viewport(page, '#users tr[data-user="temp-nurse"] .reset-form button',
                    PHONE["width"])
    row.locator(".reset-form button").click()
    assert "Password of temp-nurse reset" in page.inner_text("#user-notice")
    # the new account logs in with the new password, and sees no Users page
    newcomer = open_page(served, DESKTOP, user="temp-nurse")
    assert newcomer.locator("nav a[href='/users']").count() == 0
    assert newcomer.goto(served[0].url + "/users").status == 403
    newcomer.context.close()

    page.once("dialog", lambda dialog: dialog.accept())
    row.locator(".remove-form button").click()
    assert "Account temp-nurse removed" in page.inner_text("#user-notice")
    assert page.locator('#users tr[data-user="temp-nurse"]').count() == 0
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('#api-keys tr[data-key="old-system"] button').click()
    assert "revoked" in page.inner_text('#api-keys tr[data-key="old-system"]')
    assert "active" in page.inner_text('#api-keys tr[data-key="registry"]')
    page.context.close()


@requires_mosquitto
def test_the_fleet_says_offline_in_words_and_counts_only_the_chosen_site(served):
    page = open_page(served, DESKTOP)
    page.goto(served[0].url + "/?site=clinic-south")
    assert page.inner_text("#devices-online") == "2 / 3"
    card = page.locator(f'#fleet .device[data-device="{OFFLINE}"]')
    text = card.inner_text()
    assert "offline" in text and re.search(r"seen 6[01] min ago", text)  # its last status
    assert "backlog" not in text  # its last status's backlog says nothing about now
    health = page.locator(f'#health tr[data-device="{OFFLINE}"] td.issues').inner_text()
    assert health == "offline"
    assert page.locator(".site h3").all_inner_texts() == ["clinic-south"]
    page.context.close()


BLUE = "r < 60 && g > 80 && g < 150 && b > 140"  # charts.js's first colour, #0072B2
LONE_STATUS_AT = time.time() - 600  # the one status of a device seen once


def coloured_pixels(page, chart: str, test: str = BLUE) -> int:  # noqa: ANN001
    """Pixels of the chart's canvas whose (r, g, b) passes ``test``: what was drawn."""
    return page.evaluate(f"""() => {{
        const canvas = document.querySelector('figure[data-chart={chart}] canvas');
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width,
                                                             canvas.height).data;
        let found = 0;
        for (let i = 0; i < pixels.length; i += 4) {{
            const r = pixels[i], g = pixels[i + 1], b = pixels[i + 2];
            if ({test}) found++;
        }}
        return found;
    }}""")


def wait_for_chart(page, chart: str) -> None:  # noqa: ANN001
    page.wait_for_function(f"!!(document.querySelector('figure[data-chart={chart}]') || "
                           f"{{}}).uplot")


@requires_mosquitto
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_day_with_screens_between_days_without_is_drawn(served, viewport):
    """uPlot leaves out a line's points where they would crowd (61 days on a phone), so a
    positive rate with no neighbour drew nothing at 390 px; lone values keep their point."""
    engine = served[5]
    today = utc_now().date()
    with Session(engine) as session:
        recent = trends.trends(session, ZoneInfo(ZONE), today - timedelta(days=10),
                               today + timedelta(days=1), "clinic-north")
    last = max(day.day for day in recent.sites[0].days if day.screened)
    query = f"date_from={last}&date_to={last + timedelta(days=60)}"  # one day, then none
    page = open_page(served, viewport)
    for path in (f"/trends?site=clinic-north&{query}", f"/sites/clinic-north?{query}"):
        page.goto(served[0].url + path)
        wait_for_chart(page, "positive_rate")
        assert coloured_pixels(page, "positive_rate") > 20, path
    page.context.close()


@requires_mosquitto
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_device_sparklines_span_the_last_24_hours_with_readable_times(served, viewport):
    """The title says "last 24 h": the axis spans now-24h .. now whatever the samples cover,
    with times that differ from tick to tick (not "00:00 00:00 00:00" for a device seen once,
    nor "13:13 13:13 13:14")."""
    engine = served[5]
    FleetStore(engine, "test").write(Batch(statuses=[Received(status_payload(
        "pop-up", "us-099", "online", LONE_STATUS_AT, health=health_figures()),
        utc_now())]), utc_now())
    page = open_page(served, viewport)
    for path in (f"/devices/{DEVICE[0]}/{DEVICE[1]}", "/devices/pop-up/us-099"):
        page.goto(served[0].url + path)
        wait_for_chart(page, "temp_max_c")
        axis = page.evaluate("""() => {
            const plot = document.querySelector('figure[data-chart=temp_max_c]').uplot;
            return {min: plot.scales.x.min, max: plot.scales.x.max,
                    labels: plot.axes[0]._values, now: Date.now() / 1000};
        }""")
        assert abs(axis["max"] - axis["now"]) < 120, (path, axis)
        assert axis["max"] - axis["min"] == pytest.approx(24 * 3600, abs=1), (path, axis)
        labels = axis["labels"]
        assert len(labels) >= 3 and len(set(labels)) == len(labels), (path, labels)
        assert all(re.fullmatch(r"\d\d:\d\d|\d{1,2} [A-Z][a-z]{2}", label)
                   for label in labels), (path, labels)
        assert coloured_pixels(page, "temp_max_c") > 20, path  # the one sample: a point
    page.context.close()


@requires_mosquitto
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_sites_measurements_are_drawn_and_a_results_fit_on_its_card(served, viewport):
    """The site's histograms are drawn on a numeric axis with every measured result in them;
    a result's measurements are columns on a screen and one line of its card on a phone."""
    page = open_page(served, viewport)
    page.goto(served[0].url + "/sites/clinic-north")
    for quantity in ("muscle_thickness_mm", "pennation_deg", "echo_intensity"):
        chart = f"histogram-{quantity}"
        wait_for_chart(page, chart)
        plot = page.evaluate(f"""() => {{
            const plot = document.querySelector('figure[data-chart={chart}]').uplot;
            return {{labels: plot.axes[0]._values,
                     counted: plot.data.slice(1).flat().reduce((a, b) => a + b, 0)}};
        }}""")
        assert all(re.fullmatch(r"\d+(\.\d+)?", label) for label in plot["labels"]), plot
        shown = sum(int(cell) for cell in page.locator(
            f"#measurement-table tr[data-quantity={quantity}] td:nth-child(2)").all_inner_texts())
        assert plot["counted"] == shown > 0
        assert coloured_pixels(page, chart) > 50, chart
    no_sideways_scroll(page)
    page.goto(served[0].url + f"/devices/{DEVICE[0]}/{DEVICE[1]}")
    row = page.locator("#device-results tbody tr").first
    columns, line = row.locator("td.measure"), row.locator("td.measure-phone")
    if viewport is PHONE:
        assert columns.first.is_hidden()
        inside_viewport(page, "#device-results td.measure-phone", viewport["width"])
        assert re.fullmatch(r"[\d.]+ mm · [\d.]+° · echo [\d.]+ \* · \d+ frames?",
                            line.inner_text()), line.inner_text()
    else:
        assert line.is_hidden() and columns.count() == 4
        for index in range(4):
            inside_viewport(page, f"#device-results tbody tr >> nth=0 >> td.measure >> "
                                  f"nth={index}", viewport["width"])
        assert re.fullmatch(r"[\d.]+ mm", columns.first.inner_text())
    no_sideways_scroll(page)
    page.context.close()


def _unresolved_alerts(engine) -> int:  # noqa: ANN001
    """serve evaluates the alert rules as it starts: the offline, the hot and the rolled-back
    device of the seeded program; waits for that evaluation."""
    deadline = time.monotonic() + 20
    while True:
        with Session(engine) as session:
            count = alerts.unresolved_count(session)
        if count >= 3 or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


@requires_mosquitto
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_unresolved_alerts_show_in_the_navigation_on_the_device_and_on_its_card(served,
                                                                               viewport):
    engine = served[5]
    count = _unresolved_alerts(engine)
    assert count == 3
    page = open_page(served, viewport)
    base = served[0].url
    for path, _, _ in PAGES.values():
        page.goto(base + path)
        assert page.text_content("#alert-count") == f"{count} unresolved", path
        inside_viewport(page, "#alert-count", viewport["width"])
    page.goto(base + "/")
    tile = f'#fleet .device[data-device="{OFFLINE}"]'
    assert "⚠ alert: Device offline" in page.inner_text(tile)
    attention = page.locator('#fleet .site[data-site="clinic-south"] p.attention')
    assert "needs attention: " in attention.inner_text()
    assert "Device offline (us-006)" in attention.inner_text()
    inside_viewport(page, '#fleet .site[data-site="clinic-south"] p.attention a',
                    viewport["width"])
    page.goto(f"{base}/devices/clinic-south/{OFFLINE}")
    box = page.inner_text("#device-alerts")
    assert "Device offline" in box and re.search(r"no contact since .+ \(\d+ min ago\)", box)
    inside_viewport(page, "#device-alerts a", viewport["width"])
    no_sideways_scroll(page)
    # the site page lists its devices without a card that links to the page itself
    page.goto(base + "/sites/clinic-south")
    assert page.locator('main a[href="/sites/clinic-south"]').count() == 0
    assert "Device offline (us-006)" in page.inner_text("p.attention")
    page.context.close()


@requires_mosquitto
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_dates_and_ids_never_break_and_a_table_that_scrolls_says_so(served, viewport):
    page = open_page(served, viewport)
    page.goto(served[0].url + "/")
    for table in ("#daily", "#health", "#models"):
        for cell in page.locator(f"{table} tbody tr").first.locator("td").all()[:2]:
            lines = cell.evaluate("""cell => {
                const style = getComputedStyle(cell);
                const inner = cell.getBoundingClientRect().height
                              - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
                return inner / parseFloat(style.lineHeight || 18);
            }""")
            assert lines < 1.5, f"{table}: {cell.inner_text()!r} breaks into {lines:.1f} lines"
    # every box that scrolls sideways has the hint above it, and no other box has one
    boxes = page.evaluate("""() => [...document.querySelectorAll('.scroll')].map(box => [
        box.querySelector('table').id, box.scrollWidth > box.clientWidth,
        !!(box.previousElementSibling &&
           box.previousElementSibling.classList.contains('scroll-hint'))])""")
    assert all(scrolls == hinted for _, scrolls, hinted in boxes), boxes
    if viewport is PHONE:
        assert {table for table, scrolls, _ in boxes if scrolls} >= {"daily", "health"}
        hint = page.locator("#health").locator("xpath=..").locator(
            "xpath=preceding-sibling::p[@class='scroll-hint'][1]")
        assert hint.inner_text() == "⇆ Wider than the screen: scroll the table sideways."
        inside_viewport(page, "p.scroll-hint", viewport["width"])
    no_sideways_scroll(page)
    page.context.close()


@requires_mosquitto
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_an_error_is_a_page_with_the_message_and_a_way_back(served, viewport):
    page = open_page(served, viewport)
    response = page.goto(served[0].url + "/referrals?state=bogus")
    assert response.status == 400
    assert page.inner_text("#error-message") == "state: one of open, overdue, referred, all"
    for part in ("header.top", "#error-message", "#error-back"):
        inside_viewport(page, part, viewport["width"])
    no_sideways_scroll(page)
    page.click("#error-back")
    page.wait_for_url(served[0].url + "/")
    page.context.close()
