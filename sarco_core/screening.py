"""What a screening result says to the team: positive, negative, borderline or rescan, with the
probability's interval. The one rule, for the device's screen and for the study's report.

A probability just above the threshold and one far above it are different results for a
screening team: the first may flip on a second scan. So the call is made on an interval of the
session's probability, not on the point alone:

- the interval is normal on the log-odds scale, centred on the session's log-odds, with the
  standard error of the mean log-odds of the usable frames: ``logit_sd * sqrt(n / (n - 1)) /
  sqrt(min(n, independent_frames))`` (``logit_sd`` is the population SD the result payload
  carries; consecutive video frames are not independent views of the muscle, so at most
  ``independent_frames`` of them count as such);
- with ``evidence`` on, the variance of the log-odds under the evidential model's Beta opinion
  (``trigamma(a) + trigamma(b)`` for ``a = p * S``, ``b = (1 - p) * S``, ``S = 2 / u``) is added.
  Off by default: on the synthetic cohorts that term alone makes most results borderline
  (docs/edge.md gives the figures), which a team cannot act on;
- **positive** when the whole interval is at or above the threshold, **negative** when it is
  below, **borderline** when it straddles it; **rescan** when the session had too few usable
  frames (or none), whatever the probability.

With fewer than two frames there is no spread to measure: the interval is the point and the call
is the threshold's. Everything here is a function of numbers a result payload carries, so the
dashboard, the study and the device compute the same call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from sarco_core.readout import logit_of, sigmoid

CALLS = ("positive", "negative", "borderline", "rescan")


@dataclass(frozen=True)
class BorderlineRule:
    """How wide the interval is: its two-sided ``level``, how many frames count as independent
    views at most, and whether the evidential uncertainty widens it."""

    level: float = 0.90
    independent_frames: int = 10
    evidence: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"borderline level {self.level}: must be in (0, 1)")
        if self.independent_frames < 1:
            raise ValueError(f"independent_frames {self.independent_frames}: must be >= 1")

    def logit_se(self, logit_sd: float | None, usable_frames: int, probability: float,
                 dirichlet_u: float | None) -> float:
        """Standard error of the session's log-odds (0 when nothing measures it)."""
        variance = 0.0
        if logit_sd is not None and usable_frames >= 2:
            sample_sd = logit_sd * math.sqrt(usable_frames / (usable_frames - 1))
            variance += sample_sd ** 2 / min(usable_frames, self.independent_frames)
        if self.evidence and dirichlet_u is not None and dirichlet_u > 0:
            strength = 2.0 / dirichlet_u
            p = min(max(probability, 1e-6), 1 - 1e-6)
            variance += trigamma(p * strength) + trigamma((1 - p) * strength)
        return math.sqrt(variance)


DEFAULT_RULE = BorderlineRule()


@dataclass(frozen=True)
class ScreenCall:
    """The call and the interval it was made on (None for a rescan without a probability)."""

    call: str
    probability: float | None
    low: float | None
    high: float | None
    level: float

    @property
    def interval(self) -> tuple[float, float] | None:
        return None if self.low is None or self.high is None else (self.low, self.high)


def screen_call(probability: float | None, threshold: float, *, enough_frames: bool,
                logit_sd: float | None = None, usable_frames: int = 0,
                dirichlet_u: float | None = None,
                rule: BorderlineRule = DEFAULT_RULE) -> ScreenCall:
    """The call for one session's numbers (see the module docstring)."""
    if probability is None or not enough_frames:
        return ScreenCall("rescan", probability, None, None, rule.level)
    half = NormalDist().inv_cdf(0.5 + rule.level / 2) * rule.logit_se(
        logit_sd, usable_frames, probability, dirichlet_u)
    centre = logit_of(probability)
    # rounding must not put the point outside its own interval; no spread: exactly the point
    low, high = min(sigmoid(centre - half), probability), max(sigmoid(centre + half), probability)
    if half == 0.0:
        low = high = probability
    call = "positive" if low >= threshold else "negative" if high < threshold else "borderline"
    return ScreenCall(call, probability, low, high, rule.level)


def call_of_result(result: dict, rule: BorderlineRule = DEFAULT_RULE) -> ScreenCall:
    """The call for a result payload (docs/mqtt.md): what the device shows and the study counts."""
    uncertainty = result.get("uncertainty") or {}
    return screen_call(result.get("probability"), result["threshold"],
                       enough_frames=result["decision"] != "rescan",
                       logit_sd=uncertainty.get("logit_sd"),
                       usable_frames=result.get("usable_frames", 0),
                       dirichlet_u=uncertainty.get("dirichlet_u"), rule=rule)


def trigamma(x: float) -> float:
    """psi'(x) for x > 0: the recurrence up to x >= 10, then the asymptotic series (error below
    1e-12 there); the variance of log(G) for a Gamma(x) variable."""
    if x <= 0:
        raise ValueError(f"trigamma({x}): defined here for x > 0 only")
    total = 0.0
    while x < 10.0:
        total += 1.0 / (x * x)
        x += 1.0
    inverse = 1.0 / x
    square = inverse * inverse
    return total + inverse + square / 2 + inverse * square * (
        1 / 6 - square * (1 / 30 - square * (1 / 42 - square / 30)))
