"""Screening sessions: a live reading smoothed over time and a session result at the end, and
the pipeline's aggregate stage that runs them (:class:`SessionStage`).

The network gives raw class outputs per frame (``(K,)``, K = 2 or 1). The bundle says how
outputs become P(sarcopenia) (:class:`sarco_core.readout.ProbabilityReadout`: softmax, or the
evidential Dirichlet of the training code). The session result aggregates the frames that
passed the quality gate:

- ``mean_logit`` (default): mean of the raw outputs, then the readout. This is what training
  does with several images of one participant (mean image features through a linear head
  equal the mean of the outputs) and, for a softmax model, the mean log-odds;
- ``median_logit``: per-class median of the outputs, then the readout (robust to a few odd
  frames);
- ``mean_probability``: mean of the per-frame probabilities.

Too few usable frames gives "rescan" instead of a guess. The screen's call (positive,
negative, borderline, rescan) reads the decision on the probability's interval
(:mod:`sarco_core.screening`, the rule the study reports on).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.mqtt.outbox import Outbox
from sarco_core import __version__
from sarco_core.bundle import DeviceBundle, MeasurementBundle
from sarco_core.errors import SarcoError
from sarco_core.files import read_json, write_json
from sarco_core.measure import FrameMeasurement, SessionMeasurement, aggregate_measurements
from sarco_core.readout import ProbabilityReadout, logit_of, sigmoid
from sarco_core.screening import DEFAULT_RULE, BorderlineRule, ScreenCall, screen_call
from sarco_core.wire import schema
from sarco_core.wire.payloads import MuscleMeasurements, ResultPayload, Uncertainty
from sarco_core.wire.schema import AGGREGATIONS, SKIP_REASONS

log = logging.getLogger("edge_app.pipeline")  # the stage logs as the rest of the pipeline


class LiveSmoother:
    """Exponential smoothing of the log-odds with a time constant in seconds, so the live
    reading calms down the same way whatever the frame rate (a slow model gives fewer frames)."""

    def __init__(self, time_constant_s: float = 1.0) -> None:
        self.time_constant_s = time_constant_s
        self._value: float | None = None
        self._last: float | None = None

    def update(self, probability: float, at: float) -> float:
        """Add a frame's probability at time ``at`` (s); returns the smoothed probability."""
        logit = logit_of(probability)
        if self._value is None or self._last is None or self.time_constant_s <= 0:
            self._value = logit
        else:
            weight = 1.0 - math.exp(-max(at - self._last, 0.0) / self.time_constant_s)
            self._value += weight * (logit - self._value)
        self._last = at
        return sigmoid(self._value)

    def reset(self) -> None:
        self._value = self._last = None


@dataclass(frozen=True)
class SessionOutcome:
    """The aggregate of one session (what the result payload and the display report)."""

    decision: str  # sarcopenia | no_sarcopenia | rescan
    probability: float | None
    logit_sd: float | None  # spread of the per-frame log-odds
    agreement: float | None  # share of usable frames whose own decision is the session's
    dirichlet_u: float | None  # evidential models: uncertainty of the aggregated opinion
    usable_frames: int
    processed_frames: int
    skipped: dict[str, int]
    call: ScreenCall

    @property
    def score_logit(self) -> float | None:
        return None if self.probability is None else logit_of(self.probability)


@dataclass
class Session:
    """One operator session: who (pseudonymous id), when, and what the usable frames gave."""

    screening_id: str
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # monotonic, not wall-clock: NTP may step the clock mid-session (a Jetson has no RTC
    # battery and syncs after boot); the result's times are taken back from its end
    started_monotonic: float = field(default_factory=time.monotonic)
    outputs: list[np.ndarray] = field(default_factory=list)
    processed_frames: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    # the muscle measured on usable frames (edge_app.stages.MuscleMeasure), when measuring
    measurements: list[FrameMeasurement] = field(default_factory=list)

    def add_frame(self, quality: str, output: np.ndarray | None = None,
                  measurement: FrameMeasurement | None = None) -> None:
        """Count a frame; ``output`` (the raw network output) and ``measurement`` only for
        frames that passed."""
        self.processed_frames += 1
        if quality == "ok" and output is not None:
            self.outputs.append(np.asarray(output, dtype=np.float64).reshape(-1))
            if measurement is not None:
                self.measurements.append(measurement)
        elif quality in self.skipped:
            self.skipped[quality] += 1

    @property
    def usable_frames(self) -> int:
        return len(self.outputs)

    def measured(self) -> SessionMeasurement:
        """The muscle so far: medians and spreads over the frames measured."""
        return aggregate_measurements(self.measurements)


