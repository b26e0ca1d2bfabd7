"""Choose an operating threshold on development data, then freeze it.

A threshold tuned on the cohort it is evaluated on is optimistic. The rule is applied once, to
the development cohort; the resulting :class:`OperatingThreshold` is immutable and serialisable
(``to_dict``/``from_dict``) so external cohorts and the edge device apply the very same number.
Candidates are the ROC curve's midpoint thresholds (pROC's), and a participant is positive
when ``score >= value``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from model_build.stats._validate import StatsInputError, as_labels, as_scores, check_level
from model_build.stats.bootstrap import percentile_interval, stratified_resample_counts
from model_build.stats.roc import RocCurve, roc_curve

Rule = Literal["youden", "sensitivity", "specificity", "cost"]
RULES = ("youden", "sensitivity", "specificity", "cost")


@dataclass(frozen=True)
class OperatingThreshold:
    """A frozen decision threshold and how it performed on the data it was chosen on."""

    value: float
    rule: Rule
    target: float | None
    development_sensitivity: float
    development_specificity: float

    def to_dict(self) -> dict[str, float | str | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float | str | None]) -> OperatingThreshold:
        """Rebuild a frozen threshold (e.g. read from a model card), refusing malformed ones."""
        expected = set(cls.__dataclass_fields__)
        if set(data) != expected:
            raise StatsInputError(f"an operating threshold needs exactly the keys {sorted(expected)}; "
                                  f"got {sorted(data)}.")
        if data["rule"] not in RULES or np.isnan(float(data["value"])):
            raise StatsInputError(f"malformed operating threshold: {data}.")
        return cls(**data)  # type: ignore[arg-type]


def _pick(curve: RocCurve, index: int, rule: Rule, target: float | None) -> OperatingThreshold:
    return OperatingThreshold(value=float(curve.thresholds[index]), rule=rule, target=target,
                              development_sensitivity=float(curve.sensitivity[index]),
                              development_specificity=float(curve.specificity[index]))


def _check_target(target: float, what: str) -> float:
    if not 0.0 < float(target) <= 1.0:
        raise StatsInputError(f"target {what} must be in (0, 1], e.g. 0.90; got {target}.")
    return float(target)


def youden_threshold(y_true: ArrayLike, y_score: ArrayLike) -> OperatingThreshold:
    """Threshold maximising Youden's J = sensitivity + specificity - 1.

    Ties (several cuts with the same J) resolve to the lowest threshold, i.e. the most
    sensitive one, since a screening test should miss as few cases as possible; pROC returns all
    tied thresholds and this one is among them.
    """
    curve = roc_curve(y_true, y_score)
    youden = curve.sensitivity + curve.specificity - 1.0
    best = int(np.argmax(youden))  # first maximum = lowest threshold
    if youden[best] <= 0:
        raise StatsInputError(
            "The score does not separate the classes at any threshold (Youden's J <= 0): "
            "there is no useful operating point. Check the score's direction and the labels."
        )
    return _pick(curve, best, "youden", None)


def threshold_for_sensitivity(y_true: ArrayLike, y_score: ArrayLike, target: float) -> OperatingThreshold:
    """The most specific threshold whose sensitivity is at least ``target``."""
    target = _check_target(target, "sensitivity")
    curve = roc_curve(y_true, y_score)
    # Sensitivity falls as the threshold rises: the last cut still meeting the target.
    meeting = np.flatnonzero(curve.sensitivity >= target)
    return _pick(curve, int(meeting[-1]), "sensitivity", target)


def threshold_for_specificity(y_true: ArrayLike, y_score: ArrayLike, target: float) -> OperatingThreshold:
    """The most sensitive threshold whose specificity is at least ``target``."""
    target = _check_target(target, "specificity")
    curve = roc_curve(y_true, y_score)
    meeting = np.flatnonzero(curve.specificity >= target)
    return _pick(curve, int(meeting[0]), "specificity", target)


def threshold_for_cost(y_true: ArrayLike, y_score: ArrayLike, cost_ratio: float) -> OperatingThreshold:
    """The threshold of least expected cost, ``cost_ratio`` x missed cases + false alarms (a missed
    case costs ``cost_ratio`` false alarms, e.g. 3 for a screen whose positives get a DXA scan).

    Counted on the data, so the class balance of the data enters as it should; ties resolve to
    the lowest threshold, as for Youden's J.
    """
    if not float(cost_ratio) > 0:
        raise StatsInputError(f"cost ratio must be positive, e.g. 3 (a missed case costs 3 false alarms); "
                              f"got {cost_ratio}.")
    labels = as_labels(y_true)
    curve = roc_curve(labels, y_score)
    positives, negatives = int(labels.sum()), int(labels.size - labels.sum())
    cost = cost_ratio * (1.0 - curve.sensitivity) * positives + (1.0 - curve.specificity) * negatives
    return _pick(curve, int(np.argmin(cost)), "cost", float(cost_ratio))


def select_threshold(y_true: ArrayLike, y_score: ArrayLike, rule: Rule = "youden",
                     target: float | None = None) -> OperatingThreshold:
    """Dispatch on ``rule``; ``target`` is required for the sensitivity and specificity rules."""
    if rule == "youden":
        return youden_threshold(y_true, y_score)
    if rule in ("sensitivity", "specificity"):
        if target is None:
            raise StatsInputError(f"rule '{rule}' needs a target, e.g. target=0.90.")
        chooser = threshold_for_sensitivity if rule == "sensitivity" else threshold_for_specificity
        return chooser(y_true, y_score, target)
    if rule == "cost":
        if target is None:
            raise StatsInputError("rule 'cost' needs a target: the cost of a missed case in false alarms, e.g. 3.")
        return threshold_for_cost(y_true, y_score, target)
    raise StatsInputError(f"rule must be one of {', '.join(RULES)}; got {rule!r}.")


def threshold_interval(y_true: ArrayLike, y_score: ArrayLike, rule: Rule = "youden", target: float | None = None,
                       n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the threshold the rule picks on stratified bootstrap resamples of
    the participants (:mod:`model_build.stats.bootstrap`): how far the cut would move on another
    sample of the same size. A resample where the rule finds no cut (J <= 0) is left out."""
    labels = as_labels(y_true)
    scores = as_scores(y_score, labels.size)
    rng = np.random.default_rng(seed)
    picked = []
    for counts in stratified_resample_counts(labels, n_boot, rng):
        for row in counts:
            index = np.repeat(np.arange(labels.size), row)
            try:
                picked.append(select_threshold(labels[index], scores[index], rule, target).value)
            except StatsInputError:
                continue
    if not picked:
        raise StatsInputError("the rule found no threshold on any bootstrap resample.")
    return percentile_interval(np.array(picked), check_level(level))
