"""A result's muscle measurements in the dashboard: ingested through a real Mosquitto (with,
without, pixels only, none measured, and a refused one that stops nothing), told apart from a
conflicting reuse of the id, kept through the upgrade of an old database, shown in the device's
results and the CSV export, and summed up per site: the medians, quartiles, counts and
histogram bins of the site page, checked against numpy."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import time

import numpy as np
import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from dashboard import auth, measure_stats, queries
from dashboard.db import head_revision, make_engine, migrate, utc_now
from dashboard.models import RejectedMessage, Result
from dashboard.store import Batch, FleetStore, Received, _result_row
from sarco_core.measure import ECHO_CAVEAT
from sarco_core.wire import schema
from testkit.mosquitto import requires_mosquitto
from tests.support.dashboard import (
    RawPublisher,
    encode,
    fleet_broker,
    result_payload,
    running_ingest,
    sqlite_engine,
)
from tests.support.dashboard_web import STAFF_PASSWORD, Browser, api_get, serving, staff_page
from tests.support.wire import measurements_entry

QUANTITIES = ("muscle_thickness_mm", "muscle_thickness_px", "pennation_deg", "echo_intensity")
# what the results export adds, in this order (written out here: the test's own copy)
EXPORTED = ("muscle_thickness_mm", "muscle_thickness_px", "pennation_deg", "echo_intensity",
            "frames_measured", "muscle_thickness_mm_iqr", "muscle_thickness_px_iqr",
            "pennation_deg_iqr", "echo_intensity_iqr", "measure_model_name",
            "measure_model_sha256")


def _entry(frames: int = 60, **values: float | None) -> dict:
    """``measurements`` with some quantities changed; a null value nulls its spread too."""
    entry = measurements_entry(frames_measured=frames, **values)
    entry["spread"] = {name: None if entry[name] is None else spread
                       for name, spread in entry["spread"].items()}
    return entry


NONE_MEASURED = _entry(0, **dict.fromkeys(QUANTITIES))
PIXELS_ONLY = _entry(12, muscle_thickness_mm=None)


def _stored(engine, result_id: str) -> dict:  # noqa: ANN001
    with Session(engine) as session:
        row = session.scalars(select(Result).where(Result.result_id == result_id)).one()
        return {name: getattr(row, name) for name in EXPORTED}


@requires_mosquitto
def test_ingest_stores_the_measurements_and_nulls_where_none_came(tmp_path):
    measured = result_payload(seq=1, measurements=_entry(60))
    pixels = result_payload(seq=2, measurements=PIXELS_ONLY)
    plain = result_payload(seq=3)  # a device without the measurement model
    nothing = result_payload(seq=4, measurements=NONE_MEASURED)
    # more frames measured than usable: decode refuses it, and the stream goes on
    impossible = {**result_payload(seq=5), "measurements": _entry(81)}
    topic = schema.topic_for("site-01", "us-001", "result")
    engine = sqlite_engine(tmp_path)
    with fleet_broker(tmp_path / "broker") as broker, \
            running_ingest(engine, broker) as ingest:
        publisher = RawPublisher(broker)
        publisher.publish(topic, json.dumps(impossible).encode())
        for payload in (measured, pixels, plain, nothing):
            publisher.publish(topic, encode("result", payload))
        publisher.close()
        assert ingest.wait_for(lambda s: s.stored == 4 and s.rejected == 1, 20), ingest.state
    assert _stored(engine, measured["result_id"]) == {
        "muscle_thickness_mm": 18.4, "muscle_thickness_px": 142.0, "pennation_deg": 17.2,
        "echo_intensity": 61.5, "frames_measured": 60, "muscle_thickness_mm_iqr": 0.9,
        "muscle_thickness_px_iqr": 7.0, "pennation_deg_iqr": 1.8, "echo_intensity_iqr": 3.2,
        "measure_model_name": "aponeurosis-effnetlite0-unet", "measure_model_sha256": "b" * 64}
    stored = _stored(engine, pixels["result_id"])
    assert (stored["muscle_thickness_mm"], stored["muscle_thickness_mm_iqr"],
            stored["muscle_thickness_px"], stored["frames_measured"]) == (None, None, 142.0, 12)
    assert _stored(engine, plain["result_id"]) == dict.fromkeys(EXPORTED)
    stored = _stored(engine, nothing["result_id"])
    assert stored["frames_measured"] == 0 and stored["measure_model_name"] is not None
    assert all(stored[name] is None for name in EXPORTED[:4] + EXPORTED[5:9])
    with Session(engine) as session:
        [reason] = session.scalars(select(RejectedMessage.reason))
    assert "measurements.frames_measured: 81 is more than usable_frames 80" in reason


def test_the_same_measurements_again_are_a_duplicate_and_other_ones_a_conflict(tmp_path):
    engine = sqlite_engine(tmp_path)
    store = FleetStore(engine, "w1")
    payload = result_payload(measurements=_entry(60))
    other = {**payload, "measurements": _entry(60, echo_intensity=70.0)}
    first = store.write(Batch(results=[Received(payload, utc_now())]), utc_now())
    again = store.write(Batch(results=[Received(payload, utc_now()),
                                       Received(other, utc_now())]), utc_now())
    assert (first.stored, again.stored, again.duplicates, again.rejected) == (1, 0, 1, 1)
    assert _stored(engine, payload["result_id"])["echo_intensity"] == 61.5
    with Session(engine) as session:
        [rejected] = session.scalars(select(RejectedMessage))
    assert "different content" in rejected.reason and json.loads(rejected.payload) == other


def test_an_old_database_upgrades_and_its_results_stay_without_measurements(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    assert migrate(engine, "0007") == "0007"
    old = result_payload(seq=1, decision="sarcopenia", probability=0.8, score_logit=1.39)
    row = {name: value for name, value in _result_row(old, utc_now(), "w0").items()
           if name not in EXPORTED}
    with engine.begin() as connection:
        assert not set(EXPORTED) & {c["name"] for c in inspect(connection).get_columns(
            "results")}
        connection.execute(Result.__table__.insert(), [row])  # only the columns 0007 has
    assert migrate(engine) == head_revision()
    assert _stored(engine, old["result_id"]) == dict.fromkeys(EXPORTED)
    # the old result sent again is a duplicate; a new one keeps its measurements
    new = result_payload(seq=2, measurements=_entry(40))
    outcome = FleetStore(engine, "w1").write(Batch(results=[
        Received(old, utc_now()), Received(new, utc_now())]), utc_now())
    assert (outcome.stored, outcome.duplicates, outcome.rejected) == (1, 1, 0)
    assert _stored(engine, new["result_id"])["frames_measured"] == 40
    with Session(engine) as session:
        found = measure_stats.site_measurements(
            session, queries.Filters.last_days(utc_now().date(), "site-01"))
    assert (found.screened, found.with_measurements) == (2, 1)


@pytest.fixture
def one_device(tmp_path):
    """us-001 with a result measured in mm, one in px only, one without measurements;
    (engine, payloads by kind, an API key)."""
    engine = sqlite_engine(tmp_path)
    now = time.time()
    payloads = {"mm": result_payload(seq=1, ended_at=now - 300, measurements=_entry(60)),
                "px": result_payload(seq=2, ended_at=now - 200, measurements=PIXELS_ONLY),
                "none": result_payload(seq=3, ended_at=now - 100)}
    FleetStore(engine, "w1").write(Batch(results=[
        Received(p, utc_now()) for p in payloads.values()]), utc_now())
    with Session(engine) as session:
        auth.add_user(session, "nurse", "staff", STAFF_PASSWORD)
        key = auth.create_api_key(session, "registry")
        session.commit()
    return engine, payloads, key


def _cells(page: str, result_id: str) -> dict[str, str]:
    """The device page's cells of one result, by their label, as text."""
    row = re.search(rf'<tr data-result="{result_id}">(.*?)</tr>', page, re.S).group(1)
    return {label: html.unescape(re.sub(r"<[^>]+>", "", text)).strip()
            for label, text in re.findall(r'<td data-label="([^"]+)"[^>]*>(.*?)</td>', row,
                                          re.S)}


