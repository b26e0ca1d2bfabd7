"""Input checks shared by every statistic, so each error is worded once and caught early.

A statistic computed on bad input does not fail loudly: NaN scores silently sort last, one
class makes every rate 0/0. These checks turn such input into a :class:`StatsInputError`
that says what is wrong and how to fix it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from sarco_core.errors import SarcoError


class StatsInputError(SarcoError, ValueError):
    """Input that a statistic cannot be computed from (a ValueError, so callers may catch either)."""


def as_labels(y_true: ArrayLike, name: str = "y_true") -> np.ndarray:
    """Return ``y_true`` as a boolean array (True = positive, e.g. sarcopenia).

    Accepts booleans or numbers equal to 0/1; anything else (2, -1, 0.5, NaN) is refused,
    because silently thresholding labels would hide a coding error in the cohort.
    """
    labels = np.asarray(y_true)
    if labels.ndim != 1:
        raise StatsInputError(f"{name} must be one-dimensional; got shape {labels.shape}.")
    if labels.size == 0:
        raise StatsInputError(f"{name} is empty: there is nothing to evaluate.")
    if labels.dtype == bool:
        return labels
    if not np.issubdtype(labels.dtype, np.number):
        raise StatsInputError(f"{name} must hold 0/1 or booleans; got dtype {labels.dtype}.")
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise StatsInputError(
            f"{name} must hold only 0 (negative) and 1 (positive); element {first} is {labels[first]!r}. "
            "Recode the outcome to 0/1 before computing statistics."
        )
    return labels.astype(bool)


def as_scores(y_score: ArrayLike, n: int, name: str = "y_score") -> np.ndarray:
    """Return ``y_score`` as float64, checking its length against the labels and finiteness."""
    scores = np.asarray(y_score)
    if scores.ndim != 1:
        raise StatsInputError(f"{name} must be one-dimensional; got shape {scores.shape}.")
    if scores.shape[0] != n:
        raise StatsInputError(
            f"{name} has {scores.shape[0]} values but the labels have {n}: "
            "pass one score per participant, in the same order."
        )
    real = scores.dtype == bool or (np.issubdtype(scores.dtype, np.number)
                                    and not np.issubdtype(scores.dtype, np.complexfloating))
    if not real:
        raise StatsInputError(f"{name} must be numeric (a binary test may be passed as 0/1 or booleans); "
                              f"got dtype {scores.dtype}.")
    scores = scores.astype(np.float64, copy=False)
    bad = ~np.isfinite(scores)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise StatsInputError(
            f"{name} has {int(bad.sum())} non-finite value(s) (first at element {first}: {scores[first]}). "
            "Drop or impute those participants explicitly; NaN or inf would sort arbitrarily."
        )
    return scores


def check_both_classes(labels: np.ndarray, minimum: int = 1, why: str = "an AUC") -> tuple[int, int]:
    """Return (positives, negatives), refusing fewer than ``minimum`` of either class."""
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    if n_pos < minimum or n_neg < minimum:
        raise StatsInputError(
            f"{why} needs at least {minimum} positive(s) and {minimum} negative(s); "
            f"got {n_pos} positive(s) and {n_neg} negative(s)."
            + (" Only one class is present: check the outcome column or the subgroup filter."
               if min(n_pos, n_neg) == 0 else "")
        )
    return n_pos, n_neg


def binary_scores(y_true: ArrayLike, y_score: ArrayLike, minimum: int = 1,
                  why: str = "an AUC", score_name: str = "y_score") -> tuple[np.ndarray, np.ndarray]:
    """Validated (labels, scores) pair: the one entry point the ROC statistics use."""
    labels = as_labels(y_true)
    scores = as_scores(y_score, labels.size, score_name)
    check_both_classes(labels, minimum, why)
    return labels, scores


def check_level(level: float) -> float:
    """Confidence level strictly between 0 and 1."""
    if not 0.0 < float(level) < 1.0:
        raise StatsInputError(f"level must be strictly between 0 and 1 (e.g. 0.95); got {level}.")
    return float(level)


def check_probabilities(p: ArrayLike, n: int, name: str = "y_prob") -> np.ndarray:
    """Predicted probabilities: finite and inside [0, 1]."""
    probs = as_scores(p, n, name)
    outside = (probs < 0) | (probs > 1)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise StatsInputError(
            f"{name} must be probabilities in [0, 1]; element {first} is {probs[first]}. "
            "Pass the model's probability (e.g. sigmoid of the logit), not a raw score."
        )
    return probs
