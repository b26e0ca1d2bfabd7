"""Calibration (Brier, intercept, slope, binned curve) and decision-curve net benefit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

import model_build.stats as st
from model_build.stats.calibration import _logistic_fit


def predictions(seed: int, n: int, true_intercept: float, true_slope: float) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities p and outcomes drawn from logit P(y) = a + b logit(p)."""
    rng = np.random.default_rng(seed)
    p = expit(rng.normal(-0.5, 1.2, n))
    y = rng.random(n) < expit(true_intercept + true_slope * logit(p))
    return y, p


def test_fits_solve_the_likelihood_equations() -> None:
    """At the maximum-likelihood estimate the score equations hold: residuals sum to 0
    (intercept) and are orthogonal to logit(p) (slope)."""
    y, p = predictions(0, 800, 0.3, 0.7)
    fit = st.calibration_intercept_slope(y, p)
    assert np.sum(y - expit(fit.intercept + logit(p))) == pytest.approx(0, abs=1e-8)
    # The slope model re-estimates an intercept alongside: both score equations must hold.
    lp = logit(p)
    design = np.column_stack((np.ones_like(lp), lp))
    coef = _logistic_fit(y.astype(float), design, np.zeros_like(lp))
    assert coef[1] == fit.slope
    residual = y - expit(design @ coef)
    np.testing.assert_allclose(design.T @ residual, 0, atol=1e-8)


def test_large_well_calibrated_sample_has_slope_near_one_and_intercept_near_zero() -> None:
    y, p = predictions(1, 20000, 0.0, 1.0)
    fit = st.calibration_intercept_slope(y, p)
    assert fit.slope == pytest.approx(1.0, abs=0.06)  # sd of the slope here is ~0.02
    assert fit.intercept == pytest.approx(0.0, abs=0.06)


def test_brier_score_by_hand() -> None:
    assert st.brier_score([1, 0, 1, 0], [0.9, 0.2, 0.6, 0.5]) == pytest.approx((0.01 + 0.04 + 0.16 + 0.25) / 4)


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_binned_curve_accounts_for_everyone(strategy: str) -> None:
    y, p = predictions(2, 503, 0.0, 1.0)
    curve = st.calibration_curve(y, p, n_bins=10, strategy=strategy)  # type: ignore[arg-type]
    assert curve.counts.sum() == 503
    assert sum(b.successes for b in curve.observed) == y.sum()
    assert np.all(np.diff(curve.mean_predicted) > 0)
    if strategy == "quantile":
        assert curve.counts.max() - curve.counts.min() <= 1
    else:
        edges = np.floor(curve.mean_predicted * 10)
        assert np.all(np.diff(edges) >= 1)  # one mean per occupied decile of risk


def test_net_benefit_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.8, 0.3, 0.6, 0.2, 0.1])
    # pt = 0.25: act on 0.8, 0.3 (TP 2) and 0.6 (FP 1): 2/5 - 1/5 * (0.25/0.75)
    # pt = 0.5: act on 0.8 (TP 1), 0.6 (FP 1): 1/5 - 1/5 * 1
    np.testing.assert_allclose(st.net_benefit(y, p, [0.25, 0.5]), [2 / 5 - 1 / 15, 0.0], atol=1e-15)
    curve = st.decision_curve(y, p, [0.25, 0.5])
    np.testing.assert_allclose(curve.treat_all, [0.4 - 0.6 / 3, 0.4 - 0.6], atol=1e-15)
    np.testing.assert_array_equal(curve.treat_none, [0.0, 0.0])


def test_perfect_model_has_net_benefit_equal_to_prevalence() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 1, 0])
    p = np.where(y, 0.999, 0.001)
    curve = st.decision_curve(y, p)
    np.testing.assert_allclose(curve.model, y.mean(), atol=1e-15)
    assert curve.thresholds[0] == 0.01 and curve.thresholds[-1] == 0.99 and curve.thresholds.size == 99



def _curvature(log_likelihood, at: np.ndarray, h: float = 1e-4) -> np.ndarray:  # noqa: ANN001
    """Observed information: minus the Hessian of ``log_likelihood`` at ``at``, by central differences."""
    steps = np.eye(at.size) * h
    return -np.array([[(log_likelihood(at + a + b) - log_likelihood(at + a - b) - log_likelihood(at - a + b)
                        + log_likelihood(at - a - b)) / (4 * h * h) for b in steps] for a in steps])


def test_intercept_and_slope_intervals_are_wald_intervals_from_the_likelihood_curvature() -> None:
    """Half-width = z * SE, the SE from the curvature of the log-likelihood at its maximum,
    taken here by finite differences (independent of the fit's own Fisher information)."""
    y, p = predictions(3, 400, 0.2, 0.8)
    fit = st.calibration_intercept_slope(y, p, level=0.9)
    lp, outcome = logit(p), y.astype(float)

    def log_likelihood(eta: np.ndarray) -> float:
        return float(np.sum(outcome * eta - np.logaddexp(0.0, eta)))

    intercept_information = _curvature(lambda c: log_likelihood(lp + c[0]), np.array([fit.intercept]))
    slope_model_intercept = _logistic_fit(outcome, np.column_stack((np.ones_like(lp), lp)), np.zeros_like(lp))[0]
    slope_information = _curvature(lambda c: log_likelihood(c[0] + c[1] * lp),
                                   np.array([slope_model_intercept, fit.slope]))
    z = 1.6448536269514722  # 90 %, two-sided
    half_widths = {"intercept": z * np.sqrt(1 / intercept_information[0, 0]),
                   "slope": z * np.sqrt(np.linalg.inv(slope_information)[1, 1])}
    assert fit.level == 0.9
    for name, interval in (("intercept", fit.intercept_ci), ("slope", fit.slope_ci)):
        estimate = getattr(fit, name)
        assert estimate - interval[0] == pytest.approx(half_widths[name], rel=1e-5)
        assert interval[1] - estimate == pytest.approx(half_widths[name], rel=1e-5)