def test_the_device_page_shows_each_results_measurements(one_device):
    engine, payloads, _ = one_device
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        status, _, page = nurse.request("/devices/site-01/us-001")
    assert status == 200
    shown = {kind: _cells(page, p["result_id"]) for kind, p in payloads.items()}
    columns = ("Thickness", "Pennation", "Echo intensity *", "Frames measured", "Muscle")
    assert [shown["mm"][c] for c in columns] == [
        "18.4 mm", "17.2°", "61.5", "60", "18.4 mm · 17.2° · echo 61.5 * · 60 frames"]
    assert [shown["px"][c] for c in columns] == [
        "142 px", "17.2°", "61.5", "12", "142 px · 17.2° · echo 61.5 * · 12 frames"]
    assert [shown["none"][c] for c in columns] == ["–", "–", "–", "–", "not measured"]
    assert html.escape(ECHO_CAVEAT) in page  # the gain caveat beside the numbers


def test_the_results_export_and_api_carry_the_measurement_columns(one_device):
    engine, payloads, key = one_device
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        status, _, body = nurse.request("/export/results.csv")
        api = api_get(base, "/api/v1/results", key)["results"]
    assert status == 200
    header, *lines = list(csv.reader(io.StringIO(body)))
    assert tuple(header[-len(EXPORTED):]) == EXPORTED
    rows = {row["result_id"]: row for row in (dict(zip(header, line)) for line in lines)}
    measured = rows[payloads["mm"]["result_id"]]
    assert [measured[name] for name in EXPORTED] == [
        "18.4", "142.0", "17.2", "61.5", "60", "0.9", "7.0", "1.8", "3.2",
        "aponeurosis-effnetlite0-unet", "b" * 64]
    pixels = rows[payloads["px"]["result_id"]]
    assert (pixels["muscle_thickness_mm"], pixels["muscle_thickness_mm_iqr"],
            pixels["muscle_thickness_px"]) == ("", "", "142.0")
    assert [rows[payloads["none"]["result_id"]][name] for name in EXPORTED] == [""] * 11
    by_id = {record["result_id"]: record for record in api}
    assert {name: by_id[payloads["mm"]["result_id"]][name] for name in EXPORTED} == \
        _stored(engine, payloads["mm"]["result_id"])
    assert all(by_id[payloads["none"]["result_id"]][name] is None for name in EXPORTED)


