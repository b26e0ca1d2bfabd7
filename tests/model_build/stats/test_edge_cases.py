"""Every refused input gets a StatsInputError that names the problem; valid corner cases work."""

from __future__ import annotations

import numpy as np
import pytest

import model_build.stats as st

Y = np.array([0, 1, 0, 1, 0, 1])
S = np.array([0.1, 0.8, 0.3, 0.6, 0.5, 0.4])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: st.auc_ci([1, 1, 1], [0.2, 0.3, 0.4]), "Only one class"),
        (lambda: st.auc_ci([0, 0, 0], [0.2, 0.3, 0.4], method="bootstrap"), "Only one class"),
        (lambda: st.roc_auc([1, 1], [0.2, 0.3]), "Only one class"),
        (lambda: st.compare_auc([0, 0, 0], [1, 2, 3], [3, 2, 1]), "Only one class"),
        (lambda: st.auc_ci(Y, np.where(Y, np.nan, S)), "non-finite"),
        (lambda: st.auc_ci(Y, np.where(Y, np.inf, S)), "non-finite"),
        (lambda: st.roc_curve(Y, np.append(S[:-1], -np.inf)), "non-finite"),
        (lambda: st.compare_auc(Y, S, np.append(S[:-1], np.nan)), "score_b has 1 non-finite"),
        (lambda: st.auc_ci(Y, S[:-1]), "5 values but the labels have 6"),
        (lambda: st.compare_auc(Y, S, S[:4]), "score_b has 4 values"),
        (lambda: st.compare_auc_unpaired(Y, S, Y[:3], S), "score_b has 6 values but the labels have 3"),
        (lambda: st.auc_ci([0, 1, 2, 1], [1, 2, 3, 4]), "element 2 is"),
        (lambda: st.auc_ci([0, 1, np.nan, 1], [1, 2, 3, 4]), "only 0 (negative) and 1"),
        (lambda: st.auc_ci(["no", "yes"], [1, 2]), "0/1 or booleans"),
        (lambda: st.auc_ci(Y, ["a"] * 6), "must be numeric"),
        (lambda: st.auc_ci(Y, S.astype(complex)), "must be numeric"),
        (lambda: st.auc_ci(Y.reshape(2, 3), S.reshape(2, 3)), "one-dimensional"),
        (lambda: st.auc_ci([], []), "empty"),
        (lambda: st.auc_ci([0, 1, 1, 1], [0.1, 0.5, 0.6, 0.7]), "at least 2 positive(s) and 2 negative(s)"),
        (lambda: st.compare_auc([0, 1, 1], [1, 2, 3], [3, 2, 1]), "at least 2 positive(s)"),
        (lambda: st.auc_ci(Y, S, level=1.0), "level must be strictly between"),
        (lambda: st.auc_ci(Y, S, level=0), "level must be strictly between"),
        (lambda: st.auc_ci(Y, S, method="wald"), "method must be 'delong' or 'bootstrap'"),
        (lambda: st.auc_ci(Y, S, method="bootstrap", n_boot=0), "n_boot must be a positive"),
        (lambda: st.youden_threshold(Y, np.ones(6)), "Youden's J <= 0"),
        (lambda: st.threshold_for_sensitivity(Y, S, 0), "target sensitivity must be in (0, 1]"),
        (lambda: st.threshold_for_specificity(Y, S, 1.5), "target specificity must be in (0, 1]"),
        (lambda: st.select_threshold(Y, S, "sensitivity"), "needs a target"),
        (lambda: st.select_threshold(Y, S, "max_accuracy"), "rule must be"),  # type: ignore[arg-type]
        (lambda: st.metrics_at_threshold(Y, S, float("nan")), "threshold is NaN"),
        (lambda: st.metrics_at_threshold([1, 1, 1], [0.2, 0.6, 0.7], 0.5), "Only one class"),
        (lambda: st.wilson_proportion(5, 3), "between 0 and total"),
        (lambda: st.brier_score(Y, S * 2), "probabilities in [0, 1]"),
        (lambda: st.calibration_intercept_slope(Y, np.where(Y, 1.0, 0.2)), "exactly 0 or 1"),
        (lambda: st.calibration_intercept_slope(Y, [0.1, 0.9, 0.2, 0.8, 0.3, 0.7]), "did not converge"),
        (lambda: st.calibration_intercept_slope([1, 1, 1], [0.2, 0.3, 0.4]), "Only one class"),
        (lambda: st.calibration_curve(Y, S, n_bins=0), "n_bins"),
        (lambda: st.calibration_curve(Y, S, strategy="kmeans"), "strategy"),  # type: ignore[arg-type]
        (lambda: st.net_benefit(Y, S, [0.0, 0.5]), "strictly between 0 and 1"),
        (lambda: st.decision_curve(Y, S, []), "non-empty"),
        (lambda: st.roc_confidence_band(Y, S, fpr_grid=[0.5, 1.2]), "fpr_grid"),
        (lambda: st.compare_auc_unpaired(Y, S, Y, S, distribution="z"), "distribution"),  # type: ignore[arg-type]
        (lambda: st.OperatingThreshold.from_dict({"value": 0.5}), "needs exactly the keys"),
        (lambda: st.delong_covariance(Y), "at least one score"),
    ],
)
def test_refused_input_gets_a_clear_error(call, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        call()
    assert message in str(caught.value)


def test_errors_are_stats_input_errors_and_value_errors() -> None:
    with pytest.raises(st.StatsInputError):
        st.auc_ci([1, 1], [0.1, 0.2])
    assert issubclass(st.StatsInputError, ValueError)


def test_valid_corner_cases_return_numbers_not_nan() -> None:
    # Booleans are fine as labels and as a binary test's scores.
    binary_test = st.auc_ci(Y.astype(bool), Y.astype(bool) ^ np.array([0, 0, 0, 0, 1, 1], dtype=bool))
    assert 0 <= binary_test.lower <= binary_test.auc <= binary_test.upper <= 1
    # One case and one control: AUC and its bootstrap exist, DeLong variance does not.
    assert st.roc_auc([0, 1], [0.2, 0.9]) == 1.0
    assert st.auc_ci([0, 1], [0.2, 0.9], method="bootstrap", n_boot=20).lower == 1.0
    # Perfect separation: CI collapses to [1, 1] (pROC warns, the numbers are the same).
    perfect = st.auc_ci(Y, np.where(Y, 0.9, 0.1))
    assert (perfect.lower, perfect.upper, perfect.variance) == (1.0, 1.0, 0.0)
    # Nobody called positive: PPV undefined (None), everything else defined.
    metrics = st.metrics_at_threshold(Y, S, threshold=2.0, n_boot=50)
    assert metrics.ppv.estimate is None and metrics.ppv.total == 0
    assert metrics.npv.estimate == 0.5 and metrics.f1 == 0.0
    assert not any(np.isnan(v) for v in (metrics.f1_lower, metrics.f1_upper))
