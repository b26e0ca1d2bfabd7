"""Diagnostic accuracy at a fixed threshold: the 2x2 table and its proportions with CIs.

Proportions get Wilson score intervals (well behaved near 0 and 1, where screening figures
live; the same as R's ``prop.test(correct = FALSE)``). F1 is not a proportion, so its interval
is a stratified bootstrap percentile interval. A proportion whose denominator is empty (PPV
when nobody is called positive) has no estimate: it is reported as ``None``, never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as scipy_stats

from model_build.stats._validate import StatsInputError, binary_scores, check_level
from model_build.stats.bootstrap import bootstrap_replicates, percentile_interval


@dataclass(frozen=True)
class Proportion:
    """successes / total with a Wilson interval; estimate and bounds are None when total is 0."""

    successes: int
    total: int
    estimate: float | None
    lower: float | None
    upper: float | None


@dataclass(frozen=True)
class ConfusionTable:
    """The 2x2 table at a threshold (positive = score >= threshold)."""

    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int


@dataclass(frozen=True)
class ThresholdMetrics:
    """Accuracy of a frozen threshold on one cohort; proportions carry Wilson CIs at ``level``."""

    threshold: float
    level: float
    table: ConfusionTable
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion
    npv: Proportion
    accuracy: Proportion
    f1: float
    f1_lower: float
    f1_upper: float


def wilson_proportion(successes: int, total: int, level: float = 0.95) -> Proportion:
    """Proportion with its Wilson score interval (scipy's binomtest, no continuity correction)."""
    level = check_level(level)
    if not 0 <= successes <= total:
        raise StatsInputError(f"successes must be between 0 and total; got {successes} of {total}.")
    if total == 0:
        return Proportion(successes=0, total=0, estimate=None, lower=None, upper=None)
    interval = scipy_stats.binomtest(int(successes), int(total)).proportion_ci(level, method="wilson")
    return Proportion(successes=int(successes), total=int(total), estimate=successes / total,
                      lower=float(interval.low), upper=float(interval.high))


def confusion_table(y_true: ArrayLike, y_score: ArrayLike, threshold: float) -> ConfusionTable:
    """Counts at ``threshold``; both classes must be present (sensitivity and specificity need them)."""
    labels, scores = binary_scores(y_true, y_score, why="sensitivity and specificity")
    called = scores >= _check_threshold(threshold)
    return ConfusionTable(true_positive=int(np.sum(called & labels)), false_positive=int(np.sum(called & ~labels)),
                          false_negative=int(np.sum(~called & labels)), true_negative=int(np.sum(~called & ~labels)))


def _check_threshold(threshold: float) -> float:
    if np.isnan(threshold):
        raise StatsInputError("threshold is NaN: pass the frozen development threshold.")
    return float(threshold)


def f1_from_table(table: ConfusionTable) -> float:
    """F1 = 2TP / (2TP + FP + FN); defined whenever positives exist."""
    return 2 * table.true_positive / (2 * table.true_positive + table.false_positive + table.false_negative)


class _F1FromCounts:
    """F1 of every resample from the count matrix (stratified, so the positives' total is fixed)."""

    def __init__(self, labels: np.ndarray, called: np.ndarray) -> None:
        self.true_positive = labels & called
        self.false_positive = ~labels & called
        self.n_pos = int(labels.sum())

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        tp = counts[:, self.true_positive].sum(axis=1)
        fp = counts[:, self.false_positive].sum(axis=1)
        return 2.0 * tp / (tp + fp + self.n_pos)  # 2TP + FP + FN with FN = positives - TP


def metrics_at_threshold(y_true: ArrayLike, y_score: ArrayLike, threshold: float, level: float = 0.95,
                         n_boot: int = 2000, seed: int = 0) -> ThresholdMetrics:
    """Sensitivity, specificity, PPV, NPV, accuracy (Wilson CIs) and F1 (bootstrap CI) at a threshold."""
    level = check_level(level)
    labels, scores = binary_scores(y_true, y_score, why="sensitivity and specificity")
    table = confusion_table(labels, scores, threshold)
    tp, fp, fn, tn = table.true_positive, table.false_positive, table.false_negative, table.true_negative
    f1_replicates = bootstrap_replicates(labels, _F1FromCounts(labels, scores >= threshold), n_boot, seed)
    f1_lower, f1_upper = percentile_interval(f1_replicates, level)
    return ThresholdMetrics(
        threshold=float(threshold), level=level, table=table,
        sensitivity=wilson_proportion(tp, tp + fn, level), specificity=wilson_proportion(tn, tn + fp, level),
        ppv=wilson_proportion(tp, tp + fp, level), npv=wilson_proportion(tn, tn + fn, level),
        accuracy=wilson_proportion(tp + tn, tp + fp + fn + tn, level),
        f1=f1_from_table(table), f1_lower=f1_lower, f1_upper=f1_upper,
    )
