"""Calibration of predicted probabilities: Brier score, intercept and slope, binned curve.

- Calibration slope: b in logit P(y = 1) = a + b logit(p). 1 is ideal; < 1 means predictions
  too extreme (typical of overfitting), > 1 too timid.
- Calibration intercept (calibration-in-the-large): a in logit P(y = 1) = a + 1 * logit(p),
  the slope held at 1 (offset). 0 is ideal; > 0 means risks are underestimated on average.
Both are maximum-likelihood logistic fits (Newton-Raphson, step-halving), the same models R's
``glm(y ~ qlogis(p))`` and ``glm(y ~ offset(qlogis(p)), family = binomial)`` fit. Their
confidence intervals are Wald intervals, estimate +- z * standard error, the standard error from
the inverse Fisher information of the same fit (R's ``confint.default``): no resampling, so a
report gets them for every model and cohort at no cost. On small cohorts they are approximate
(the likelihood is not quadratic there); the report warns below 100 events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, logit
from scipy.stats import norm

from model_build.stats._validate import (
    StatsInputError,
    as_labels,
    check_both_classes,
    check_level,
    check_probabilities,
)
from model_build.stats.metrics import Proportion, wilson_proportion


@dataclass(frozen=True)
class CalibrationFit:
    """Intercept and slope with their Wald intervals at ``level`` (see the module docstring)."""

    intercept: float
    slope: float
    intercept_ci: tuple[float, float]
    slope_ci: tuple[float, float]
    level: float


@dataclass(frozen=True)
class CalibrationCurve:
    """Observed event rate (Wilson CI) against mean predicted probability, per non-empty bin."""

    mean_predicted: np.ndarray
    observed: list[Proportion]
    counts: np.ndarray
    strategy: str


def _labels_and_probabilities(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    labels = as_labels(y_true)
    return labels, check_probabilities(y_prob, labels.size)


def brier_score(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Mean squared difference between predicted probability and outcome (0 is perfect)."""
    labels, probs = _labels_and_probabilities(y_true, y_prob)
    return float(np.mean((probs - labels) ** 2))


def _information(design: np.ndarray, offset: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Fisher information X' W X of a logistic model at ``coef`` (W = p(1 - p))."""
    fitted = expit(offset + design @ coef)
    return design.T @ (design * (fitted * (1.0 - fitted))[:, None])


def _wald_interval(estimate: float, variance: float, level: float) -> tuple[float, float]:
    half = float(norm.ppf(0.5 + level / 2.0)) * float(np.sqrt(variance))
    return estimate - half, estimate + half


def _logistic_fit(outcome: np.ndarray, design: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Maximum-likelihood logistic coefficients by Newton-Raphson with step-halving."""

    def deviance(coef: np.ndarray) -> float:
        eta = offset + design @ coef
        return float(2.0 * np.sum(np.logaddexp(0.0, eta) - outcome * eta))

    coef = np.zeros(design.shape[1])
    current = deviance(coef)
    for _ in range(100):
        fitted = expit(offset + design @ coef)
        try:
            step = np.linalg.solve(_information(design, offset, coef), design.T @ (outcome - fitted))
        except np.linalg.LinAlgError:
            step = np.full_like(coef, np.nan)
        if not np.all(np.isfinite(step)):
            break
        for _ in range(30):  # halve the step until the deviance does not increase
            trial = deviance(coef + step)
            if trial <= current + 1e-12 * abs(current):
                break
            step = step / 2.0
        coef, current = coef + step, trial
        if np.max(np.abs(step)) < 1e-12 * (1.0 + np.max(np.abs(coef))):
            return coef
    raise StatsInputError(
        "The calibration model did not converge: the outcome is (quasi-)perfectly separated by "
        "logit(p), so the slope is infinite. Report the Brier score and the binned curve instead."
    )


def calibration_intercept_slope(y_true: ArrayLike, y_prob: ArrayLike, level: float = 0.95) -> CalibrationFit:
    """Calibration intercept (slope fixed at 1) and calibration slope, with Wald CIs at ``level``."""
    level = check_level(level)
    labels, probs = _labels_and_probabilities(y_true, y_prob)
    check_both_classes(labels, 1, why="calibration intercept and slope")
    at_bounds = (probs <= 0.0) | (probs >= 1.0)
    if at_bounds.any():
        first = int(np.flatnonzero(at_bounds)[0])
        raise StatsInputError(
            f"y_prob has {int(at_bounds.sum())} value(s) of exactly 0 or 1 (first at element {first}), whose "
            "logit is infinite. Pass unsaturated probabilities (e.g. computed from the logit in float64)."
        )
    outcome = labels.astype(np.float64)
    logits = logit(probs)
    ones = np.ones((labels.size, 1))
    intercept = _logistic_fit(outcome, ones, offset=logits)
    intercept_variance = 1.0 / _information(ones, logits, intercept)[0, 0]
    design, no_offset = np.column_stack((ones, logits)), np.zeros(labels.size)
    slope_fit = _logistic_fit(outcome, design, offset=no_offset)
    slope_variance = np.linalg.inv(_information(design, no_offset, slope_fit))[1, 1]
    return CalibrationFit(intercept=float(intercept[0]), slope=float(slope_fit[1]),
                          intercept_ci=_wald_interval(float(intercept[0]), intercept_variance, level),
                          slope_ci=_wald_interval(float(slope_fit[1]), slope_variance, level), level=level)


def calibration_curve(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10,
                      strategy: Literal["quantile", "uniform"] = "quantile", level: float = 0.95) -> CalibrationCurve:
    """Binned reliability curve.

    ``"quantile"`` makes bins of (nearly) equal size by rank, the usual deciles of risk;
    ``"uniform"`` uses equal-width bins on [0, 1] and drops empty ones.
    """
    labels, probs = _labels_and_probabilities(y_true, y_prob)
    if n_bins < 1:
        raise StatsInputError(f"n_bins must be at least 1; got {n_bins}.")
    if strategy == "quantile":
        bins = np.array_split(np.argsort(probs, kind="stable"), min(n_bins, labels.size))
    elif strategy == "uniform":
        bin_of = np.minimum((probs * n_bins).astype(int), n_bins - 1)
        bins = [np.flatnonzero(bin_of == b) for b in range(n_bins)]
        bins = [members for members in bins if members.size]
    else:
        raise StatsInputError(f"strategy must be 'quantile' or 'uniform'; got {strategy!r}.")
    return CalibrationCurve(
        mean_predicted=np.array([probs[members].mean() for members in bins]),
        observed=[wilson_proportion(int(labels[members].sum()), members.size, level) for members in bins],
        counts=np.array([members.size for members in bins]),
        strategy=strategy,
    )
