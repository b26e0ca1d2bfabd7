"""The MQTT payload schema: what it accepts, what it refuses (names, images, unknown fields)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest

from sarco_core.wire import schema
from tests.support.wire import measurements_entry, result_payload


def test_a_valid_result_round_trips_through_encode_and_decode() -> None:
    payload = result_payload()
    topic = schema.topic_for("clinic-a", "edge-01", "result")
    kind, decoded = schema.decode(topic, schema.encode("result", payload))
    assert (kind, decoded) == ("result", payload)


@pytest.mark.parametrize("field, value, words", [
    ("patient_name", "Jane Doe", "unknown field"),
    ("screening_id", "JaneDoe", "must contain a digit"),
    ("screening_id", "Jane Doe 1", "pseudonymous"),
    ("probability", 1.5, r"within \[0, 1\]"),
    ("probability", float("nan"), r"within \[0, 1\]"),
    ("decision", "maybe", "must be one of"),
    ("usable_frames", True, "expected int"),
    ("started_at", "31/01/2025", "ISO 8601"),
    ("schema_version", 2, "must be 1"),
    ("result_id", "not-a-uuid", "UUID"),
])
def test_a_bad_field_is_named_in_the_error(field: str, value: object, words: str) -> None:
    with pytest.raises(schema.PayloadError, match=words) as error:
        schema.validate("result", result_payload(**{field: value}))
    assert field in str(error.value)


def test_a_nested_unknown_field_is_refused() -> None:
    payload = result_payload(model={"name": "tiny", "sha256": "a" * 64, "image": "..."})
    with pytest.raises(schema.PayloadError, match=r"result\.model: unknown field"):
        schema.validate("result", payload)


def test_an_image_cannot_fit_in_a_payload() -> None:
    payload = result_payload(model={"name": "x" * 64, "sha256": "a" * 64})
    payload["app_version"] = "1"
    assert len(schema.encode("result", payload)) < schema.MAX_PAYLOAD_BYTES
    big = json.dumps({**payload, "app_version": "x" * 5000}).encode()
    with pytest.raises(schema.PayloadError, match="over the 4096-byte limit"):
        schema.decode(schema.topic_for("clinic-a", "edge-01", "result"), big)


def test_missing_field_and_wrong_topic_are_reported() -> None:
    payload = result_payload()
    del payload["threshold"]
    with pytest.raises(schema.PayloadError, match="result.threshold: missing"):
        schema.validate("result", payload)
    with pytest.raises(schema.PayloadError, match="expected sarco/v1/SITE/DEVICE/KIND"):
        schema.parse_topic("sarco/v2/clinic-a/edge-01/result")
    with pytest.raises(schema.PayloadError, match="site"):
        schema.topic_for("clinic/a", "edge-01", "result")
    other_device = schema.topic_for("clinic-a", "edge-02", "result")
    with pytest.raises(schema.PayloadError, match="differ from the topic"):
        schema.decode(other_device, schema.encode("result", result_payload()))


def test_a_command_without_screening_id_is_valid_for_end_session() -> None:
    command = {"schema_version": 1, "kind": "cmd", "command": "end_session"}
    topic = schema.topic_for("clinic-a", "edge-01", "cmd")
    assert schema.decode(topic, json.dumps(command).encode()) == ("cmd", command)


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert schema.utc_timestamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert schema.utc_timestamp(1738315800.25) == "2025-01-31T09:30:00.250Z"


def status_payload(**changes: object) -> dict:
    payload = {"schema_version": 1, "kind": "status", "site": "clinic-a", "device": "edge-01",
               "state": "online", "at": "2025-01-31T09:00:00.000Z", "app_version": "0.1.0",
               "model": None, "queued_results": 0}
    payload.update(changes)
    return payload


HEALTH = {"gpu_load_pct": 78.0, "cpu_load_pct": 30.0, "temp_max_c": 56.2, "power_mw": 11240,
          "ram_used_mb": 2890, "ram_total_mb": 7620, "swap_used_mb": 0, "fps": 14.96,
          "frames_processed": 1200, "frames_rejected": 310, "frame_errors": 0,
          "queue_length": 3}
UPDATE = {"version": "2025.06-1", "outcome": "installed", "reason": "self-test passed",
          "at": "2025-01-31T08:00:00.000Z", "model_sha256": "c" * 64}


def test_status_with_health_and_update_and_an_older_status_without_them() -> None:
    topic = schema.topic_for("clinic-a", "edge-01", "status")
    for payload in (status_payload(health=HEALTH, update=UPDATE),  # a device with telemetry
                    status_payload(health=None, update=None),      # last will, no update yet
                    status_payload()):                             # before issue 10
        assert schema.decode(topic, schema.encode("status", payload)) == ("status", payload)


@pytest.mark.parametrize("field, change, words", [
    ("health", {"image": "..."}, r"status\.health: unknown field"),
    ("health", {"gpu_load_pct": 130.0}, r"status\.health\.gpu_load_pct: must be within \[0, 100\]"),
    ("health", {"fps": None}, r"status\.health\.fps: must not be null"),
    ("health", {"temp_max_c": float("inf")}, r"status\.health\.temp_max_c: must be a finite"),
    ("update", {"outcome": "maybe"}, r"status\.update\.outcome: must be one of"),
    ("update", {"model_sha256": "xyz"}, r"status\.update\.model_sha256: must be 64 hex"),
    ("update", {"reason": "x" * 301}, r"status\.update\.reason: must be <= 300"),
])
def test_bad_health_and_update_fields_are_named(field: str, change: dict, words: str) -> None:
    nested = {**(HEALTH if field == "health" else UPDATE), **change}
    with pytest.raises(schema.PayloadError, match=words):
        schema.validate("status", status_payload(**{field: nested}))


def test_update_model_command_with_and_without_a_checksum() -> None:
    topic = schema.topic_for("clinic-a", "edge-01", "cmd")
    url = "https://models.example.org/2025.06-1.sarco-bundle.tar"
    for command in ({"schema_version": 1, "kind": "cmd", "command": "update_model",
                     "url": url, "sha256": "0" * 64},
                    {"schema_version": 1, "kind": "cmd", "command": "update_model", "url": url,
                     "sha256": None},
                    {"schema_version": 1, "kind": "cmd", "command": "update_model",
                     "url": "http://10.0.0.5/v7.tar"}):
        assert schema.decode(topic, json.dumps(command).encode()) == ("cmd", command)


@pytest.mark.parametrize("change, words", [
    ({"url": "ftp://example.org/v7.tar"}, r"cmd\.url: must be an http:// or https:// URL"),
    ({"url": "/media/usb/v7.tar"}, r"cmd\.url: must be an http"),
    ({"url": "https://example.org/" + "a" * 500}, r"cmd\.url: .*at most 512 characters"),
    ({"url": "https://example.org/a b.tar"}, r"cmd\.url: must be an http"),
    ({"sha256": "0" * 63}, r"cmd\.sha256: must be 64 hex digits"),
    ({"sha256": "A" * 64}, r"cmd\.sha256: must be 64 hex digits"),
    ({"url": None}, r"cmd\.url: must not be null"),
    ({"command": "update_model", "url": "<drop>"}, r"cmd\.url: missing"),
    ({"command": "start_session", "screening_id": "SCR-0001"}, r"cmd\.sha256: only for update"),
])
def test_bad_update_model_commands_are_refused(change: dict, words: str) -> None:
    command = {"schema_version": 1, "kind": "cmd", "command": "update_model",
               "url": "https://example.org/v7.tar", "sha256": "0" * 64, **change}
    command = {key: value for key, value in command.items() if value != "<drop>"}
    with pytest.raises(schema.PayloadError, match=words):
        schema.validate("cmd", command)


def test_a_field_is_checked_on_its_own() -> None:
    schema.validate_field("status", "update", UPDATE)
    schema.validate_field("status", "update", None)
    with pytest.raises(schema.PayloadError, match=r"status\.update\.at: missing"):
        schema.validate_field("status", "update", {k: v for k, v in UPDATE.items() if k != "at"})


# --------------------------------------------------------------------------- hostile payloads
# Each of these passed the schema once and then broke the dashboard's store (a retry loop
# that stopped all ingest) or stored an impossible value.

RESULT_TOPIC = schema.topic_for("clinic-a", "edge-01", "result")


@pytest.mark.parametrize("field, value, words", [
    ("ended_at", "2026-13-45T25:61:61.000Z", "month must be in 1..12"),
    ("ended_at", "2025-02-29T09:31:02.250Z", "day is out of range"),
    ("ended_at", "２０２５-01-31T09:31:02.250Z", "ISO 8601"),  # full-width digits
    ("ended_at", "2025-01-31T09:31:02.250Z\n", "ISO 8601"),
    ("usable_frames", 10**30, r"within \[0, 10000000\]"),
    ("probability", 10**400, r"within \[0, 1\]"),
    ("seq", 2**63, r"within \[0, 9007199254740992\]"),
    ("score_logit", -1e300, r"within \[-1000, 1000\]"),
    ("screening_id", "SCR-0042\n", "pseudonymous"),
    ("screening_id", "SCR-００42", "pseudonymous"),
    ("site", "clinic-a\n", "lower-case letters"),
    ("app_version", "0.1.0\n", "printable"),
    ("app_version", "0.1\x00", "printable"),
    ("model", {"name": "tiny", "sha256": "a" * 64 + "\n"}, "64 hex digits"),
    ("result_id", str(uuid.UUID(int=179)).replace("-", "_"), "UUID"),
    ("result_id", "１" * 32, "UUID"),
    ("session_id", str(uuid.UUID(int=181)) + "\n", "UUID"),
])
def test_out_of_range_values_are_refused_naming_the_field(field: str, value: object,
                                                           words: str) -> None:
    with pytest.raises(schema.PayloadError, match=words) as error:
        schema.decode(RESULT_TOPIC, json.dumps(result_payload(**{field: value})).encode())
    assert f"result.{field}" in str(error.value)


@pytest.mark.parametrize("changes, words", [
    ({"ended_at": "2025-01-31T09:29:59.999Z"}, "ended_at: .* is before started_at"),
    ({"ended_at": "2025-02-08T09:30:00.001Z"}, "more than 7 days after started_at"),
    ({"usable_frames": 301}, r"301 usable \+ 180 skipped is more than processed_frames 300"),
    ({"usable_frames": 121}, r"121 usable \+ 180 skipped is more than processed_frames 300"),
    ({"probability": None, "score_logit": None, "uncertainty": None},
     "probability: null, but decision is sarcopenia"),
    ({"score_logit": None}, "score_logit: must be null exactly when probability is"),
    ({"uncertainty": None}, "uncertainty: must be null exactly when probability is"),
    ({"usable_frames": 19, "min_usable_frames": 20}, "sarcopenia from 19 usable frames"),
])
def test_a_result_whose_fields_disagree_is_refused(changes: dict, words: str) -> None:
    with pytest.raises(schema.PayloadError, match=words):
        schema.validate("result", result_payload(**changes))


def test_a_rescan_without_frames_is_valid() -> None:
    schema.validate("result", result_payload(
        decision="rescan", probability=None, score_logit=None, uncertainty=None,
        usable_frames=0, skipped={"no_tissue": 300, "frozen": 0, "transition": 0,
                                  "no_region": 0}))


@pytest.mark.parametrize("number, words", [
    ("NaN", "JSON has no NaN or Infinity"),
    ("Infinity", "JSON has no NaN or Infinity"),
    ("-Infinity", "JSON has no NaN or Infinity"),
    ("1e400", "'1e400' is too large for a double"),
])
def test_json_numbers_that_are_not_finite_are_refused(number: str, words: str) -> None:
    data = json.dumps(result_payload(probability=0.25)).replace("0.25", number).encode()
    with pytest.raises(schema.PayloadError, match=words):
        schema.decode(RESULT_TOPIC, data)


@pytest.mark.parametrize("data, words", [
    (json.dumps(result_payload()).encode("utf-16"), "not UTF-8"),
    (json.dumps(result_payload()).replace('"seq": 3', '"seq": 3, "seq": 4').encode(),
     "key 'seq' appears more than once"),
    (b"[" * 2000 + b"]" * 2000, "nested too deeply"),
    (b'{"schema_version": 1', "not JSON"),
])
def test_bytes_that_are_not_one_plain_json_object_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(schema.PayloadError, match=words):
        schema.decode(RESULT_TOPIC, data)


@pytest.mark.parametrize("spell", [
    str.upper,
    lambda text: "urn:uuid:" + text,
    lambda text: "{" + text.replace("-", "") + "}",
    lambda text: text.replace("-", "").upper(),
])
def test_ids_come_out_of_decode_in_one_canonical_spelling(spell) -> None:  # noqa: ANN001
    result_id, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    payload = result_payload(result_id=spell(result_id), session_id=spell(session_id))
    _, decoded = schema.decode(RESULT_TOPIC, json.dumps(payload).encode())
    assert (decoded["result_id"], decoded["session_id"]) == (result_id, session_id)


def test_device_times_must_lie_in_the_receivers_window() -> None:
    now = datetime(2025, 1, 31, 10, 0)
    data = json.dumps(result_payload()).encode()
    assert schema.decode(RESULT_TOPIC, data, now=now)[0] == "result"
    for year in (2099, 1970):
        stale = result_payload(started_at=f"{year}-01-31T09:30:00.000Z",
                               ended_at=f"{year}-01-31T09:31:02.250Z")
        with pytest.raises(schema.ClockError, match=rf"result\.started_at: {year}-.*clock"):
            schema.decode(RESULT_TOPIC, json.dumps(stale).encode(), now=now)
    ahead = now + schema.CLOCK_AHEAD + timedelta(seconds=1)
    with pytest.raises(schema.ClockError, match="more than 10 minutes ahead"):
        schema.decode(RESULT_TOPIC, data, now=now - timedelta(hours=1))
    status_topic = schema.topic_for("clinic-a", "edge-01", "status")
    # a last update may be years old, but not in the future
    old_update = status_payload(at="2025-01-31T09:59:00.000Z",
                                update={**UPDATE, "at": "2019-05-01T08:00:00.000Z"})
    schema.decode(status_topic, json.dumps(old_update).encode(), now=now)
    future_update = {**old_update, "update": {**UPDATE, "at": schema.utc_timestamp(
        (ahead - datetime(1970, 1, 1)).total_seconds())}}
    with pytest.raises(schema.ClockError, match=r"status\.update\.at"):
        schema.decode(status_topic, json.dumps(future_update).encode(), now=now)


def test_a_result_with_measurements_round_trips_and_one_without_still_validates() -> None:
    payload = result_payload(measurements=measurements_entry())
    topic = schema.topic_for("clinic-a", "edge-01", "result")
    assert schema.decode(topic, schema.encode("result", payload))[1]["measurements"] == measurements_entry()
    schema.validate("result", result_payload())  # devices without the measurement model
    nothing = measurements_entry(frames_measured=0, **dict.fromkeys(schema.MEASUREMENT_BOUNDS),
                                 spread=dict.fromkeys(schema.MEASUREMENT_BOUNDS))
    schema.validate("result", result_payload(measurements=nothing))


@pytest.mark.parametrize("changes, words", [
    ({"frames_measured": 121}, r"frames_measured: 121 is more than usable_frames 120"),
    ({"pennation_deg": 95.0}, r"measurements\.pennation_deg: must be within \[0, 90\]"),
    ({"echo_intensity": -1}, r"measurements\.echo_intensity: must be within \[0, 255\]"),
    ({"muscle_thickness_mm": None}, r"spread\.muscle_thickness_mm: must be null exactly when"),
    ({"muscle_thickness_px": None, "spread": {"muscle_thickness_mm": 0.9, "muscle_thickness_px": None,
                                              "pennation_deg": 1.8, "echo_intensity": 3.2}},
     r"muscle_thickness_mm: set without muscle_thickness_px"),
    ({"frames_measured": 0}, r"measurements\.muscle_thickness_mm: a value from 0 frames_measured"),
    ({"image": "..."}, r"result\.measurements: unknown field"),
])
def test_measurements_that_disagree_or_leave_their_range_are_refused(changes: dict, words: str) -> None:
    with pytest.raises(schema.PayloadError, match=words):
        schema.validate("result", result_payload(measurements=measurements_entry(**changes)))