def _program(rng: np.random.Generator) -> list[dict]:
    """Two sites' results over the last days: site-a's three devices measure (us-003 in px
    only), one of its results without measurements, rescans that must not count; site-b's
    must not count either."""
    now, payloads = time.time(), []
    plan = [("site-a", "us-001", 40), ("site-a", "us-002", 30), ("site-a", "us-003", 12),
            ("site-b", "us-009", 25)]
    for site, device, count in plan:
        for _ in range(count):
            rescan = rng.random() < 0.1
            mm = float(rng.normal(18, 3))
            entry = _entry(int(rng.integers(1, 20)),
                           muscle_thickness_mm=None if device == "us-003" else round(mm, 4),
                           muscle_thickness_px=round(mm / 0.11, 4),
                           pennation_deg=None if rng.random() < 0.1
                           else round(float(rng.normal(16, 3)), 4),
                           echo_intensity=round(float(rng.normal(60 + 10 * (device == "us-002"),
                                                                 6)), 4))
            decision = "rescan" if rescan else str(rng.choice(["sarcopenia", "no_sarcopenia"]))
            payloads.append(result_payload(
                site=site, device=device, seq=len(payloads) + 1,
                ended_at=now - float(rng.uniform(60, 5 * 86400)), decision=decision,
                probability=None if rescan else 0.6,
                score_logit=None if rescan else 0.4, measurements=entry,
                **({"uncertainty": None, "usable_frames": 19} if rescan else {})))
    payloads.append(result_payload(site="site-a", device="us-001", seq=len(payloads) + 1))
    return payloads


def _expected(payloads: list[dict], quantity: str, device: str | None = None) -> list[float]:
    return [p["measurements"][quantity] for p in payloads
            if p["site"] == "site-a" and p["decision"] != "rescan" and "measurements" in p
            and p["measurements"][quantity] is not None
            and (device is None or p["device"] == device)]


