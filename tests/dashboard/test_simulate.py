"""The fleet simulator: its fleet plan, and what it publishes through a real Mosquitto: every
payload valid for the devices' own schema, statuses with health telemetry that shows each
device's trouble, measurements from the devices that measure, exact counts, the same figures
for the same seed under new ids every run, and a device made to drop off mid-run."""

from __future__ import annotations

import json
import math

import pytest

from dashboard.simulate import MODELS, TROUBLE_SHARES, FleetSimulator, plan_fleet
from sarco_core.wire import schema
from testkit.mosquitto import Collector, requires_mosquitto
from tests.support.dashboard import (
    DASHBOARD_USER,
    PASSWORD,
    SIMULATOR_USER,
    fleet_broker,
    settings_for,
)

DEVICES, RATE, DURATION_S = 6, 4, 1.5


def test_the_fleet_plan_is_deterministic_and_has_its_share_of_trouble():
    fleet = plan_fleet(50, seed=1)
    assert fleet == plan_fleet(50, seed=1)
    assert fleet != plan_fleet(50, seed=2)
    assert len({d.site for d in fleet}) == math.ceil(50 / 6)
    assert sum(d.temp_c >= 85 for d in fleet) == round(TROUBLE_SHARES["hot"] * 50)
    assert sum(d.fps < 10 for d in fleet) == round(TROUBLE_SHARES["slow"] * 50)
    assert sum(d.backlog > 20 for d in fleet) == round(TROUBLE_SHARES["backlog"] * 50)
    rolled_back = [d for d in fleet if d.update_outcome == "rolled_back"]
    assert len(rolled_back) == round(TROUBLE_SHARES["rolled_back"] * 50)
    previous = "-".join(MODELS[-1][:2])
    # it went back to the previous model after trying the current package
    assert {(d.model_name, d.update_version) for d in rolled_back} == {(previous, MODELS[0][4])}


def _simulate(broker, seed: int,  # noqa: ANN001
              offline_after: dict[str, float] | None = None,
              ) -> tuple[int, dict[str, list[dict]]]:
    """Run the fleet once; (results published, every decoded payload by kind)."""
    collector = Collector(broker, DASHBOARD_USER, PASSWORD)
    try:
        report = FleetSimulator(settings_for(broker, SIMULATOR_USER),
                                plan_fleet(DEVICES, seed), rate=RATE, duration_s=DURATION_S,
                                seed=seed, duplicate_share=0.3,
                                offline_after=offline_after).run()
        # QoS 1 (results, statuses) all arrive; retained ones are the previous run's
        expected = report.results + report.duplicates + report.statuses

        def fresh(messages: list) -> list:  # noqa: ANN001
            return [(topic, data) for topic, data, retained in messages if not retained]

        assert collector.wait_for(lambda messages: sum(
            not topic.endswith("/live") for topic, _ in fresh(messages)) >= expected, 15)
        decoded: dict[str, list[dict]] = {}
        for topic, data in fresh(collector.messages):
            kind, payload = schema.decode(topic, data)  # raises on anything invalid
            decoded.setdefault(kind, []).append(payload)
    finally:
        collector.close()
    return report.results, decoded


@requires_mosquitto
def test_what_the_fleet_publishes_is_valid_exact_and_the_same_for_the_same_seed(tmp_path):
    with fleet_broker(tmp_path / "broker") as broker:
        published, first = _simulate(broker, seed=4)
        _, again = _simulate(broker, seed=4)
        _, other = _simulate(broker, seed=5)
    assert published == DEVICES * RATE * DURATION_S
    assert len({r["result_id"] for r in first["result"]}) == published
    assert len(first["result"]) > published  # some were sent twice

    def content(results: list[dict]) -> list[tuple]:
        """Everything but the clock and the ids."""
        return sorted(tuple((k, json.dumps(v)) for k, v in r.items()
                            if k not in ("started_at", "ended_at", "result_id", "session_id",
                                         "screening_id")) for r in results)

    assert content(first["result"]) == content(again["result"])
    assert content(first["result"]) != content(other["result"])
    # a second run with the same seed adds results instead of re-sending the first run's
    for key in ("result_id", "session_id", "screening_id"):
        assert {r[key] for r in first["result"]}.isdisjoint(r[key] for r in again["result"])
    fleet = {d.device: d for d in plan_fleet(DEVICES, 4)}
    # devices on the current app measure, the others send no measurements; a device that
    # knows no pixel size measures thickness in pixels only
    measured = [r for r in first["result"] if "measurements" in r]
    assert {r["device"] for r in measured} == {d for d, p in fleet.items() if p.measures}
    assert len(measured) < len(first["result"])
    for result in measured:
        entry, profile = result["measurements"], fleet[result["device"]]
        if entry["frames_measured"]:
            assert (entry["muscle_thickness_mm"] is None) == (profile.mm_per_px is None)
            assert entry["muscle_thickness_px"] is not None
    assert any(fleet[r["device"]].mm_per_px is None for r in measured)
    for status in first["status"]:
        profile = fleet[status["device"]]
        assert abs(status["health"]["fps"] - profile.fps) < 3
        assert abs(status["health"]["temp_max_c"] - profile.temp_c) < 5
        assert status["health"]["queue_length"] == profile.backlog
        assert status["update"]["outcome"] == profile.update_outcome


@requires_mosquitto
def test_a_device_made_to_go_offline_leaves_its_last_will_and_says_no_goodbye(tmp_path):
    with fleet_broker(tmp_path / "broker") as broker:
        published, decoded = _simulate(broker, seed=4, offline_after={"us-002": 0.3})
    statuses = [s for s in decoded["status"] if s["device"] == "us-002"]
    # online at the start, then the broker's will (no device clock): nothing after it
    assert [(s["state"], s["at"] is None) for s in statuses] == [("online", False),
                                                               ("offline", True)]
    others = [s for s in decoded["status"] if s["device"] == "us-001"]
    assert (others[-1]["state"], others[-1]["at"] is None) == ("offline", False)  # a goodbye
    per_device = {d: sum(r["device"] == d for r in decoded["result"]) for d in ("us-001",
                                                                              "us-002")}
    assert 0 < per_device["us-002"] < per_device["us-001"]
    assert published < DEVICES * RATE * DURATION_S


def test_offline_after_names_a_device_of_the_fleet_and_a_time_within_the_run():
    fleet = plan_fleet(DEVICES, 4)
    with pytest.raises(ValueError, match="no device us-099"):
        FleetSimulator(None, fleet, rate=RATE, duration_s=2, offline_after={"us-099": 1})
    with pytest.raises(ValueError, match="within the run"):
        FleetSimulator(None, fleet, rate=RATE, duration_s=2, offline_after={"us-001": 2})
