"""Screening sessions: a live reading smoothed over time and a session result at the end.

The network gives raw class outputs per frame (``(K,)``, K = 2 or 1). The bundle says how
outputs become P(sarcopenia) (:class:`sarco_core.readout.OutputReadout`: softmax, or the evidential Dirichlet of
the training code). The session result aggregates the frames that passed the quality gate:

- ``mean_logit`` (default): mean of the raw outputs, then the readout. This is what training
  does with several images of one participant (mean image features through a linear head
  equal the mean of the outputs) and, for a softmax model, the mean log-odds;
- ``median_logit``: per-class median of the outputs, then the readout (robust to a few odd
  frames);
- ``mean_probability``: mean of the per-frame probabilities.

Too few usable frames gives "rescan" instead of a guess.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from sarco_core.readout import OutputReadout, logit_of, sigmoid
from sarco_core.wire.schema import AGGREGATIONS, SKIP_REASONS


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

    def add_frame(self, quality: str, output: np.ndarray | None = None) -> None:
        """Count a frame; ``output`` (the raw network output) only for frames that passed."""
        self.processed_frames += 1
        if quality == "ok" and output is not None:
            self.outputs.append(np.asarray(output, dtype=np.float64).reshape(-1))
        elif quality in self.skipped:
            self.skipped[quality] += 1

    @property
    def usable_frames(self) -> int:
        return len(self.outputs)


class SessionAggregator:
    """Turns a session's per-frame outputs into a decision (settings in ``__init__``, one
    method that computes, as in scikit-learn)."""

    def __init__(self, threshold: float, readout: OutputReadout | None = None,
                 method: str = "mean_logit", min_usable_frames: int = 20) -> None:
        if method not in AGGREGATIONS:
            raise ValueError(f"aggregation {method!r}: use one of {', '.join(AGGREGATIONS)}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold {threshold} must be a probability in (0, 1)")
        self.threshold = threshold
        self.readout = readout or OutputReadout()
        self.method = method
        self.min_usable_frames = max(1, min_usable_frames)

    def decide(self, probability: float) -> str:
        return "sarcopenia" if probability >= self.threshold else "no_sarcopenia"

    def summarise(self, session: Session) -> SessionOutcome:
        common = dict(usable_frames=session.usable_frames,
                      processed_frames=session.processed_frames, skipped=dict(session.skipped))
        if not session.outputs:
            return SessionOutcome("rescan", None, None, None, None, **common)
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
        return SessionOutcome(decision, probability, float(frame_logits.std()), agreement,
                              None if u is None else float(u[0]), **common)
