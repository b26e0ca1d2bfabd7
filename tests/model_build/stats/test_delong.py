"""Fast (Sun & Xu) DeLong against the textbook O(m n) definition, and its invariances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy.stats import rankdata

import model_build.stats as st
from model_build.stats.ranks import midranks_of_sorted, structural_components


def naive_components(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong 1988 directly: psi(x, y) = 1 if x > y, 1/2 if tied, over every (case, control) pair."""
    cases, controls = score[y], score[~y]
    psi = (cases[:, None] > controls[None, :]) + 0.5 * (cases[:, None] == controls[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def naive_paired(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(difference, variance of the difference) from the naive components."""
    v10a, v01a = naive_components(y, a)
    v10b, v01b = naive_components(y, b)
    s10 = np.cov(np.vstack((v10a, v10b)))
    s01 = np.cov(np.vstack((v01a, v01b)))
    s = s10 / y.sum() + s01 / (~y).sum()
    return v10a.mean() - v10b.mean(), s[0, 0] + s[1, 1] - 2 * s[0, 1]


samples = hs.integers(min_value=0, max_value=2**32 - 1).flatmap(
    lambda seed: hs.tuples(hs.just(seed), hs.integers(4, 120), hs.sampled_from([0, 1, 2, 6])))


def draw(seed: int, n: int, decimals: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels with both classes (>= 2 each), two correlated scores rounded to create ties."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=bool)
    y[rng.choice(n, size=int(rng.integers(2, n - 1)), replace=False)] = True
    a = rng.normal(size=n) + y
    b = 0.6 * a + rng.normal(size=n)
    return y, np.round(a, decimals), np.round(b, decimals)


@settings(max_examples=150, deadline=None)
@given(samples)
def test_fast_components_equal_the_pairwise_definition(sample: tuple[int, int, int]) -> None:
    y, a, _ = draw(*sample)
    fast = structural_components(y, a)
    v10, v01 = naive_components(y, a)
    np.testing.assert_allclose(fast.v10, v10, rtol=0, atol=1e-14)
    np.testing.assert_allclose(fast.v01, v01, rtol=0, atol=1e-14)
    assert fast.auc == pytest.approx(v10.mean(), abs=1e-14)


@settings(max_examples=100, deadline=None)
@given(samples)
def test_paired_test_equals_the_pairwise_definition(sample: tuple[int, int, int]) -> None:
    y, a, b = draw(*sample)
    difference, variance = naive_paired(y, a, b)
    result = st.compare_auc(y, a, b)
    assert result.difference == pytest.approx(difference, abs=1e-14)
    assert result.se ** 2 == pytest.approx(max(variance, 0.0), rel=1e-9, abs=1e-15)


@settings(max_examples=100, deadline=None)
@given(hs.lists(hs.integers(-5, 5), min_size=1, max_size=60))
def test_midranks_equal_scipy_average_ranks(values: list[int]) -> None:
    ascending = np.sort(np.asarray(values, dtype=float))
    np.testing.assert_array_equal(midranks_of_sorted(ascending), rankdata(ascending, method="average"))


def test_auc_is_invariant_to_monotone_transforms_and_never_flips() -> None:
    y, a, _ = draw(3, 200, 2)
    auc = st.roc_auc(y, a)
    assert st.roc_auc(y, np.exp(a) * 10 + 4) == auc
    assert st.roc_auc(y, -a) == pytest.approx(1 - auc, abs=1e-15)  # reported below 0.5, not flipped
    assert st.delong_variance(y, -a) == pytest.approx(st.delong_variance(y, a), rel=1e-12)


def test_covariance_matrix_is_symmetric_with_the_variances_on_its_diagonal() -> None:
    y, a, b = draw(11, 150, 1)
    covariance = st.delong_covariance(y, a, b, a + b)
    assert covariance.shape == (3, 3)
    np.testing.assert_allclose(covariance, covariance.T, rtol=0, atol=1e-18)
    assert covariance[0, 0] == pytest.approx(st.delong_variance(y, a), rel=1e-12)
    assert covariance[1, 1] == pytest.approx(st.delong_variance(y, b), rel=1e-12)


def test_equal_scores_everywhere_are_valid_auc_one_half_with_zero_variance() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    interval = st.auc_ci(y, np.full(6, 0.3))
    assert (interval.auc, interval.lower, interval.upper, interval.variance) == (0.5, 0.5, 0.5, 0.0)
    assert st.auc_ci(y, np.full(6, 0.3), method="bootstrap", n_boot=50).lower == 0.5


def test_identical_scores_give_zero_difference_and_p_one_as_proc() -> None:
    y, a, _ = draw(5, 80, 2)
    result = st.compare_auc(y, a, a)
    assert (result.difference, result.z, result.p, result.lower, result.upper) == (0.0, 0.0, 1.0, 0.0, 0.0)


def test_zero_variance_with_a_nonzero_difference_is_infinitely_significant() -> None:
    """A perfect score against a constant one: DeLong's variance is 0, so z = inf and P = 0 (pROC: Inf, 0)."""
    y = np.array([0, 0, 0, 1, 1, 1])
    result = st.compare_auc(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], np.full(6, 0.5))
    assert result.difference == 0.5 and result.z == np.inf and result.p == 0.0


def test_unpaired_ci_excludes_zero_exactly_when_p_is_below_alpha() -> None:
    for seed in range(20):
        ya, a, _ = draw(seed, 60, 3)
        yb, b, _ = draw(seed + 100, 90, 3)
        for distribution in ("t", "normal"):
            result = st.compare_auc_unpaired(ya, a, yb, b * 0.3, distribution=distribution)
            excludes_zero = result.lower > 0 or result.upper < 0
            assert excludes_zero == (result.p < 0.05)
            assert (result.df is None) == (distribution == "normal")


def test_compare_auc_unpaired_flag_uses_the_unpaired_test() -> None:
    y, a, b = draw(8, 100, 3)
    assert st.compare_auc(y, a, b, paired=False) == st.compare_auc_unpaired(y, a, y, b)
