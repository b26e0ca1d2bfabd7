"""Fold-aware statistics: the fold-stratified DeLong test, Holm's adjustment, Platt scaling, the
cost and screening threshold rules with their bootstrap interval, and Wilson intervals by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from scipy.special import expit, logit

import model_build.stats as st


def folds_example(seed: int = 5, n: int = 120, folds: int = 4) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.35
    fold = np.arange(n) % folds
    a = np.round(y + rng.normal(size=n) + 0.5 * fold, 1)  # fold-dependent shift: pooling mixes scales
    b = np.round(0.6 * y + rng.normal(size=n), 1)
    return y, a, b, fold


def brute_force_difference(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, int]:
    """AUC_a, AUC_b and Var(AUC_a - AUC_b) from the O(mn) kernel psi (DeLong 1988, eq. 2-4)."""
    def kernel(score: np.ndarray) -> np.ndarray:
        x, z = score[y][:, None], score[~y][None, :]
        return (x > z) + 0.5 * (x == z)
    ka, kb = kernel(a), kernel(b)
    m, n = ka.shape
    v10, v01 = ka.mean(axis=1) - kb.mean(axis=1), ka.mean(axis=0) - kb.mean(axis=0)
    return ka.mean(), kb.mean(), np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n, m * n


def test_one_fold_is_the_ordinary_paired_delong_test() -> None:
    y, a, b, _ = folds_example()
    ordinary = st.compare_auc(y, a, b)
    for weighting in ("pairs", "inverse-variance"):
        assert st.compare_auc_stratified(y, a, b, np.zeros(y.size), weighting) == pytest.approx(ordinary)


@pytest.mark.parametrize("weighting", ["pairs", "inverse-variance"])
def test_fold_stratified_delong_matches_an_independent_computation(weighting: str) -> None:
    y, a, b, fold = folds_example()
    per_fold = np.array([brute_force_difference(y[fold == k], a[fold == k], b[fold == k]) for k in range(4)])
    auc_a, auc_b, variance, pairs = per_fold.T
    weights = pairs if weighting == "pairs" else 1.0 / variance
    weights = weights / weights.sum()
    difference = weights @ (auc_a - auc_b)
    se = np.sqrt(weights ** 2 @ variance)
    found = st.compare_auc_stratified(y, a, b, fold, weighting)
    assert found.auc_a == pytest.approx(weights @ auc_a, abs=1e-12)
    assert found.difference == pytest.approx(difference, abs=1e-12)
    assert found.se == pytest.approx(se, abs=1e-12)
    assert found.p == pytest.approx(2 * scipy_stats.norm.sf(abs(difference / se)), abs=1e-12)
    assert found.lower == pytest.approx(difference - 1.959963984540054 * se, abs=1e-12)
    if weighting == "pairs":  # the AUC over within-fold pairs only, and not the pooled AUC
        assert found.auc_a != pytest.approx(st.roc_auc(y, a), abs=1e-3)


def test_inverse_variance_refuses_a_fold_without_variance() -> None:
    y, a, _, fold = folds_example()
    with pytest.raises(st.StatsInputError, match="weighting='pairs'"):
        st.compare_auc_stratified(y, a, a, fold, "inverse-variance")
    assert st.compare_auc_stratified(y, a, a, fold).p == 1.0


def test_holm_matches_a_hand_computation() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04: x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    adjusted = st.holm_adjust([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert st.holm_adjust([0.6, 0.5]) == pytest.approx([1.0, 1.0])
    assert st.holm_adjust([0.2]) == pytest.approx([0.2])
    with pytest.raises(st.StatsInputError):
        st.holm_adjust([0.1, 1.2])


def test_platt_scaling_recovers_a_known_miscalibration_and_inverts() -> None:
    rng = np.random.default_rng(2)
    true_logit = rng.normal(0, 1.5, 20000)
    y = rng.random(true_logit.size) < expit(true_logit)
    raw = expit((true_logit + 0.8) / 2.0)  # too timid and shifted: truth = -0.8 + 2 logit(raw)
    fit = st.PlattScaling.fit(y, raw)
    assert fit.intercept == pytest.approx(-0.8, abs=0.08) and fit.slope == pytest.approx(2.0, abs=0.08)
    assert fit.apply([0.3])[0] == pytest.approx(expit(fit.intercept + fit.slope * logit(0.3)))
    assert fit.invert(float(fit.apply([0.42])[0])) == pytest.approx(0.42)
    with pytest.raises(st.StatsInputError, match="wrong"):
        st.PlattScaling.fit(y, 1 - raw)


def test_threshold_rules_on_a_constructed_example() -> None:
    # 4 cases at 0.2, 0.6, 0.7, 0.9; 6 controls at 0.1, 0.3, 0.4, 0.5, 0.65, 0.8.
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    score = np.array([0.2, 0.6, 0.7, 0.9, 0.1, 0.3, 0.4, 0.5, 0.65, 0.8])
    # Youden: cut 0.55 gives 3/4 + 4/6 - 1 = 0.417, the best.
    assert st.youden_threshold(y, score).value == pytest.approx(0.55)
    # screening at sensitivity >= 0.85 must keep all 4 cases: the cut just above 0.1.
    screen = st.select_threshold(y, score, "sensitivity", 0.85)
    assert screen.value == pytest.approx(0.15) and screen.development_sensitivity == 1.0
    # cost 3: cut 0.15 costs 5 false alarms, 0.55 costs 3 x 1 + 2 = 5 too: the lower one wins the tie;
    # cost 1: 0.55 costs 3, 0.75 costs 2 + 1 = 3, 0.85 costs 3 + 0 ... 0.55 is the lowest of least cost.
    assert st.select_threshold(y, score, "cost", 3.0).value == pytest.approx(0.15)
    assert st.select_threshold(y, score, "cost", 1.0).value == pytest.approx(0.55)
    # cost 0.2: calling only 0.9 costs 0.2 x 3 = 0.6, calling nobody 0.8, 0.75 costs 0.6 + 1.
    assert st.select_threshold(y, score, "cost", 0.2).value == pytest.approx(0.85)
    with pytest.raises(st.StatsInputError, match="needs a target"):
        st.select_threshold(y, score, "cost")


def test_the_threshold_interval_is_seeded_and_surrounds_the_cut() -> None:
    rng = np.random.default_rng(9)
    y = rng.random(300) < 0.3
    score = expit(1.5 * y + rng.normal(size=300))
    cut = st.select_threshold(y, score, "sensitivity", 0.85).value
    interval = st.threshold_interval(y, score, "sensitivity", 0.85, n_boot=300, seed=4)
    assert interval == st.threshold_interval(y, score, "sensitivity", 0.85, n_boot=300, seed=4)
    assert interval != st.threshold_interval(y, score, "sensitivity", 0.85, n_boot=300, seed=5)
    assert interval[0] < cut < interval[1] and interval[1] - interval[0] < 0.3


@pytest.mark.parametrize(("k", "n"), [(17, 20), (3, 40), (0, 12), (12, 12)])
def test_wilson_interval_by_hand(k: int, n: int) -> None:
    z = scipy_stats.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    found = st.wilson_proportion(k, n)
    assert (found.lower, found.upper) == pytest.approx((centre - half, centre + half), abs=1e-12)
