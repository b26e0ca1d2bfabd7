"""MQTT topic tree and JSON payload schema, version 1 (see docs/mqtt.md).

Dependency-free on purpose: the device builds payloads with it and the dashboard validates
what it receives with the very same module, so the two sides cannot drift apart.

Schemas are closed (an unknown field is an error). Together with the screening-id pattern and
the size limit this is what keeps a name, a date of birth or an image out of a payload: there
is no field to put them in.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

SCHEMA_VERSION = 1
TOPIC_ROOT = "sarco/v1"
TOPIC_KINDS = ("result", "live", "status", "cmd")
MAX_PAYLOAD_BYTES = 4096  # far below any image; a result is ~700 bytes

DECISIONS = ("sarcopenia", "no_sarcopenia", "rescan")
QUALITY_STATES = ("ok", "no_tissue", "frozen", "transition", "no_region", "no_signal")
AGGREGATIONS = ("mean_logit", "median_logit", "mean_probability")
STATUS_STATES = ("online", "offline")
COMMANDS = ("start_session", "end_session", "update_model")
UPDATE_OUTCOMES = ("installed", "rolled_back", "refused", "failed")
MAX_URL_CHARS = 512

_NAME_PART = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SCREENING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,31}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
_HTTP_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)


class PayloadError(ValueError):
    """A payload or topic that does not follow schema version 1; the message names the field."""


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
    if not isinstance(value, str) or not _NAME_PART.match(value):
        return "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit"
    return None


def check_screening_id(value: object) -> str | None:
    """A pseudonymous screening code such as ``SCR-0042``: 3-32 letters, digits, '-' or '_'
    and at least one digit, which turns away a typed name."""
    if not isinstance(value, str) or not _SCREENING_ID.match(value):
        return "must be 3-32 letters, digits, '-' or '_' (a pseudonymous code, never a name)"
    if not any(ch.isdigit() for ch in value):
        return "must contain a digit (a pseudonymous code such as SCR-0042, never a name)"
    return None


def _check_uuid(value: object) -> str | None:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return "must be a UUID"
    return None


def _check_timestamp(value: object) -> str | None:
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        return "must be an ISO 8601 UTC time such as 2025-01-31T09:30:00.000Z"
    return None


def _check_probability(value: object) -> str | None:
    return None if 0.0 <= float(value) <= 1.0 else "must be within [0, 1]"  # type: ignore[arg-type]


def _check_finite(value: object) -> str | None:
    return None if math.isfinite(float(value)) else "must be a finite number"  # type: ignore[arg-type]


def _check_non_negative(value: object) -> str | None:
    return None if float(value) >= 0 else "must be >= 0"  # type: ignore[arg-type]


def _one_of(options: tuple[str, ...]) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        return None if value in options else f"must be one of {', '.join(options)}"

    return check


def _check_version(value: object) -> str | None:
    return None if value == SCHEMA_VERSION else f"must be {SCHEMA_VERSION} (this reader's version)"


def _check_sha256(value: object) -> str | None:
    return None if isinstance(value, str) and _SHA256.match(value) else "must be 64 hex digits"


def _check_short_text(value: object) -> str | None:
    return None if isinstance(value, str) and 0 < len(value) <= 64 else "must be 1-64 characters"


def _check_reason(value: object) -> str | None:
    return None if isinstance(value, str) and len(value) <= 300 else "must be <= 300 characters"


def _check_percent(value: object) -> str | None:
    return None if 0 <= float(value) <= 100 else "must be within [0, 100]"  # type: ignore[arg-type]


def _check_url(value: object) -> str | None:
    if isinstance(value, str) and len(value) <= MAX_URL_CHARS and _HTTP_URL.match(value):
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

_MODEL_FIELDS: dict[str, Field] = {
    "name": Field(_STR, check=_check_short_text),
    "sha256": Field(_STR, check=_check_sha256),
}
_UNCERTAINTY_FIELDS: dict[str, Field] = {
    # spread of the per-frame logits: how much the frames disagree
    "logit_sd": Field(_NUMBER, check=_check_non_negative),
    # share of usable frames whose own decision equals the session decision
    "agreement": Field(_NUMBER, check=_check_probability),
    # evidential models only: Dirichlet uncertainty u = K / S of the aggregated opinion
    "dirichlet_u": Field(_NUMBER, nullable=True, check=_check_probability),
}
_SKIPPED_FIELDS: dict[str, Field] = {
    reason: Field(_INT, check=_check_non_negative)
    for reason in ("no_tissue", "frozen", "transition", "no_region")
}
# the device's health (edge_app.deploy.telemetry fills it): tegrastats, null off a Jetson or
# before its first line, and the app's own figures
HEALTH_FIELDS: dict[str, Field] = {
    "gpu_load_pct": Field(_NUMBER, nullable=True, check=_check_percent),
    "cpu_load_pct": Field(_NUMBER, nullable=True, check=_check_percent),
    "temp_max_c": Field(_NUMBER, nullable=True, check=_check_finite),
    "power_mw": Field(_INT, nullable=True, check=_check_non_negative),
    "ram_used_mb": Field(_INT, nullable=True, check=_check_non_negative),
    "ram_total_mb": Field(_INT, nullable=True, check=_check_non_negative),
    "swap_used_mb": Field(_INT, nullable=True, check=_check_non_negative),
    "fps": Field(_NUMBER, check=_check_non_negative),
    "frames_processed": Field(_INT, check=_check_non_negative),
    "frames_rejected": Field(_INT, check=_check_non_negative),  # held back by the quality gate
    "frame_errors": Field(_INT, check=_check_non_negative),
    "queue_length": Field(_INT, nullable=True, check=_check_non_negative),  # null: no outbox
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
        "seq": Field(_INT, check=_check_non_negative),
        "session_id": Field(_STR, check=_check_uuid),
        "screening_id": Field(_STR, check=check_screening_id),
        "started_at": Field(_STR, check=_check_timestamp),
        "ended_at": Field(_STR, check=_check_timestamp),
        "decision": Field(_STR, check=_one_of(DECISIONS)),
        "probability": Field(_NUMBER, nullable=True, check=_check_probability),
        "score_logit": Field(_NUMBER, nullable=True, check=_check_finite),
        "threshold": Field(_NUMBER, check=_check_probability),
        "aggregation": Field(_STR, check=_one_of(AGGREGATIONS)),
        "uncertainty": Field((dict,), nullable=True, nested=_UNCERTAINTY_FIELDS),
        "usable_frames": Field(_INT, check=_check_non_negative),
        "processed_frames": Field(_INT, check=_check_non_negative),
        "min_usable_frames": Field(_INT, check=_check_non_negative),
        "skipped": Field((dict,), nested=_SKIPPED_FIELDS),
        "model": Field((dict,), nested=_MODEL_FIELDS),
        "app_version": Field(_STR, check=_check_short_text),
    },
    "live": {
        **_COMMON,
        "kind": Field(_STR, check=_one_of(("live",))),
        "session_id": Field(_STR, check=_check_uuid),
        "screening_id": Field(_STR, check=check_screening_id),
        "frame": Field(_INT, check=_check_non_negative),
        "captured_at": Field(_STR, check=_check_timestamp),
        "quality": Field(_STR, check=_one_of(QUALITY_STATES)),
        "probability": Field(_NUMBER, nullable=True, check=_check_probability),
        "smoothed_probability": Field(_NUMBER, nullable=True, check=_check_probability),
        "usable_frames": Field(_INT, check=_check_non_negative),
        "fps": Field(_NUMBER, check=_check_non_negative),
    },
    "status": {
        **_COMMON,
        "kind": Field(_STR, check=_one_of(("status",))),
        "state": Field(_STR, check=_one_of(STATUS_STATES)),
        # null in the last will, which is fixed when the connection opens
        "at": Field(_STR, nullable=True, check=_check_timestamp),
        "app_version": Field(_STR, check=_check_short_text),
        "model": Field((dict,), nullable=True, nested=_MODEL_FIELDS),
        "queued_results": Field(_INT, nullable=True, check=_check_non_negative),
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
_OPTIONAL = {"status": {"health", "update"}, "cmd": {"screening_id", "url", "sha256"}}
_UPDATE_ARGUMENTS = {"url", "sha256"}


def _validate_fields(payload: Mapping[str, Any], fields: Mapping[str, Field], where: str,
                     optional: set[str]) -> None:
    unknown = sorted(set(payload) - set(fields))
    if unknown:
        raise PayloadError(f"{where}: unknown field(s) {', '.join(unknown)} (schemas are closed)")
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
        if isinstance(value, bool) or not isinstance(value, spec.types):
            names = "/".join(t.__name__ for t in spec.types)
            raise PayloadError(f"{path}: expected {names}, got {type(value).__name__}")
        if spec.nested is not None:
            _validate_fields(value, spec.nested, path, set())
        elif spec.check is not None:
            problem = spec.check(value)
            if problem:
                raise PayloadError(f"{path}: {problem} (got {value!r})")


def validate(kind: str, payload: Mapping[str, Any]) -> None:
    """Raise PayloadError naming the first field that breaks schema version 1 for ``kind``."""
    if kind not in SCHEMAS:
        raise PayloadError(f"unknown payload kind {kind!r}: one of {', '.join(SCHEMAS)}")
    if not isinstance(payload, Mapping):
        raise PayloadError(f"{kind}: payload must be a JSON object")
    _validate_fields(payload, SCHEMAS[kind], kind, _OPTIONAL.get(kind, set()))
    if kind == "cmd":
        _check_command_arguments(payload)


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


def encode(kind: str, payload: Mapping[str, Any]) -> bytes:
    """Validate and serialise (compact UTF-8 JSON, no NaN) a payload for publishing."""
    validate(kind, payload)
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False, sort_keys=True).encode()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"{kind}: {len(data)} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit")
    return data


def decode(topic: str, data: bytes) -> tuple[str, dict[str, Any]]:
    """Parse and validate a received message; returns (kind, payload). For consumers."""
    _, _, kind = parse_topic(topic)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"{topic}: {len(data)} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit")
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"{topic}: not JSON ({exc})") from None
    validate(kind, payload)
    if kind != "cmd":
        site, device, _ = parse_topic(topic)
        if (payload["site"], payload["device"]) != (site, device):
            raise PayloadError(f"{topic}: payload site/device differ from the topic")
    return kind, payload


def utc_timestamp(epoch_seconds: float) -> str:
    """The schema's time format: ISO 8601 UTC with milliseconds and a ``Z``."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
