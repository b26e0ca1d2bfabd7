"""Confidence interval for one AUC: DeLong (pROC's ``ci.auc`` default) or stratified bootstrap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as scipy_stats

from model_build.stats._validate import StatsInputError, binary_scores, check_level
from model_build.stats.bootstrap import bootstrap_aucs, percentile_interval
from model_build.stats.delong import component_variance, delong_components
from model_build.stats.ranks import structural_components


@dataclass(frozen=True)
class AucInterval:
    """An AUC with its confidence interval; ``variance`` is DeLong's (None for bootstrap)."""

    auc: float
    lower: float
    upper: float
    level: float
    method: str
    variance: float | None = None
    n_boot: int | None = None
    seed: int | None = None


def auc_ci(y_true: ArrayLike, y_score: ArrayLike, method: Literal["delong", "bootstrap"] = "delong",
           level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> AucInterval:
    """AUC and its confidence interval.

    - ``"delong"``: AUC -/+ z_{(1+level)/2} sqrt(Var_DeLong), truncated to [0, 1] as pROC does
      (needs at least 2 positives and 2 negatives).
    - ``"bootstrap"``: percentile interval of ``n_boot`` stratified resamples (cases and controls
      resampled separately, as pROC's default), reproducible from ``seed``.
    """
    level = check_level(level)
    if method == "delong":
        components = delong_components(y_true, y_score)
        variance = component_variance(components)
        half_width = float(scipy_stats.norm.ppf(0.5 + level / 2.0)) * np.sqrt(variance)
        return AucInterval(auc=components.auc, lower=float(np.clip(components.auc - half_width, 0.0, 1.0)),
                           upper=float(np.clip(components.auc + half_width, 0.0, 1.0)), level=level,
                           method="delong", variance=variance)
    if method == "bootstrap":
        labels, scores = binary_scores(y_true, y_score)
        replicates = bootstrap_aucs(labels, scores, n_boot=n_boot, seed=seed)
        lower, upper = percentile_interval(replicates, level)
        return AucInterval(auc=structural_components(labels, scores).auc, lower=lower, upper=upper, level=level,
                           method="bootstrap", n_boot=n_boot, seed=seed)
    raise StatsInputError(f"method must be 'delong' or 'bootstrap'; got {method!r}.")
