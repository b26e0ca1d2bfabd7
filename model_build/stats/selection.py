"""Model selection from cross-validation: the one-standard-error rule.

Breiman et al., *Classification and Regression Trees* (1984), section 3.4.3; Hastie, Tibshirani &
Friedman, *The Elements of Statistical Learning*, section 7.10: among candidates whose score is
within one standard error of the best, take the simplest. Both `sarco tune` (the study's image
size and epochs) and the image recipes' default (`model_build/models/recipes.py`) choose by it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def standard_error(fold_aucs: Sequence[float]) -> float:
    """The standard error of a mean over folds: their sample standard deviation over sqrt(k)."""
    folds = np.asarray(fold_aucs, dtype=float)
    return float(folds.std(ddof=1) / np.sqrt(len(folds)))


def one_standard_error_rule(candidates: Sequence[dict], cost: Callable[[dict], Any]) -> tuple[dict, dict]:
    """(chosen, best) among ``candidates``, each with ``mean_auc`` and its ``fold_aucs``: the best
    has the highest mean fold AUC (the cheaper one on a tie); the chosen is the cheapest by
    ``cost`` whose mean is at least the best's minus the standard error of the best's fold AUCs."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    best = min(candidates, key=lambda c: (-c["mean_auc"], cost(c)))
    floor = best["mean_auc"] - standard_error(best["fold_aucs"])
    return min((c for c in candidates if c["mean_auc"] >= floor), key=cost), best
