"""DeLong variance, covariance and tests of AUC differences, as R's pROC computes them.

DeLong ER, DeLong DM, Clarke-Pearson DL. "Comparing the areas under two or more correlated
receiver operating characteristic curves: a nonparametric approach." Biometrics 44:837-845, 1988.
Structural components come from :mod:`model_build.stats.ranks` (Sun & Xu's fast algorithm).

- Var(AUC) = s10/m + s01/n with s10, s01 the ddof=1 variances of V10 (positives) and V01
  (negatives): pROC's ``var(roc)`` and ``ci.auc`` default.
- Paired (same participants): S = S10/m + S01/n from the covariance matrices of the components,
  z = (AUC_a - AUC_b)/sqrt(S_aa + S_bb - 2 S_ab), P = 2 Phi(-|z|), CI = diff -/+ z_q sqrt(.) —
  pROC's ``roc.test(paired = TRUE, method = "delong")``, including its conf.int.
- Unpaired (two cohorts): D = (AUC_a - AUC_b)/sqrt(Var_a + Var_b). pROC refers D to a
  t distribution with Welch-Satterthwaite degrees of freedom (``delong.unpaired.test``); that is
  the default here so results match pROC; ``distribution="normal"`` gives the textbook z test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as scipy_stats

from model_build.stats._validate import (
    StatsInputError,
    as_labels,
    as_scores,
    binary_scores,
    check_both_classes,
    check_level,
)
from model_build.stats.ranks import StructuralComponents, structural_components

_DELONG_WHY = "DeLong's variance"  # needs >= 2 per class: sample variances use ddof = 1


@dataclass(frozen=True)
class AucComparison:
    """Difference of two AUCs (a - b) with its confidence interval and two-sided test."""

    auc_a: float
    auc_b: float
    difference: float
    lower: float
    upper: float
    z: float
    p: float
    se: float
    level: float
    paired: bool
    df: float | None = None
    """Degrees of freedom of the t reference (unpaired, pROC style); None for a normal reference."""


def delong_components(y_true: ArrayLike, y_score: ArrayLike) -> StructuralComponents:
    """Validated structural components of one score (at least 2 positives and 2 negatives)."""
    labels, scores = binary_scores(y_true, y_score, minimum=2, why=_DELONG_WHY)
    return structural_components(labels, scores)


def component_variance(components: StructuralComponents) -> float:
    """DeLong variance of one AUC from its structural components."""
    return float(np.var(components.v10, ddof=1) / components.v10.size
                 + np.var(components.v01, ddof=1) / components.v01.size)


def delong_variance(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """DeLong variance of the AUC (pROC ``var(roc, method = "delong")``)."""
    return component_variance(delong_components(y_true, y_score))


def paired_components(y_true: ArrayLike, scores: dict[str, ArrayLike]) -> list[StructuralComponents]:
    """Validated components of several named scores on the same participants."""
    labels = as_labels(y_true)
    check_both_classes(labels, 2, _DELONG_WHY)
    return [structural_components(labels, as_scores(s, labels.size, name)) for name, s in scores.items()]


def covariance_from_components(components: list[StructuralComponents]) -> np.ndarray:
    """R x R DeLong covariance S = S10/m + S01/n of R AUCs on the same participants."""
    v10 = np.vstack([c.v10 for c in components])
    v01 = np.vstack([c.v01 for c in components])
    return np.atleast_2d(np.cov(v10, ddof=1)) / v10.shape[1] + np.atleast_2d(np.cov(v01, ddof=1)) / v01.shape[1]


def delong_covariance(y_true: ArrayLike, *scores: ArrayLike) -> np.ndarray:
    """R x R DeLong covariance matrix of the AUCs of R scores on the same participants."""
    if not scores:
        raise StatsInputError("delong_covariance needs at least one score.")
    named = {f"score {k}": score for k, score in enumerate(scores)}
    return covariance_from_components(paired_components(y_true, named))


def _standardised(difference: float, se: float) -> float:
    """difference / se, with pROC's convention 0/0 -> 0 (identical curves, e.g. two perfect scores)."""
    if se > 0:
        return difference / se
    return 0.0 if difference == 0 else float(np.copysign(np.inf, difference))


def compare_auc(y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike, paired: bool = True,
                level: float = 0.95) -> AucComparison:
    """Compare the AUCs of two scores on the same participants (paired DeLong by default).

    ``paired=False`` ignores the pairing and treats the two as independent samples (the
    unpaired test on the same labels): only sensible when the scores came from different people.
    """
    if not paired:
        return compare_auc_unpaired(y_true, score_a, y_true, score_b, level=level)
    level = check_level(level)
    components = paired_components(y_true, {"score_a": score_a, "score_b": score_b})
    covariance = covariance_from_components(components)
    variance = covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1]
    auc_a, auc_b = components[0].auc, components[1].auc
    return _comparison(auc_a, auc_b, max(float(variance), 0.0), level, paired=True, df=None)


def compare_auc_unpaired(y_a: ArrayLike, score_a: ArrayLike, y_b: ArrayLike, score_b: ArrayLike,
                         level: float = 0.95,
                         distribution: Literal["t", "normal"] = "t") -> AucComparison:
    """Compare the AUCs of two independent cohorts (unpaired DeLong).

    ``distribution="t"`` (default) matches pROC: D is referred to a t distribution with
    df = (V_a + V_b)^2 / (V_a^2/(N_a - 1) + V_b^2/(N_b - 1)), N the cohort sizes; the CI uses
    the same t quantile so that it excludes 0 exactly when P < 1 - level.
    """
    level = check_level(level)
    if distribution not in ("t", "normal"):
        raise StatsInputError(f"distribution must be 't' or 'normal'; got {distribution!r}.")
    labels_a, scores_a = binary_scores(y_a, score_a, minimum=2, why=_DELONG_WHY, score_name="score_a")
    labels_b, scores_b = binary_scores(y_b, score_b, minimum=2, why=_DELONG_WHY, score_name="score_b")
    components_a = structural_components(labels_a, scores_a)
    components_b = structural_components(labels_b, scores_b)
    var_a, var_b = component_variance(components_a), component_variance(components_b)
    df = None
    if distribution == "t" and var_a + var_b > 0:
        df = (var_a + var_b) ** 2 / (var_a ** 2 / (labels_a.size - 1) + var_b ** 2 / (labels_b.size - 1))
    return _comparison(components_a.auc, components_b.auc, var_a + var_b, level, paired=False, df=df)


def _comparison(auc_a: float, auc_b: float, variance: float, level: float, paired: bool,
                df: float | None) -> AucComparison:
    difference = auc_a - auc_b
    se = float(np.sqrt(variance))
    z = _standardised(difference, se)
    reference = scipy_stats.norm if df is None else scipy_stats.t(df)
    p = float(2.0 * reference.sf(abs(z)))
    half_width = float(reference.ppf(0.5 + level / 2.0)) * se
    return AucComparison(auc_a=auc_a, auc_b=auc_b, difference=difference, lower=difference - half_width,
                         upper=difference + half_width, z=z, p=p, se=se, level=level, paired=paired, df=df)
