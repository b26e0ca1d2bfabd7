"""Empirical ROC curve and AUC, ties handled exactly, never auto-flipped.

Convention (pROC's ``direction = "<"``): higher scores mean "more likely positive" and a
participant is called positive when ``score >= threshold``. An AUC below 0.5 is reported as
such; flipping it silently would hide a sign error in a model or a label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from model_build.stats._validate import StatsInputError, binary_scores, check_level
from model_build.stats.bootstrap import bootstrap_replicates
from model_build.stats.ranks import structural_components


@dataclass(frozen=True)
class RocCurve:
    """ROC points at every distinct cut, thresholds ascending from -inf to +inf as in pROC.

    ``sensitivity[k]`` and ``specificity[k]`` are the rates when ``score >= thresholds[k]`` is
    called positive. Thresholds are midpoints between consecutive distinct scores, so a frozen
    threshold never coincides with a development score.
    """

    thresholds: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray

    @property
    def fpr(self) -> np.ndarray:
        return 1.0 - self.specificity

    @property
    def tpr(self) -> np.ndarray:
        return self.sensitivity


def midpoint_thresholds(distinct_ascending: np.ndarray) -> np.ndarray:
    """Cut points between consecutive distinct scores, with -inf and +inf at the ends.

    Same arithmetic as pROC's ``roc.utils.thresholds``: (a + b)/2, or a/2 + b/2 where the sum
    could overflow; when rounding lands the midpoint on the lower score a (adjacent doubles),
    the upper score b is used so that ``score >= threshold`` still separates a from b.
    """
    lower = np.concatenate(([-np.inf], distinct_ascending))
    upper = np.concatenate((distinct_ascending, [np.inf]))
    with np.errstate(invalid="ignore", over="ignore"):
        midpoints = (lower + upper) / 2.0
        halves = lower / 2.0 + upper / 2.0
    midpoints = np.where(np.abs(midpoints) > 1e100, halves, midpoints)
    landed_on_lower = (midpoints == lower) & np.isfinite(lower)
    midpoints[landed_on_lower] = upper[landed_on_lower]
    return midpoints


def roc_curve(y_true: ArrayLike, y_score: ArrayLike) -> RocCurve:
    """Empirical ROC curve (one point per distinct score plus the two ends)."""
    labels, scores = binary_scores(y_true, y_score, why="a ROC curve")
    distinct, inverse = np.unique(scores, return_inverse=True)
    pos_per_value = np.bincount(inverse, weights=labels, minlength=distinct.size)
    all_per_value = np.bincount(inverse, minlength=distinct.size)
    neg_per_value = all_per_value - pos_per_value
    # Positives at or above each distinct value; a trailing 0 for the +inf threshold.
    pos_at_or_above = np.concatenate((np.cumsum(pos_per_value[::-1])[::-1], [0.0]))
    neg_below = np.concatenate(([0.0], np.cumsum(neg_per_value)))
    n_pos = pos_at_or_above[0]
    n_neg = neg_below[-1]
    return RocCurve(
        thresholds=midpoint_thresholds(distinct),
        sensitivity=pos_at_or_above / n_pos,
        specificity=neg_below / n_neg,
    )


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the empirical ROC curve: P(score_pos > score_neg) + P(tie)/2 (midranks)."""
    labels, scores = binary_scores(y_true, y_score)
    return structural_components(labels, scores).auc


@dataclass(frozen=True)
class RocBand:
    """Pointwise bootstrap band: at each false-positive rate, percentiles of the best
    sensitivity reachable with specificity >= 1 - fpr, over stratified resamples."""

    fpr: np.ndarray
    tpr_lower: np.ndarray
    tpr_upper: np.ndarray
    level: float
    n_boot: int
    seed: int


class _TprAtFpr:
    """Per resample, the highest TPR whose FPR does not exceed each grid value.

    Works on integer false-positive counts (row-offset so one searchsorted serves all rows), so
    an FPR equal to a grid value is never lost to rounding.
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray, fpr_grid: np.ndarray) -> None:
        self.order = np.argsort(-scores, kind="stable")
        self.sorted_is_pos = labels[self.order]
        sorted_scores = scores[self.order]
        self.cut_ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
        self.n_pos = int(labels.sum())
        self.n_neg = labels.size - self.n_pos
        self.allowed_false_pos = np.floor(fpr_grid * self.n_neg + 1e-9).astype(np.int64)

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        rows = counts.shape[0]
        ordered = counts[:, self.order]
        zeros = np.zeros((rows, 1), dtype=np.int64)
        true_pos = np.hstack((zeros, np.cumsum(ordered * self.sorted_is_pos, axis=1)[:, self.cut_ends]))
        false_pos = np.hstack((zeros, np.cumsum(ordered * ~self.sorted_is_pos, axis=1)[:, self.cut_ends]))
        row_offset = (np.arange(rows, dtype=np.int64) * (self.n_neg + 1))[:, None]
        position = np.searchsorted((false_pos + row_offset).ravel(),
                                   (self.allowed_false_pos[None, :] + row_offset).ravel(), side="right") - 1
        return true_pos.ravel()[position].reshape(rows, -1) / self.n_pos


def roc_confidence_band(y_true: ArrayLike, y_score: ArrayLike, fpr_grid: ArrayLike | None = None,
                        level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> RocBand:
    """Bootstrap confidence band around the ROC curve (for plots), stratified like ``auc_ci``."""
    level = check_level(level)
    labels, scores = binary_scores(y_true, y_score, why="a ROC band")
    grid = np.linspace(0.0, 1.0, 101) if fpr_grid is None else np.asarray(fpr_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all((grid >= 0) & (grid <= 1)):
        raise StatsInputError("fpr_grid must be a non-empty 1-D array of rates in [0, 1].")
    replicates = bootstrap_replicates(labels, _TprAtFpr(labels, scores, grid), n_boot, seed)
    tail = (1.0 - level) / 2.0
    lower, upper = np.quantile(replicates, [tail, 1.0 - tail], axis=0)
    return RocBand(fpr=grid, tpr_lower=lower, tpr_upper=upper, level=level, n_boot=n_boot, seed=seed)
