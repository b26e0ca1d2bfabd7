"""Decision curve analysis (Vickers & Elkin, Med Decis Making 26:565-574, 2006).

At a threshold probability pt (the risk at which one would act, e.g. refer for a DXA scan),
acting on everyone with p >= pt has net benefit

    NB(pt) = TP/N - FP/N * pt / (1 - pt),

true positives gained minus false positives weighted by the odds of pt. Reference strategies:
treat all, NB = prevalence - (1 - prevalence) pt/(1 - pt), and treat none, NB = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from model_build.stats._validate import StatsInputError, as_labels, check_probabilities

DEFAULT_THRESHOLDS = np.arange(1, 100) / 100.0  # 0.01, 0.02, ..., 0.99


@dataclass(frozen=True)
class DecisionCurve:
    thresholds: np.ndarray
    model: np.ndarray
    treat_all: np.ndarray
    treat_none: np.ndarray


def _check_thresholds(thresholds: ArrayLike) -> np.ndarray:
    values = np.asarray(thresholds, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all((values > 0) & (values < 1)):
        raise StatsInputError("threshold probabilities must be a non-empty 1-D array strictly between 0 and 1.")
    return values


def net_benefit(y_true: ArrayLike, y_prob: ArrayLike, thresholds: ArrayLike = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Net benefit of acting when ``y_prob >= pt``, for each threshold probability pt."""
    labels = as_labels(y_true)
    probs = check_probabilities(y_prob, labels.size)
    pts = _check_thresholds(thresholds)
    positives = np.sort(probs[labels])
    negatives = np.sort(probs[~labels])
    true_pos = positives.size - np.searchsorted(positives, pts, side="left")
    false_pos = negatives.size - np.searchsorted(negatives, pts, side="left")
    return (true_pos - false_pos * pts / (1.0 - pts)) / labels.size


def decision_curve(y_true: ArrayLike, y_prob: ArrayLike, thresholds: ArrayLike = DEFAULT_THRESHOLDS) -> DecisionCurve:
    """Net benefit of the model, treat-all and treat-none over a range of threshold probabilities."""
    labels = as_labels(y_true)
    pts = _check_thresholds(thresholds)
    prevalence = labels.mean()
    return DecisionCurve(
        thresholds=pts,
        model=net_benefit(labels, y_prob, pts),
        treat_all=prevalence - (1.0 - prevalence) * pts / (1.0 - pts),
        treat_none=np.zeros_like(pts),
    )