def test_a_sites_distributions_count_its_screened_results_by_the_rules(tmp_path):
    engine = sqlite_engine(tmp_path)
    payloads = _program(np.random.default_rng(11))
    FleetStore(engine, "w1").write(Batch(results=[Received(p, utc_now()) for p in payloads]),
                                   utc_now())
    with Session(engine) as session:
        auth.add_user(session, "nurse", "staff", STAFF_PASSWORD)
        session.commit()
        found = measure_stats.site_measurements(
            session, queries.Filters.last_days(utc_now().date(), "site-a"))
    screened = [p for p in payloads if p["site"] == "site-a" and p["decision"] != "rescan"]
    assert found.screened == len(screened)
    assert found.with_measurements == len(screened) - 1
    assert found.thickness_px_only == sum(p["device"] == "us-003" for p in screened)
    groups = [("muscle_thickness_mm", None), ("pennation_deg", None),
              ("echo_intensity", "us-001"), ("echo_intensity", "us-002"),
              ("echo_intensity", "us-003")]
    assert [(s.quantity, s.device) for s in found.summaries] == groups
    for summary, (quantity, device) in zip(found.summaries, groups):
        values = np.array(_expected(payloads, quantity, device))
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        assert (summary.n, summary.median, summary.q1, summary.q3) == (
            len(values), pytest.approx(median), pytest.approx(q1), pytest.approx(q3))
    for bins in found.histograms:
        for device, counts in bins.counts.items():
            values = _expected(payloads, bins.quantity, device)
            edges = bins.start + bins.width * np.arange(len(counts) + 1)
            assert len(counts) <= measure_stats.MAX_BINS
            assert counts == np.histogram(values, edges)[0].tolist()
            assert sum(counts) == len(values)
    # the site page shows the same figures, and the histograms' counts in its chart data
    with serving(engine) as base:
        nurse = Browser(base)
        nurse.login("nurse", STAFF_PASSWORD)
        status, _, page = nurse.request("/sites/site-a")
    assert status == 200
    for quantity, device in groups:
        values = _expected(payloads, quantity, device)
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        device_attribute = f' data-device="{device}"' if device else ""
        row = re.search(rf'<tr data-quantity="{quantity}"{device_attribute}>(.*?)</tr>',
                        page, re.S).group(1)
        cells = [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
                 for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        assert cells[1:] == [str(len(values)), f"{median:.1f}", f"{q1:.1f} – {q3:.1f}"]
    pixels_only = sum(p["device"] == "us-003" for p in screened)
    assert f"{pixels_only} results measured it in pixels alone" in page
    data = json.loads(html.unescape(re.search(
        r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.S).group(1)))
    echo = next(c for c in data["charts"] if c["id"] == "histogram-echo_intensity")
    assert [line["label"] for line in echo["series"]] == ["us-001", "us-002", "us-003"]
    assert [sum(line["values"]) for line in echo["series"]] == [
        len(_expected(payloads, "echo_intensity", device))
        for device in ("us-001", "us-002", "us-003")]


def test_a_site_without_measurements_says_so_and_draws_no_histogram(tmp_path):
    engine = sqlite_engine(tmp_path)
    FleetStore(engine, "w1").write(Batch(results=[Received(result_payload(), utc_now())]),
                                   utc_now())
    page = staff_page(engine, "/sites/site-01")[1]
    assert "0 of 1 screened result in the range carried measurements" in page
    assert 'id="measurement-table"' not in page and "histogram-" not in page


def test_histogram_bins_hold_a_value_on_an_edge_in_the_bin_it_starts():
    found = measure_stats.histogram("pennation_deg", {None: [17.0, 17.1, 17.9, 18.0]})
    assert (found.start, found.width, found.counts) == (17.0, 0.1, {None: [
        1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1]})
    wide = measure_stats.histogram("echo_intensity", {"us-001": [3.0, 250.0], "us-002": [99.0]})
    assert (wide.start, wide.width) == (0, 20)
    assert wide.counts == {"us-001": [1] + [0] * 11 + [1], "us-002": [0] * 4 + [1] + [0] * 8}