class SessionAggregator:
    """Turns a session's per-frame outputs into a decision (settings in ``__init__``, one
    method that computes, as in scikit-learn)."""

    def __init__(self, threshold: float, readout: ProbabilityReadout | None = None,
                 method: str = "mean_logit", min_usable_frames: int = 20,
                 rule: BorderlineRule = DEFAULT_RULE) -> None:
        if method not in AGGREGATIONS:
            raise ValueError(f"aggregation {method!r}: use one of {', '.join(AGGREGATIONS)}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold {threshold} must be a probability in (0, 1)")
        self.threshold = threshold
        self.readout = readout or ProbabilityReadout()
        self.method = method
        self.min_usable_frames = max(1, min_usable_frames)
        self.rule = rule

    def decide(self, probability: float) -> str:
        return "sarcopenia" if probability >= self.threshold else "no_sarcopenia"

    def summarise(self, session: Session) -> SessionOutcome:
        common = dict(usable_frames=session.usable_frames,
                      processed_frames=session.processed_frames, skipped=dict(session.skipped))
        if not session.outputs:
            return SessionOutcome("rescan", None, None, None, None, **common,
                                  call=screen_call(None, self.threshold, enough_frames=False,
                                                   rule=self.rule))
        outputs = np.stack(session.outputs)
        per_frame = self.readout.probability(outputs)
        if self.method == "mean_probability":
            pooled, probability = None, float(per_frame.mean())
        else:
            pooled = outputs.mean(axis=0) if self.method == "mean_logit" else \
                np.median(outputs, axis=0)
            probability = float(self.readout.probability(pooled[None])[0])
        decision = self.decide(probability)
        frame_logits = np.log(np.clip(per_frame, 1e-9, 1)) - np.log(np.clip(1 - per_frame, 1e-9, 1))
        agreement = float(np.mean([self.decide(p) == decision for p in per_frame]))
        u = None if pooled is None else self.readout.uncertainty(pooled[None])
        if session.usable_frames < self.min_usable_frames:
            decision = "rescan"
        logit_sd, dirichlet_u = float(frame_logits.std()), None if u is None else float(u[0])
        call = screen_call(probability, self.threshold, enough_frames=decision != "rescan",
                           logit_sd=logit_sd, usable_frames=session.usable_frames,
                           dirichlet_u=dirichlet_u, rule=self.rule)
        return SessionOutcome(decision, probability, logit_sd, agreement, dirichlet_u, **common,
                              call=call)


@dataclass(frozen=True)
class Refusal:
    """Why a session did not start, for the screen; ``disk_full`` shows the disk error."""

    reason: str
    disk_full: bool = False


