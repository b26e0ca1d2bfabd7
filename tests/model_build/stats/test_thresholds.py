"""Threshold selection on development data, frozen use elsewhere, and metrics at a threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest

import model_build.stats as st


def cohort(seed: int, n: int, decimals: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    return y, np.round(rng.normal(size=n) + 1.2 * y, decimals)


def rates(y: np.ndarray, score: np.ndarray, threshold: float) -> tuple[float, float]:
    called = score >= threshold
    return called[y].mean(), (~called[~y]).mean()


def brute_force_candidates(score: np.ndarray) -> np.ndarray:
    """Every cut that changes the classification: below, between and above the distinct scores."""
    distinct = np.unique(score)
    return np.concatenate(([-np.inf], (distinct[1:] + distinct[:-1]) / 2, [np.inf]))


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 1.0])
def test_target_sensitivity_gives_the_most_specific_cut_meeting_it(target: float) -> None:
    y, score = cohort(1, 300)
    chosen = st.threshold_for_sensitivity(y, score, target)
    sens, spec = rates(y, score, chosen.value)
    assert sens >= target
    assert (sens, spec) == pytest.approx((chosen.development_sensitivity, chosen.development_specificity))
    best_spec = max(rates(y, score, t)[1] for t in brute_force_candidates(score) if rates(y, score, t)[0] >= target)
    assert spec == pytest.approx(best_spec)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 1.0])
def test_target_specificity_gives_the_most_sensitive_cut_meeting_it(target: float) -> None:
    y, score = cohort(2, 300)
    chosen = st.threshold_for_specificity(y, score, target)
    sens, spec = rates(y, score, chosen.value)
    assert spec >= target
    best_sens = max(rates(y, score, t)[0] for t in brute_force_candidates(score) if rates(y, score, t)[1] >= target)
    assert sens == pytest.approx(best_sens)


def test_youden_maximises_j_over_every_cut() -> None:
    y, score = cohort(3, 250)
    chosen = st.select_threshold(y, score, "youden")
    best = max(sum(rates(y, score, t)) - 1 for t in brute_force_candidates(score))
    assert sum(rates(y, score, chosen.value)) - 1 == pytest.approx(best)
    assert chosen.value not in set(score)  # a midpoint, robust to rounding of identical scores


def test_frozen_threshold_round_trips_and_is_applied_unchanged_to_another_cohort() -> None:
    y_dev, s_dev = cohort(4, 357)
    frozen = st.select_threshold(y_dev, s_dev, "sensitivity", target=0.9)
    restored = st.OperatingThreshold.from_dict(json.loads(json.dumps(frozen.to_dict())))
    assert restored == frozen
    with pytest.raises(AttributeError):
        frozen.value = 0.0  # type: ignore[misc]
    y_ext, s_ext = cohort(5, 145)
    external = st.metrics_at_threshold(y_ext, s_ext, restored.value, n_boot=200)
    called = s_ext >= frozen.value
    assert external.threshold == frozen.value
    assert external.table == st.ConfusionTable(int(np.sum(called & y_ext)), int(np.sum(called & ~y_ext)),
                                               int(np.sum(~called & y_ext)), int(np.sum(~called & ~y_ext)))


def test_metrics_on_a_hand_counted_table() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.2, 0.75, 0.3, 0.2, 0.1, 0.05, 0.6])
    metrics = st.metrics_at_threshold(y, s, threshold=0.6, n_boot=300, seed=1)
    # >= 0.6: cases 0.9, 0.8, 0.7 (TP 3, FN 1); controls 0.75, 0.6 (FP 2, TN 4); 0.6 itself is positive.
    assert metrics.table == st.ConfusionTable(true_positive=3, false_positive=2, false_negative=1, true_negative=4)
    assert (metrics.sensitivity.estimate, metrics.specificity.estimate) == (3 / 4, 4 / 6)
    assert (metrics.ppv.estimate, metrics.npv.estimate, metrics.accuracy.estimate) == (3 / 5, 4 / 5, 7 / 10)
    assert metrics.f1 == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    for proportion in (metrics.sensitivity, metrics.specificity, metrics.ppv, metrics.npv, metrics.accuracy):
        assert proportion.lower < proportion.estimate < proportion.upper


def test_wilson_interval_at_the_boundaries() -> None:
    none = st.wilson_proportion(0, 20)
    everyone = st.wilson_proportion(20, 20)
    assert none.lower == 0.0 and 0 < none.upper < 0.2
    assert everyone.upper == pytest.approx(1.0) and 0.8 < everyone.lower < 1
    assert st.wilson_proportion(0, 0) == st.Proportion(0, 0, None, None, None)


def test_wilson_interval_matches_the_textbook_value() -> None:
    """8 of 10: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n) = 0.490 to 0.943 by hand."""
    eight = st.wilson_proportion(8, 10)
    assert (round(eight.lower, 3), round(eight.upper, 3)) == (0.490, 0.943)
