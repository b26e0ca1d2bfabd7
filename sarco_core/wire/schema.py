"""MQTT topic tree and JSON payload schema, version 1 (see docs/mqtt.md).

Dependency-free on purpose: the device builds payloads with it and the dashboard validates
what it receives with the very same module, so the two sides cannot drift apart.

Schemas are closed (an unknown field is an error). Together with the screening-id pattern and
the size limit this is what keeps a name, a date of birth or an image out of a payload: there
is no field to put them in.

Every field has a type, a range and a bound, and the fields of a result must agree with each
other, so whatever ``decode`` accepts can be stored: a payload that passes but then breaks
the receiver (an impossible date, a number too large for a column, ``Infinity``) would stop
a consumer that retries it. Validation lives here only; a consumer adds nothing but its own
clock (``decode(..., now=...)``), since only the receiver knows what time it is.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sarco_core.criteria import ASMI_METHODS, CATEGORIES, SEXES, STANDARDS
from sarco_core.errors import SarcoError

SCHEMA_VERSION = 1
TOPIC_ROOT = "sarco/v1"
TOPIC_KINDS = ("result", "live", "status", "cmd")
MAX_PAYLOAD_BYTES = 4096  # far below any image; a result is ~700 bytes

DECISIONS = ("sarcopenia", "no_sarcopenia", "rescan")
# what the device's screen said (sarco_core.screening): the decision, read on an interval
SCREEN_CALLS = ("positive", "negative", "borderline", "rescan")
QUALITY_STATES = ("ok", "no_tissue", "frozen", "transition", "no_region", "no_signal")
# the quality gate's refusals that a session counts (a result's ``skipped``); ``no_signal`` is
# not one: without a video signal no frame is processed at all
SKIP_REASONS = ("no_tissue", "frozen", "transition", "no_region")
AGGREGATIONS = ("mean_logit", "median_logit", "mean_probability")
STATUS_STATES = ("online", "offline")
COMMANDS = ("start_session", "end_session", "update_model")
UPDATE_OUTCOMES = ("installed", "rolled_back", "refused", "failed")
MAX_URL_CHARS = 512

# Bounds: generous for any real device, small enough for a 32-bit column (or, for counters
# that grow for ever, exact in every JSON reader).
MAX_SESSION_FRAMES = 10_000_000  # a week of scanning at 15 frames/s
MAX_COUNTER = 2**53  # seq, frame numbers, frames since the app started
MAX_BACKLOG = 10_000_000  # results queued on a device
MAX_FPS = 1000
MAX_LOGIT = 1000.0  # log-odds and their spread; a double's probability gives at most ~37
MAX_POWER_MW = 10_000_000
MAX_MEMORY_MB = 10_000_000
MAX_SESSION_LENGTH = timedelta(days=7)
# the receiver's window for device times (decode's ``now``): a clock this far off is wrong
CLOCK_AHEAD = timedelta(minutes=10)
CLOCK_BEHIND = timedelta(days=366)  # an outbox may hold results for months, not years

_NAME_PART = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}", re.ASCII)
_SCREENING_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,31}", re.ASCII)
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
                        r"(?:\.([0-9]{1,6}))?Z", re.ASCII)
_UUID_HEX = re.compile(r"[0-9a-f]{8}(-?)[0-9a-f]{4}\1[0-9a-f]{4}\1[0-9a-f]{4}\1[0-9a-f]{12}",
                       re.ASCII | re.IGNORECASE)
_HTTP_URL = re.compile(r"https?://[\x21-\x7e]+", re.ASCII | re.IGNORECASE)
_SHOWN_CHARS = 80  # of a refused value in an error message


class PayloadError(SarcoError, ValueError):
    """A payload or topic that does not follow schema version 1; the message names the field."""


class ClockError(PayloadError):
    """A well-formed payload whose device time lies outside the receiver's window: the
    device's clock is wrong, the payload itself breaks no rule (so it is safe to keep)."""


# --------------------------------------------------------------------------- topics


