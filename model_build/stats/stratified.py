"""Fold-stratified paired DeLong test: the AUC difference of two scores within strata (folds),
combined over strata.

Why: out-of-fold predictions come from different models, one per fold, each with its own score
scale, so pooling them ranks a participant of one fold against one of another with numbers that
are not comparable; the pooled AUC mixes discrimination with the folds' calibration (Forman G,
Scholz M, "Apples-to-apples in cross-validation studies", ACM SIGKDD Explorations 12(1):49-57,
2010). Here every stratum gets its own paired DeLong difference d_k and variance v_k
(:mod:`model_build.stats.delong`; strata hold different participants, so they are independent),
and the strata are combined as a fixed-effect estimate (Borenstein M, Hedges LV, Higgins JPT,
Rothstein HR, *Introduction to Meta-Analysis*, Wiley 2009, ch. 11):

    d = sum_k w_k d_k / sum_k w_k,   Var(d) = sum_k w_k^2 v_k / (sum_k w_k)^2,   z = d / sqrt(Var(d))

- ``weighting="pairs"`` (default): w_k = m_k n_k, the stratum's positive-negative pairs, so each
  model's combined AUC is the AUC over within-fold pairs only (every pair counted once, as in the
  pooled AUC, but never across folds). The weights do not depend on the estimates.
- ``weighting="inverse-variance"``: w_k = 1 / v_k, so Var(d) = 1 / sum_k w_k (the textbook
  fixed-effect weights); refused when a stratum's difference has no variance.
With one stratum both are exactly :func:`model_build.stats.delong.compare_auc`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from model_build.stats._validate import StatsInputError, as_labels, as_scores, check_level
from model_build.stats.delong import AucComparison, _comparison, covariance_from_components, paired_components

Weighting = Literal["pairs", "inverse-variance"]


def compare_auc_stratified(y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike, strata: ArrayLike,
                           weighting: Weighting = "pairs", level: float = 0.95) -> AucComparison:
    """Paired DeLong test of a - b within each stratum, combined as in the module docstring.
    Every stratum needs at least 2 positives and 2 negatives (DeLong's variance)."""
    level = check_level(level)
    if weighting not in ("pairs", "inverse-variance"):
        raise StatsInputError(f"weighting must be 'pairs' or 'inverse-variance'; got {weighting!r}.")
    labels = as_labels(y_true)
    a, b = as_scores(score_a, labels.size, "score_a"), as_scores(score_b, labels.size, "score_b")
    groups = np.asarray(strata).ravel()
    if groups.size != labels.size:
        raise StatsInputError(f"strata has {groups.size} values for {labels.size} participants.")
    rows = []
    for stratum in np.unique(groups):
        inside = groups == stratum
        components = paired_components(labels[inside], {"score_a": a[inside], "score_b": b[inside]})
        covariance = covariance_from_components(components)
        variance = max(float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1]), 0.0)
        pairs = float(components[0].v10.size * components[0].v01.size)
        rows.append((components[0].auc, components[1].auc, variance, pairs))
    auc_a, auc_b, variance, pairs = (np.array(column) for column in zip(*rows))
    if weighting == "inverse-variance" and np.any(variance == 0):
        raise StatsInputError("a stratum's AUC difference has no variance, so inverse-variance weights are "
                              "infinite; use weighting='pairs'.")
    weights = pairs if weighting == "pairs" else 1.0 / variance
    weights = weights / weights.sum()
    return _comparison(float(weights @ auc_a), float(weights @ auc_b), float(weights ** 2 @ variance), level,
                       paired=True, df=None)
