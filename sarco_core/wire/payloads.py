"""The payloads a device sends, as typed objects: the one place a live reading, a session
result or a status is turned into its wire dict.

The device's pipeline, the dashboard's fleet simulator and the chaos benchmark all build them
here, so a field is added, renamed or bounded once (``fps`` is held to ``schema.MAX_FPS`` in
``LivePayload.to_dict`` and nowhere else). ``to_dict`` gives the dict ``schema.encode``
validates and serialises (with sorted keys, so the order of the dict never reaches the wire);
times are given as epoch seconds and written in the schema's format here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sarco_core.criteria import STANDARDS, Measurements, MeasurementError, diagnose
from sarco_core.screening import BorderlineRule, ScreenCall
from sarco_core.wire import schema


@dataclass(frozen=True)
class Uncertainty:
    """How much to trust a session's probability (a result's ``uncertainty``)."""

    logit_sd: float  # spread of the per-frame log-odds
    agreement: float  # share of usable frames whose own decision is the session's
    dirichlet_u: float | None = None  # evidential models only

    def to_dict(self) -> dict[str, Any]:
        return {"logit_sd": self.logit_sd, "agreement": self.agreement,
                "dirichlet_u": self.dirichlet_u}


def assessment(measurements: Measurements) -> dict[str, Any]:
    """A result's optional ``assessment``: what the team measured after a positive screen and
    the category each standard gives (``undetermined`` where a measurement is missing or, for
    AWGS 2019, the ASMI method), as numbers and closed codes only."""
    entry: dict[str, Any] = {"sex": measurements.sex}
    entry.update({name: getattr(measurements, name) for name in schema.MEASURE_BOUNDS})
    entry["asmi_method"] = measurements.asmi_method
    for standard in STANDARDS:
        try:
            entry[standard] = diagnose(measurements, standard).category
        except MeasurementError:
            entry[standard] = "undetermined"
    return entry


@dataclass(frozen=True)
class MuscleMeasurements:
    """A result's optional ``measurements``: the session's medians over its measured frames,
    their IQR, the frame count and the aponeurosis model that measured them."""

    values: Mapping[str, float | None]  # schema.MEASUREMENT_BOUNDS' names -> session median
    spread: Mapping[str, float | None]
    frames_measured: int
    model_name: str
    model_sha256: str

    @classmethod
    def of_session(cls, session: Any, model_name: str, model_sha256: str) -> MuscleMeasurements:
        """From a ``sarco_core.measure.SessionMeasurement`` (read by attribute, so the wire
        does not import the measuring code and its OpenCV)."""
        names = schema.MEASUREMENT_BOUNDS
        return cls({name: getattr(session, name) for name in names},
                   {name: session.spread.get(name) for name in names},
                   session.frames_measured, model_name, model_sha256)

    def to_dict(self) -> dict[str, Any]:
        names = schema.MEASUREMENT_BOUNDS
        return {**{name: _rounded(self.values.get(name)) for name in names},
                "frames_measured": self.frames_measured,
                "spread": {name: _rounded(self.spread.get(name)) for name in names},
                "model": {"name": self.model_name, "sha256": self.model_sha256}}


def _rounded(value: float | None) -> float | None:
    """Four decimals: far below any measurement's error, and the payload stays small."""
    return None if value is None else round(float(value), 4)


@dataclass(frozen=True)
class LivePayload:
    """One live reading during a session (QoS 0: never queued, stale a second later)."""

    site: str
    device: str
    session_id: str
    screening_id: str
    frame: int
    captured_at: float  # epoch seconds
    quality: str
    probability: float | None  # this frame's, when it passed the gate
    smoothed_probability: float | None  # the live reading on the screen
    usable_frames: int
    fps: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": schema.SCHEMA_VERSION, "kind": "live",
            "site": self.site, "device": self.device,
            "session_id": self.session_id, "screening_id": self.screening_id,
            "frame": self.frame, "captured_at": schema.utc_timestamp(self.captured_at),
            "quality": self.quality,
            "probability": self.probability,
            "smoothed_probability": self.smoothed_probability,
            "usable_frames": self.usable_frames,
            # a file replayed faster than real time can pass the schema's bound: report the bound
            "fps": min(self.fps, schema.MAX_FPS),
        }


@dataclass(frozen=True)
class ResultPayload:
    """One session result. ``seq`` is the device outbox's number; None until it is queued
    (``to_dict`` then leaves it out: ``Outbox.add`` adds it)."""

    result_id: str
    session_id: str
    site: str
    device: str
    screening_id: str
    started_at: float  # epoch seconds
    ended_at: float
    decision: str
    probability: float | None
    score_logit: float | None
    threshold: float
    aggregation: str
    uncertainty: Uncertainty | None
    usable_frames: int
    processed_frames: int
    min_usable_frames: int
    skipped: Mapping[str, int]
    model_name: str
    model_sha256: str
    app_version: str
    seq: int | None = None
    call: ScreenCall | None = None  # what the screen said; None from devices before it
    rule: BorderlineRule | None = None  # how ``call`` was made (with ``call``)
    measurements: MuscleMeasurements | None = None  # None: the device measures nothing

    def to_dict(self) -> dict[str, Any]:
        payload = {
            "schema_version": schema.SCHEMA_VERSION, "kind": "result",
            "result_id": self.result_id, "session_id": self.session_id,
            "site": self.site, "device": self.device, "screening_id": self.screening_id,
            "started_at": schema.utc_timestamp(self.started_at),
            "ended_at": schema.utc_timestamp(self.ended_at),
            "decision": self.decision, "probability": self.probability,
            "score_logit": self.score_logit, "threshold": self.threshold,
            "aggregation": self.aggregation,
            "uncertainty": None if self.uncertainty is None else self.uncertainty.to_dict(),
            "usable_frames": self.usable_frames,
            "processed_frames": self.processed_frames,
            "min_usable_frames": self.min_usable_frames,
            "skipped": dict(self.skipped),
            "model": {"name": self.model_name, "sha256": self.model_sha256},
            "app_version": self.app_version,
        }
        if self.seq is not None:
            payload["seq"] = self.seq
        if self.call is not None and self.rule is not None:
            payload["screen"] = {"call": self.call.call, "low": self.call.low,
                                 "high": self.call.high, "level": self.rule.level,
                                 "independent_frames": self.rule.independent_frames,
                                 "evidence": self.rule.evidence}
        if self.measurements is not None:
            payload["measurements"] = self.measurements.to_dict()
        return payload


@dataclass(frozen=True)
class StatusPayload:
    """A device's retained status: online, offline, and what the dashboard shows about it.

    ``details`` holds the optional fields a device adds (``app_version``, ``model``, ``health``,
    ``update``: docs/mqtt.md). :meth:`last_will` is the copy given to the broker at connect
    time, published only after the device is gone: it carries no time, no queue length and no
    health, since figures of unknown age would mislead.
    """

    site: str
    device: str
    state: str  # online | offline
    at: float | None  # epoch seconds
    queued_results: int | None = None
    backlog_reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": schema.SCHEMA_VERSION, "kind": "status",
            "site": self.site, "device": self.device, "state": self.state,
            "at": None if self.at is None else schema.utc_timestamp(self.at),
            "queued_results": self.queued_results,
            "backlog_reason": self.backlog_reason,
            **self.details,
        }

    def last_will(self) -> dict[str, Any]:
        payload = {**self.to_dict(), "at": None, "queued_results": None, "backlog_reason": None}
        if "health" in payload:
            payload["health"] = None
        return payload