def topic_for(site: str, device: str, kind: str) -> str:
    """``sarco/v1/{site}/{device}/{kind}``; site and device are checked so a topic never
    carries a wildcard, a slash or free text."""
    for label, value in (("site", site), ("device", device)):
        problem = check_name_part(value)
        if problem:
            raise PayloadError(f"{label} {value!r}: {problem}")
    if kind not in TOPIC_KINDS:
        raise PayloadError(f"topic kind {kind!r}: must be one of {', '.join(TOPIC_KINDS)}")
    return f"{TOPIC_ROOT}/{site}/{device}/{kind}"


def parse_topic(topic: str) -> tuple[str, str, str]:
    """Split a topic into (site, device, kind); raise PayloadError if it is not in the tree."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise PayloadError(f"topic {topic!r}: expected {TOPIC_ROOT}/SITE/DEVICE/KIND")
    site, device, kind = parts[2:]
    topic_for(site, device, kind)  # validates the parts
    return site, device, kind


# --------------------------------------------------------------------------- field checks


def check_name_part(value: object) -> str | None:
    """Site and device names: lower-case letters, digits, '-' and '_' (safe in a topic)."""
    if not isinstance(value, str) or not _NAME_PART.fullmatch(value):
        return "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit"
    return None


def check_screening_id(value: object) -> str | None:
    """A pseudonymous screening code such as ``SCR-0042``: 3-32 letters, digits, '-' or '_'
    and at least one digit, which turns away a typed name."""
    if not isinstance(value, str) or not _SCREENING_ID.fullmatch(value):
        return "must be 3-32 letters, digits, '-' or '_' (a pseudonymous code, never a name)"
    if not any(ch.isdigit() for ch in value):
        return "must contain a digit (a pseudonymous code such as SCR-0042, never a name)"
    return None


def canonical_uuid(value: object) -> str | None:
    """The one spelling of a UUID the receivers store (lower case, hyphenated), from that
    spelling, upper case, 32 hex digits, ``{...}`` or ``urn:uuid:...``; None for anything
    else. Stricter than ``uuid.UUID``, which also takes underscores and non-ASCII digits."""
    if not isinstance(value, str):
        return None
    if value[:9].lower() == "urn:uuid:":
        value = value[9:]
    elif value.startswith("{") and value.endswith("}"):
        value = value[1:-1]
    return str(uuid.UUID(value)) if _UUID_HEX.fullmatch(value) else None


def parse_time(value: str) -> datetime:
    """The schema's ``2025-01-31T09:30:00.000Z`` as a naive UTC datetime (the dashboard's
    convention); ValueError for anything else, including impossible dates."""
    match = _TIMESTAMP.fullmatch(value)
    if not match:
        raise ValueError("not in the form 2025-01-31T09:30:00.000Z")
    *parts, fraction = match.groups()
    micro = int((fraction or "0").ljust(6, "0"))
    return datetime(*(int(part) for part in parts), micro)  # type: ignore[misc]


def _check_uuid(value: object) -> str | None:
    return None if canonical_uuid(value) else "must be a UUID (8-4-4-4-12 hex digits)"


def _check_timestamp(value: object) -> str | None:
    if not _TIMESTAMP.fullmatch(value):  # type: ignore[arg-type]
        return "must be an ISO 8601 UTC time in ASCII digits such as 2025-01-31T09:30:00.000Z"
    try:
        parse_time(value)  # type: ignore[arg-type]
    except ValueError as exc:
        return f"must be a real calendar time ({exc})"
    return None


def _number_text(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _within(low: float, high: float) -> Callable[[object], str | None]:
    """A finite number in [low, high]. Compared as it came (an int is never turned into a
    float: ``float(10**400)`` raises)."""
    bounds = f"[{_number_text(low)}, {_number_text(high)}]"

    def check(value: object) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number within {bounds}"
        inside = low <= value <= high  # type: ignore[operator]
        return None if inside else f"must be within {bounds}"

    return check


def _one_of(options: tuple[str, ...]) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        return None if value in options else f"must be one of {', '.join(options)}"

    return check


def _check_version(value: object) -> str | None:
    return None if value == SCHEMA_VERSION else f"must be {SCHEMA_VERSION} (this reader's version)"


def _check_sha256(value: object) -> str | None:
    return None if isinstance(value, str) and _SHA256.fullmatch(value) else "must be 64 hex digits"


def _printable(value: str) -> bool:
    """No control characters, line breaks, lone surrogates or NULs: text any database and
    any log line can hold."""
    return value.isprintable()


def _check_short_text(value: object) -> str | None:
    if (isinstance(value, str) and 0 < len(value) <= 64 and _printable(value)
            and value == value.strip()):
        return None
    return "must be 1-64 printable characters without surrounding spaces"


def _check_reason(value: object) -> str | None:
    if isinstance(value, str) and len(value) <= 300 and _printable(value):
        return None
    return "must be <= 300 printable characters"


def _check_url(value: object) -> str | None:
    if isinstance(value, str) and len(value) <= MAX_URL_CHARS and _HTTP_URL.fullmatch(value):
        return None
    return f"must be an http:// or https:// URL of at most {MAX_URL_CHARS} characters"


@dataclass(frozen=True)
class Field:
    """One payload field: accepted JSON types, whether null is allowed, an extra check or a
    nested closed schema."""

    types: tuple[type, ...]
    nullable: bool = False
    check: Callable[[object], str | None] | None = None
    nested: Mapping[str, Field] | None = None


_INT = (int,)
_NUMBER = (int, float)
_STR = (str,)
_PROBABILITY = _within(0, 1)
_FRAMES = _within(0, MAX_SESSION_FRAMES)
_COUNTER = _within(0, MAX_COUNTER)
_FPS = _within(0, MAX_FPS)
_PERCENT = _within(0, 100)
_MEMORY = _within(0, MAX_MEMORY_MB)

_MODEL_FIELDS: dict[str, Field] = {
    "name": Field(_STR, check=_check_short_text),
    "sha256": Field(_STR, check=_check_sha256),
}
_UNCERTAINTY_FIELDS: dict[str, Field] = {
    # spread of the per-frame logits: how much the frames disagree
    "logit_sd": Field(_NUMBER, check=_within(0, MAX_LOGIT)),
    # share of usable frames whose own decision equals the session decision
    "agreement": Field(_NUMBER, check=_PROBABILITY),
    # evidential models only: Dirichlet uncertainty u = K / S of the aggregated opinion
    "dirichlet_u": Field(_NUMBER, nullable=True, check=_PROBABILITY),
}
# how the screen called the result (sarco_core.screening); optional: older devices lack it
_SCREEN_FIELDS: dict[str, Field] = {
    "call": Field(_STR, check=_one_of(SCREEN_CALLS)),
    "low": Field(_NUMBER, nullable=True, check=_PROBABILITY),  # the probability's interval
    "high": Field(_NUMBER, nullable=True, check=_PROBABILITY),
    "level": Field(_NUMBER, check=_within(0.5, 0.999)),
    "independent_frames": Field(_INT, check=_within(1, MAX_SESSION_FRAMES)),
    "evidence": Field((bool,)),
}
# the team's confirmation measurements after a positive screen (the device's calculator):
# numbers and closed codes only, never text; optional, and null where not measured
MEASURE_BOUNDS = {"grip_kg": 200, "gait_speed_m_s": 10, "chair_stand_s": 600, "asmi_kg_m2": 30}
_ASSESSMENT_FIELDS: dict[str, Field] = {
    "sex": Field(_STR, nullable=True, check=_one_of(SEXES)),
    **{name: Field(_NUMBER, nullable=True, check=_within(0, bound))
       for name, bound in MEASURE_BOUNDS.items()},
    "asmi_method": Field(_STR, nullable=True, check=_one_of(ASMI_METHODS)),
    **{standard: Field(_STR, check=_one_of(CATEGORIES)) for standard in STANDARDS},
}
# muscle measurements over the session's usable frames (sarco_core.measure, docs/measurements.md):
# the median per quantity, null where no frame measured it, and its IQR; optional (devices
# without the measurement model send none). Bounds: any muscle a probe can image, in any frame
MEASUREMENT_BOUNDS = {"muscle_thickness_mm": 300, "muscle_thickness_px": 20_000,
                      "pennation_deg": 90, "echo_intensity": 255}
_MEASUREMENT_FIELDS: dict[str, Field] = {
    **{name: Field(_NUMBER, nullable=True, check=_within(0, bound))
       for name, bound in MEASUREMENT_BOUNDS.items()},
    "frames_measured": Field(_INT, check=_FRAMES),
    "spread": Field((dict,), nested={name: Field(_NUMBER, nullable=True, check=_within(0, bound))
                                     for name, bound in MEASUREMENT_BOUNDS.items()}),
    "model": Field((dict,), nested=_MODEL_FIELDS),  # the aponeurosis model that measured
}
_SKIPPED_FIELDS: dict[str, Field] = {
    reason: Field(_INT, check=_FRAMES) for reason in SKIP_REASONS
}
# the device's health (edge_app.deploy.telemetry fills it): tegrastats, null off a Jetson or
# before its first line, and the app's own figures
HEALTH_FIELDS: dict[str, Field] = {
    "gpu_load_pct": Field(_NUMBER, nullable=True, check=_PERCENT),
    "cpu_load_pct": Field(_NUMBER, nullable=True, check=_PERCENT),
    "temp_max_c": Field(_NUMBER, nullable=True, check=_within(-100, 200)),
    "power_mw": Field(_INT, nullable=True, check=_within(0, MAX_POWER_MW)),
    "ram_used_mb": Field(_INT, nullable=True, check=_MEMORY),
    "ram_total_mb": Field(_INT, nullable=True, check=_MEMORY),
    "swap_used_mb": Field(_INT, nullable=True, check=_MEMORY),
    "fps": Field(_NUMBER, check=_FPS),
    "frames_processed": Field(_INT, check=_COUNTER),
    "frames_rejected": Field(_INT, check=_COUNTER),  # held back by the quality gate
    "frame_errors": Field(_INT, check=_COUNTER),
    "queue_length": Field(_INT, nullable=True, check=_within(0, MAX_BACKLOG)),  # null: no outbox
}
# the last model update's outcome (update/last-update.json, docs/deployment.md)
UPDATE_FIELDS: dict[str, Field] = {
    "version": Field(_STR, nullable=True, check=_check_short_text),
    "outcome": Field(_STR, check=_one_of(UPDATE_OUTCOMES)),
    "reason": Field(_STR, check=_check_reason),
    "at": Field(_STR, check=_check_timestamp),
    "model_sha256": Field(_STR, nullable=True, check=_check_sha256),
}
_COMMON: dict[str, Field] = {
    "schema_version": Field(_INT, check=_check_version),
    "site": Field(_STR, check=check_name_part),
    "device": Field(_STR, check=check_name_part),
}

SCHEMAS: dict[str, dict[str, Field]] = {
    "result": {
        **_COMMON,
        "kind": Field(_STR, check=_one_of(("result",))),
        "result_id": Field(_STR, check=_check_uuid),
        "seq": Field(_INT, check=_COUNTER),
        "session_id": Field(_STR, check=_check_uuid),
        "screening_id": Field(_STR, check=check_screening_id),
        "started_at": Field(_STR, check=_check_timestamp),
        "ended_at": Field(_STR, check=_check_timestamp),
        "decision": Field(_STR, check=_one_of(DECISIONS)),
        "probability": Field(_NUMBER, nullable=True, check=_PROBABILITY),
        "score_logit": Field(_NUMBER, nullable=True, check=_within(-MAX_LOGIT, MAX_LOGIT)),
        "threshold": Field(_NUMBER, check=_PROBABILITY),
        "aggregation": Field(_STR, check=_one_of(AGGREGATIONS)),
        "uncertainty": Field((dict,), nullable=True, nested=_UNCERTAINTY_FIELDS),
        "usable_frames": Field(_INT, check=_FRAMES),
        "processed_frames": Field(_INT, check=_FRAMES),
        "min_usable_frames": Field(_INT, check=_FRAMES),
        "skipped": Field((dict,), nested=_SKIPPED_FIELDS),
        "model": Field((dict,), nested=_MODEL_FIELDS),
        "app_version": Field(_STR, check=_check_short_text),
        "screen": Field((dict,), nested=_SCREEN_FIELDS),
        "assessment": Field((dict,), nested=_ASSESSMENT_FIELDS),
        "measurements": Field((dict,), nested=_MEASUREMENT_FIELDS),
    },
    "live": {
        **_COMMON,
        "kind": Field(_STR, check=_one_of(("live",))),
        "session_id": Field(_STR, check=_check_uuid),
        "screening_id": Field(_STR, check=check_screening_id),
        "frame": Field(_INT, check=_COUNTER),
        "captured_at": Field(_STR, check=_check_timestamp),
        "quality": Field(_STR, check=_one_of(QUALITY_STATES)),
        "probability": Field(_NUMBER, nullable=True, check=_PROBABILITY),
        "smoothed_probability": Field(_NUMBER, nullable=True, check=_PROBABILITY),
        "usable_frames": Field(_INT, check=_FRAMES),
        "fps": Field(_NUMBER, check=_FPS),
    },
    "status": {
        **_COMMON,
        "kind": Field(_STR, check=_one_of(("status",))),
        "state": Field(_STR, check=_one_of(STATUS_STATES)),
        # null in the last will, which is fixed when the connection opens
        "at": Field(_STR, nullable=True, check=_check_timestamp),
        "app_version": Field(_STR, check=_check_short_text),
        "model": Field((dict,), nullable=True, nested=_MODEL_FIELDS),
        "queued_results": Field(_INT, nullable=True, check=_within(0, MAX_BACKLOG)),
        # why results wait although connected (no dashboard subscribed, broker refusal); optional
        "backlog_reason": Field(_STR, nullable=True, check=_check_reason),
        # optional, so devices without deployment telemetry (and older ones) still validate
        "health": Field((dict,), nullable=True, nested=HEALTH_FIELDS),
        "update": Field((dict,), nullable=True, nested=UPDATE_FIELDS),
    },
    "cmd": {
        "schema_version": Field(_INT, check=_check_version),
        "kind": Field(_STR, check=_one_of(("cmd",))),
        "command": Field(_STR, check=_one_of(COMMANDS)),
        "screening_id": Field(_STR, nullable=True, check=check_screening_id),
        # update_model: the signed package's address and, optionally, its SHA-256
        "url": Field(_STR, check=_check_url),
        "sha256": Field(_STR, nullable=True, check=_check_sha256),
    },
}
_OPTIONAL = {"result": {"screen", "assessment", "measurements"}, "status": {"health", "update", "backlog_reason"},
             "cmd": {"screening_id", "url", "sha256"}}
_UPDATE_ARGUMENTS = {"url", "sha256"}
_ID_FIELDS = ("result_id", "session_id")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _validate_fields(payload: Mapping[str, Any], fields: Mapping[str, Field], where: str,
                     optional: set[str]) -> None:
    unknown = sorted(set(payload) - set(fields))
    if unknown:
        names = ", ".join(_shown(name) for name in unknown)
        raise PayloadError(f"{where}: unknown field(s) {names} (schemas are closed)")
    for name, spec in fields.items():
        path = f"{where}.{name}"
        if name not in payload:
            if name in optional:
                continue
            raise PayloadError(f"{path}: missing")
        value = payload[name]
        if value is None:
            if spec.nullable:
                continue
            raise PayloadError(f"{path}: must not be null")
        # bool is an int in Python but not a number in this schema
        if (isinstance(value, bool) and bool not in spec.types) or \
                not isinstance(value, spec.types):
            names = "/".join(t.__name__ for t in spec.types)
            raise PayloadError(f"{path}: expected {names}, got {type(value).__name__}")
        if spec.nested is not None:
            _validate_fields(value, spec.nested, path, set())
        elif spec.check is not None:
            problem = spec.check(value)
            if problem:
                raise PayloadError(f"{path}: {problem} (got {_shown(value)})")


def validate(kind: str, payload: Mapping[str, Any]) -> None:
    """Raise PayloadError naming the first field that breaks schema version 1 for ``kind``:
    its type, its range, or its agreement with the other fields."""
    if kind not in SCHEMAS:
        raise PayloadError(f"unknown payload kind {kind!r}: one of {', '.join(SCHEMAS)}")
    if not isinstance(payload, Mapping):
        raise PayloadError(f"{kind}: payload must be a JSON object")
    _validate_fields(payload, SCHEMAS[kind], kind, _OPTIONAL.get(kind, set()))
    if kind == "cmd":
        _check_command_arguments(payload)
    elif kind == "result":
        _check_result_agrees(payload)


def validate_field(kind: str, name: str, value: Any) -> None:
    """Check one field of a ``kind`` payload on its own: for parts a device fills from files
    it does not fully control (a hand-edited last-update.json must not break the status)."""
    _validate_fields({name: value}, {name: SCHEMAS[kind][name]}, kind, set())


def _check_command_arguments(command: Mapping[str, Any]) -> None:
    """``url`` and ``sha256`` belong to ``update_model``, which cannot do without ``url``."""
    if command["command"] == "update_model":
        if command.get("url") is None:
            raise PayloadError("cmd.url: missing (update_model needs the package's URL)")
        return
    stray = sorted(_UPDATE_ARGUMENTS & set(command))
    if stray:
        raise PayloadError(f"cmd.{stray[0]}: only for update_model, not {command['command']}")


def _check_result_agrees(result: Mapping[str, Any]) -> None:
    """What one session can produce (edge_app.session): frames counted once, a decision only
    with a probability from enough frames, an end after the start."""
    started, ended = parse_time(result["started_at"]), parse_time(result["ended_at"])
    if ended < started:
        raise PayloadError(f"result.ended_at: {result['ended_at']} is before started_at "
                           f"{result['started_at']}")
    if ended - started > MAX_SESSION_LENGTH:
        raise PayloadError(f"result.ended_at: {result['ended_at']} is more than "
                           f"{MAX_SESSION_LENGTH.days} days after started_at")
    usable, processed = result["usable_frames"], result["processed_frames"]
    skipped = sum(result["skipped"].values())
    if usable + skipped > processed:
        raise PayloadError(f"result.usable_frames: {usable} usable + {skipped} skipped is more "
                           f"than processed_frames {processed}")
    missing = [name for name in ("score_logit", "uncertainty")
               if (result[name] is None) != (result["probability"] is None)]
    if missing:
        raise PayloadError(f"result.{missing[0]}: must be null exactly when probability is")
    if result["decision"] != "rescan":
        if result["probability"] is None:
            raise PayloadError(f"result.probability: null, but decision is {result['decision']}")
        if usable < result["min_usable_frames"]:
            raise PayloadError(f"result.decision: {result['decision']} from {usable} usable "
                               f"frames, below min_usable_frames {result['min_usable_frames']}")
    if "screen" in result:
        _check_screen_agrees(result)
    if "measurements" in result:
        _check_measurements_agree(result)


# the screen's call each decision allows: a borderline call is made on either side
_CALLS_OF = {"sarcopenia": ("positive", "borderline"),
             "no_sarcopenia": ("negative", "borderline"), "rescan": ("rescan",)}


def _check_screen_agrees(result: Mapping[str, Any]) -> None:
    """The screen's call is the decision read on an interval around the probability."""
    screen, decision = result["screen"], result["decision"]
    if screen["call"] not in _CALLS_OF[decision]:
        raise PayloadError(f"result.screen.call: {screen['call']} with decision {decision}")
    low, high, probability = screen["low"], screen["high"], result["probability"]
    if (low is None) != (high is None) or (low is not None and probability is None):
        raise PayloadError("result.screen: low and high are both null or both set, and only "
                           "with a probability")
    if low is not None and not low <= probability <= high:
        raise PayloadError(f"result.screen: interval [{low}, {high}] must hold the probability "
                           f"{probability}")


