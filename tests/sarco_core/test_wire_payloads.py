"""The typed payloads give the wire dicts the schema accepts; the last will carries no stale figure."""

from __future__ import annotations

from sarco_core.wire import schema
from sarco_core.measure import FrameMeasurement, aggregate_measurements
from sarco_core.wire.payloads import LivePayload, MuscleMeasurements, StatusPayload
from tests.support.wire import result_payload

DETAILS = {"app_version": "1.2.0", "model": {"name": "image", "sha256": "ab" * 32},
           "health": {"gpu_load_pct": 71.0, "cpu_load_pct": 30.0, "temp_max_c": 55.0,
                      "power_mw": 9000, "fps": 24.0, "frames_processed": 100,
                      "ram_used_mb": 2100, "ram_total_mb": 7600, "swap_used_mb": 0,
                      "frames_rejected": 5, "frame_errors": 0, "queue_length": 3}}


def test_status_and_its_last_will():
    status = StatusPayload("clinic-a", "edge-01", "online", 1_700_000_000.25, 3, "broker unreachable",
                           DETAILS)
    online = status.to_dict()
    assert online["at"] == "2023-11-14T22:13:20.250Z"
    assert (online["queued_results"], online["backlog_reason"]) == (3, "broker unreachable")
    assert online["health"] == DETAILS["health"] and online["app_version"] == "1.2.0"
    schema.validate("status", online)
    will = StatusPayload("clinic-a", "edge-01", "offline", 1_700_000_000.25, 3, "x", DETAILS).last_will()
    assert (will["at"], will["queued_results"], will["backlog_reason"], will["health"]) == (None,) * 4
    assert will["model"] == DETAILS["model"] and will["state"] == "offline"
    schema.validate("status", will)


def test_live_fps_is_held_to_the_schema_bound():
    live = LivePayload("clinic-a", "edge-01", "0" * 8 + "-0000-4000-8000-" + "0" * 12, "SCR-1", 7,
                       1_700_000_000.0, "ok", 0.4, 0.45, 3, schema.MAX_FPS * 3).to_dict()
    assert live["fps"] == schema.MAX_FPS
    schema.validate("live", live)


def test_a_sessions_measurements_go_on_the_wire_rounded_with_their_model():
    frames = [FrameMeasurement(140.0 + i, 18.0 + i / 10, 17.0 + i / 3, 60.0 + i, "ok") for i in range(5)]
    frames.append(FrameMeasurement.not_measured("one_aponeurosis_missing"))
    summary = aggregate_measurements(frames)
    entry = MuscleMeasurements.of_session(summary, "apo", "c" * 64).to_dict()
    assert entry["frames_measured"] == 5 and entry["model"] == {"name": "apo", "sha256": "c" * 64}
    assert entry["muscle_thickness_px"] == 142.0 and entry["spread"]["muscle_thickness_px"] == 2.0
    assert entry["pennation_deg"] == round(17.0 + 2 / 3, 4)
    schema.validate("result", result_payload(measurements=entry))
