"""The vectorised stratified bootstrap: each replicate is exactly the statistic of a resample."""

from __future__ import annotations

import numpy as np
import pytest

import model_build.stats as st
from model_build.stats import bootstrap
from model_build.stats.bootstrap import AucFromCounts, bootstrap_aucs, stratified_resample_counts


def cohort(seed: int = 0, n: int = 120, decimals: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.35
    return y, np.round(rng.normal(size=n) + y, decimals)


def test_resamples_are_stratified() -> None:
    y, _ = cohort()
    for counts in stratified_resample_counts(y, 300, np.random.default_rng(1)):
        assert np.all(counts[:, y].sum(axis=1) == y.sum())
        assert np.all(counts[:, ~y].sum(axis=1) == (~y).sum())


def test_each_replicate_is_the_auc_of_its_resampled_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rebuild each resample explicitly from its counts and compute its AUC the slow way,
    across several chunks (the chunk size is shrunk so that 40 resamples take 6 chunks)."""
    monkeypatch.setattr(bootstrap, "_MAX_CHUNK_CELLS", 120 * 7)
    y, score = cohort(decimals=0)  # heavy ties
    chunks = list(stratified_resample_counts(y, 40, np.random.default_rng(3)))
    assert [c.shape[0] for c in chunks] == [7, 7, 7, 7, 7, 5]
    for counts in chunks:
        for row, replicate in zip(counts, AucFromCounts(y, score)(counts)):
            resampled = np.repeat(np.arange(y.size), row)
            assert replicate == pytest.approx(st.roc_auc(y[resampled], score[resampled]), abs=1e-14)


def test_seeded_and_reproducible() -> None:
    y, score = cohort()
    first = st.auc_ci(y, score, method="bootstrap", n_boot=500, seed=11)
    assert first == st.auc_ci(y, score, method="bootstrap", n_boot=500, seed=11)
    assert first != st.auc_ci(y, score, method="bootstrap", n_boot=500, seed=12)
    assert first.lower < first.auc < first.upper


def test_bootstrap_spread_is_close_to_delong() -> None:
    """Both estimate the sampling sd of the AUC; on 1,000 participants they agree to ~10%."""
    y, score = cohort(n=1000, decimals=3)
    spread = bootstrap_aucs(y, score, n_boot=2000, seed=0).std(ddof=1)
    assert spread == pytest.approx(np.sqrt(st.delong_variance(y, score)), rel=0.1)


def test_f1_interval_brackets_the_estimate() -> None:
    y, score = cohort(n=300, decimals=2)
    metrics = st.metrics_at_threshold(y, score, threshold=0.5, n_boot=1000, seed=2)
    assert metrics.f1_lower < metrics.f1 < metrics.f1_upper


def test_roc_band_brackets_the_curve_and_is_monotone() -> None:
    y, score = cohort(n=400, decimals=2)
    band = st.roc_confidence_band(y, score, n_boot=500, seed=1)
    curve = st.roc_curve(y, score)
    # The point estimate's best TPR at FPR <= f, by brute force over the curve's points.
    estimate = np.array([curve.tpr[curve.fpr <= f + 1e-12].max() for f in band.fpr])
    inside = (band.tpr_lower <= estimate + 1e-12) & (estimate <= band.tpr_upper + 1e-12)
    assert inside.mean() > 0.95
    assert np.all(np.diff(band.tpr_lower) >= 0) and np.all(np.diff(band.tpr_upper) >= 0)
    assert band.tpr_upper[-1] == 1.0 and band.tpr_lower[0] >= 0