def _check_measurements_agree(result: Mapping[str, Any]) -> None:
    """Measurements come from usable frames only; a quantity and its spread are null together;
    no value without a measured frame, and millimetres only beside pixels."""
    measured = result["measurements"]
    if measured["frames_measured"] > result["usable_frames"]:
        raise PayloadError(f"result.measurements.frames_measured: {measured['frames_measured']} "
                           f"is more than usable_frames {result['usable_frames']}")
    for name in MEASUREMENT_BOUNDS:
        if (measured[name] is None) != (measured["spread"][name] is None):
            raise PayloadError(f"result.measurements.spread.{name}: must be null exactly when "
                               f"{name} is")
        if measured[name] is not None and measured["frames_measured"] == 0:
            raise PayloadError(f"result.measurements.{name}: a value from 0 frames_measured")
    if measured["muscle_thickness_mm"] is not None and measured["muscle_thickness_px"] is None:
        raise PayloadError("result.measurements.muscle_thickness_mm: set without "
                           "muscle_thickness_px")


def _device_times(kind: str, payload: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(field, time, may be old) of the device-clock times in a payload."""
    times = {"result": [("started_at", True), ("ended_at", True)],
             "live": [("captured_at", True)], "status": [("at", True)]}.get(kind, [])
    found = [(f"{kind}.{name}", payload[name], old) for name, old in times
             if payload[name] is not None]
    if kind == "status" and payload.get("update"):  # the last update may be years ago
        found.append(("status.update.at", payload["update"]["at"], False))
    return found


def check_clock(kind: str, payload: Mapping[str, Any], now: datetime) -> None:
    """Raise ClockError when a device time is more than CLOCK_AHEAD after ``now`` (naive UTC,
    the receiver's clock) or, except a past update's, more than CLOCK_BEHIND before it: the
    device's clock is wrong, and a result dated 1970 or 2099 would land on a wrong day (and
    a status from the future would hide every real one after it)."""
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc).replace(tzinfo=None)
    for path, value, may_be_old in _device_times(kind, payload):
        at = parse_time(value)
        if at > now + CLOCK_AHEAD:
            raise ClockError(f"{path}: {value} is more than {_minutes(CLOCK_AHEAD)} ahead of "
                             f"the receiver's clock ({_format_time(now)})")
        if may_be_old and at < now - CLOCK_BEHIND:
            raise ClockError(f"{path}: {value} is more than {CLOCK_BEHIND.days} days before "
                             f"the receiver's clock ({_format_time(now)})")


def _minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:g} minutes"


def encode(kind: str, payload: Mapping[str, Any]) -> bytes:
    """Validate and serialise (compact UTF-8 JSON, no NaN) a payload for publishing."""
    validate(kind, payload)
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False, sort_keys=True).encode()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"{kind}: {len(data)} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit")
    return data


def decode(topic: str, data: bytes, now: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """Parse and validate a received message; returns (kind, payload) with the ids in their
    canonical spelling (so one result is one key however a sender wrote it). With ``now``
    (naive UTC: the receiver's clock) the device times must lie in the receiver's window
    (check_clock). Raises PayloadError, and nothing else, for any topic and bytes."""
    _, _, kind = parse_topic(topic)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"{topic}: {len(data)} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit")
    payload = _parse_json(topic, bytes(data))
    validate(kind, payload)
    if kind != "cmd":
        site, device, _ = parse_topic(topic)
        if (payload["site"], payload["device"]) != (site, device):
            raise PayloadError(f"{topic}: payload site/device differ from the topic")
    for name in _ID_FIELDS:
        if name in payload:
            payload[name] = canonical_uuid(payload[name])
    if now is not None:
        check_clock(kind, payload, now)
    return kind, payload


def _parse_json(topic: str, data: bytes) -> Any:
    """Strict JSON: UTF-8 only (json.loads would also guess UTF-16 and UTF-32), no NaN or
    Infinity (json.loads takes them by default, and 1e400 as infinity), no repeated key
    (which one would count?)."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant,
                          parse_float=_finite_float, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{topic}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise PayloadError(f"{topic}: JSON nested too deeply") from None
    except PayloadError as exc:
        raise PayloadError(f"{topic}: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError and the int digit limit
        raise PayloadError(f"{topic}: not JSON ({exc})") from None


def _refuse_constant(name: str) -> float:
    raise PayloadError(f"not JSON: {name} is not a number (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PayloadError(f"number {_shown(text)} is too large for a double")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        keys = [key for key, _ in pairs]
        repeated = next(key for key in keys if keys.count(key) > 1)
        raise PayloadError(f"key {_shown(repeated)} appears more than once")
    return result


def utc_timestamp(epoch_seconds: float) -> str:
    """The schema's time format: ISO 8601 UTC with milliseconds and a ``Z``."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).replace(tzinfo=None)
    return _format_time(moment)


def _format_time(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z"
