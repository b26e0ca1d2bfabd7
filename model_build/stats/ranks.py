"""Midranks and DeLong structural components by the fast algorithm of Sun & Xu (2014).

Sun X, Xu W. "Fast implementation of DeLong's algorithm for comparing the areas under
correlated receiver operating characteristic curves." IEEE Signal Processing Letters
21(11):1389-1393, 2014.

With m positives X and n negatives Y, and midranks (ties share their average rank)
Tz over all m + n scores, Tx within the positives and Ty within the negatives:

    AUC      = (sum_{i in pos} Tz_i - m(m + 1)/2) / (m n)
    V10_i    = (Tz_i - Tx_i) / n         (share of negatives below positive i, ties count 1/2)
    V01_j    = 1 - (Tz_j - Ty_j) / m     (share of positives above negative j, ties count 1/2)

Midranks are half-integers, so these sums are exact in float64 (up to 2**53), which is why the
AUC agrees with pROC to the last bits. This module is the only place ranks are computed: one
sort per score gives all three rankings, because each class taken in the overall sorted order is
itself sorted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def midranks_of_sorted(sorted_values: np.ndarray) -> np.ndarray:
    """1-based midranks of an already ascending array (ties get their average rank)."""
    size = sorted_values.size
    if size == 0:
        return np.empty(0)
    starts_run = np.empty(size, dtype=bool)
    starts_run[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=starts_run[1:])
    run_starts = np.flatnonzero(starts_run)
    run_ends = np.append(run_starts[1:], size)
    run_midrank = (run_starts + 1 + run_ends) / 2.0
    return np.repeat(run_midrank, run_ends - run_starts)


@dataclass(frozen=True)
class StructuralComponents:
    """DeLong's placement values of one score; means of both equal the AUC.

    ``v10`` has one entry per positive and ``v01`` one per negative, each in the participants'
    original order, so components of two scores on the same participants line up for the
    paired covariance.
    """

    auc: float
    v10: np.ndarray
    v01: np.ndarray


def structural_components(labels: np.ndarray, scores: np.ndarray) -> StructuralComponents:
    """AUC and structural components from one sort (labels: bool, scores: finite float64)."""
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    order = np.argsort(scores)
    sorted_scores = scores[order]
    sorted_is_pos = labels[order]

    rank_all = np.empty(labels.size)
    rank_all[order] = midranks_of_sorted(sorted_scores)
    rank_within = np.empty(labels.size)
    rank_within[order[sorted_is_pos]] = midranks_of_sorted(sorted_scores[sorted_is_pos])
    rank_within[order[~sorted_is_pos]] = midranks_of_sorted(sorted_scores[~sorted_is_pos])

    pos_rank_all = rank_all[labels]
    auc = (pos_rank_all.sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    v10 = (pos_rank_all - rank_within[labels]) / n_neg
    v01 = 1.0 - (rank_all[~labels] - rank_within[~labels]) / n_pos
    return StructuralComponents(auc=float(auc), v10=v10, v01=v01)