class SessionStage:
    """The aggregate stage: starts a session (or says why not), feeds it the frames, smooths
    the live reading, and ends it into a result numbered by the outbox (0 without MQTT) and
    checked against the wire schema, so every sink gets the same result.

    ``live`` is the smoothed live probability; it follows every frame that passes the gate,
    in a session or not, and stays until the next one does."""

    def __init__(self, aggregator: SessionAggregator, smoother: LiveSmoother, site: str,
                 device: str, bundle: DeviceBundle, outbox: Outbox | None = None,
                 data_dir: Path | None = None, min_free_mb: int = 50,
                 measurement_bundle: MeasurementBundle | None = None) -> None:
        self.aggregator = aggregator
        self.smoother = smoother
        self.site, self.device = site, device
        self.bundle = bundle
        self.outbox = outbox
        self.data_dir, self.min_free_mb = data_dir, min_free_mb
        # the model whose measurements results carry; None: results carry none
        self.measurement_bundle = measurement_bundle
        self.current: Session | None = None
        self.live: float | None = None

    def start(self, screening_id: str) -> Refusal | None:
        """Start a session; returns why not (for the screen), or None when it started."""
        problem = schema.check_screening_id(screening_id)
        if problem:
            return Refusal(f"ID {screening_id!r} {problem}")
        if self.current is not None:
            return Refusal("a session is already running: end it first")
        if self.outbox is not None and self.outbox.is_full:
            log.error("session refused: outbox full", extra={"event": "outbox_full"})
            return Refusal(f"outbox full ({len(self.outbox)} result(s) unsent): "
                           "connect to the network before the next session")
        free = self._free_mb()
        if free is not None and free < self.min_free_mb:
            log.error("session refused: disk full", extra={"event": "disk_full", "free_mb": free})
            return Refusal(f"{self.data_dir}: {free} MB free, {self.min_free_mb} MB needed to "
                           "save results", disk_full=True)
        self.current = Session(screening_id)
        self.smoother.reset()
        log.info("session started", extra={"event": "session_start",
                                           "session_id": self.current.session_id})
        return None

    def _free_mb(self) -> int | None:
        if self.data_dir is None:
            return None
        try:
            return int(shutil.disk_usage(self.data_dir).free // 1_000_000)
        except OSError:
            return None

    def add(self, quality: str, output: np.ndarray | None, probability: float | None,
            at: float, measurement: FrameMeasurement | None = None) -> None:
        """One frame: its gate state, and the network's output, probability and measurement
        if it passed."""
        if probability is not None:
            self.live = self.smoother.update(probability, at)
        if self.current is not None:
            self.current.add_frame(quality, output, measurement)

    def end(self) -> dict[str, Any] | None:
        """Aggregate the session into its result payload, not yet queued (:meth:`queue`);
        None without a session."""
        session, self.current = self.current, None
        if session is None:
            return None
        return self._result(session, self.aggregator.summarise(session)).to_dict()

    def queue(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The result numbered by the outbox (0 without MQTT) and checked: what every sink
        gets. A result the wire refuses is still returned, for the local log."""
        self.forget_held()
        try:
            if self.outbox is not None:
                return self.outbox.add(schema.topic_for(self.site, self.device, "result"),
                                       payload)
            numbered = {**payload, "seq": 0}  # without MQTT no outbox numbers it
            schema.validate("result", numbered)
            return numbered
        except schema.PayloadError as exc:
            # never lose a screening: the local result log keeps what the wire refuses
            log.error("result not sent", extra={"event": "result_not_sent",
                                                "result_id": payload["result_id"],
                                                "error": str(exc)})
            return {**payload, "seq": 0}

    # a result held on the screen while the team enters its confirmation measurements is
    # kept on disk meanwhile, so a power cut does not lose it (``left_over`` at the next start)

    @property
    def _held_path(self) -> Path | None:
        return None if self.data_dir is None else self.data_dir / "held-result.json"

    def hold(self, payload: dict[str, Any]) -> None:
        if self._held_path is not None:
            write_json(self._held_path, payload, mode=0o600)

    def forget_held(self) -> None:
        if self._held_path is not None:
            self._held_path.unlink(missing_ok=True)

    def left_over(self) -> dict[str, Any] | None:
        """A result held when the program last stopped, if any."""
        if self._held_path is None or not self._held_path.is_file():
            return None
        try:
            return read_json(self._held_path)
        except (OSError, ValueError, SarcoError) as exc:
            log.error("held result unreadable", extra={"event": "held_result_unreadable",
                                                       "error": str(exc)})
            return None

    def _result(self, session: Session, outcome: SessionOutcome) -> ResultPayload:
        uncertainty = None
        if outcome.probability is not None:
            uncertainty = Uncertainty(outcome.logit_sd, outcome.agreement, outcome.dirichlet_u)
        ended = time.time()
        lasted = max(0.0, time.monotonic() - session.started_monotonic)
        return ResultPayload(
            result_id=str(uuid.uuid4()), session_id=session.session_id,
            site=self.site, device=self.device, screening_id=session.screening_id,
            started_at=ended - lasted, ended_at=ended,
            decision=outcome.decision, probability=outcome.probability,
            score_logit=outcome.score_logit, threshold=self.aggregator.threshold,
            aggregation=self.aggregator.method, uncertainty=uncertainty,
            usable_frames=outcome.usable_frames, processed_frames=outcome.processed_frames,
            min_usable_frames=self.aggregator.min_usable_frames, skipped=outcome.skipped,
            model_name=self.bundle.model_name, model_sha256=self.bundle.model_sha256,
            app_version=__version__, call=outcome.call, rule=self.aggregator.rule,
            measurements=self._measurements(session))

    def _measurements(self, session: Session) -> MuscleMeasurements | None:
        bundle = self.measurement_bundle
        if bundle is None:
            return None
        return MuscleMeasurements.of_session(session.measured(), bundle.model_name,
                                             bundle.model_sha256)
