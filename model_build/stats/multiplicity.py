"""Holm's step-down adjustment of P values for a family of tests.

Holm S, "A simple sequentially rejective multiple test procedure", Scandinavian Journal of
Statistics 6(2):65-70, 1979; the same numbers as R's ``p.adjust(p, method = "holm")``. Why: the
study reports several model comparisons on one cohort, and a reader scanning them for P < 0.05
needs the family-wise error controlled; the raw P stays beside the adjusted one.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from model_build.stats._validate import StatsInputError


def holm_adjust(p_values: ArrayLike) -> np.ndarray:
    """Holm-adjusted P values in the input's order: the k-th smallest of m is multiplied by
    m - k + 1, then made non-decreasing along the sorted order and capped at 1."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise StatsInputError("P values must be finite numbers in [0, 1].")
    order = np.argsort(p, kind="stable")
    scaled = (p.size - np.arange(p.size)) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted
