"""Stratified bootstrap, vectorised: resamples as count matrices, statistics in bulk.

Stratified as in pROC (``boot.stratified = TRUE``): each resample draws the positives with
replacement from the positives and the negatives from the negatives, so every resample keeps
the study's class sizes and an AUC always exists. Resamples are generated in chunks as an
index matrix (one row per resample) and turned into a count matrix (how often each participant
appears in each resample), from which a statistic is computed for all rows at once.
The stream of random draws depends only on the seed, ``n_boot`` and the data size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from model_build.stats._validate import StatsInputError

CountsStatistic = Callable[[np.ndarray], np.ndarray]
"""Maps a (resamples, participants) count matrix to one value per resample."""

_MAX_CHUNK_CELLS = 1 << 22  # 4 Mi counts (32 MiB) per chunk bounds memory on large cohorts


def stratified_resample_counts(labels: np.ndarray, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield int64 count matrices, chunk by chunk, ``n_boot`` rows in all."""
    if n_boot < 1:
        raise StatsInputError(f"n_boot must be a positive number of resamples; got {n_boot}.")
    positives = np.flatnonzero(labels)
    negatives = np.flatnonzero(~labels)
    size = labels.size
    chunk = max(1, min(n_boot, _MAX_CHUNK_CELLS // size))
    done = 0
    while done < n_boot:
        rows = min(chunk, n_boot - done)
        index_matrix = np.concatenate(
            (positives[rng.integers(0, positives.size, size=(rows, positives.size))],
             negatives[rng.integers(0, negatives.size, size=(rows, negatives.size))]),
            axis=1,
        )
        flat = index_matrix + (np.arange(rows) * size)[:, None]
        yield np.bincount(flat.ravel(), minlength=rows * size).reshape(rows, size)
        done += rows


def bootstrap_replicates(labels: np.ndarray, statistic: CountsStatistic, n_boot: int, seed: int) -> np.ndarray:
    """The statistic on ``n_boot`` stratified resamples (seeded numpy Generator)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([statistic(counts) for counts in stratified_resample_counts(labels, n_boot, rng)])


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval; numpy's default quantile is R's type 7, the one pROC uses."""
    tail = (1.0 - level) / 2.0
    lower, upper = np.quantile(replicates, [tail, 1.0 - tail])
    return float(lower), float(upper)


class AucFromCounts:
    """AUC of every resample from its counts, in O(resamples x participants).

    The negatives are sorted once; for each positive, the negatives strictly below it form a
    prefix of that order and the tied ones the next block. A resample's count of negatives
    below (or tied with) a positive is then a cumulative sum of negative counts read at two
    fixed positions. Everything is integer arithmetic until the final division, so each
    replicate equals the AUC of the resampled data exactly (as the midrank formula gives it).
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray) -> None:
        self.positives = np.flatnonzero(labels)
        negatives = np.flatnonzero(~labels)
        order = np.argsort(scores[negatives], kind="stable")
        self.negatives_sorted = negatives[order]
        sorted_negative_scores = scores[self.negatives_sorted]
        positive_scores = scores[self.positives]
        self.below = np.searchsorted(sorted_negative_scores, positive_scores, side="left")
        self.below_or_tied = np.searchsorted(sorted_negative_scores, positive_scores, side="right")

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        negative_counts = counts[:, self.negatives_sorted]
        cumulative = np.zeros((counts.shape[0], negative_counts.shape[1] + 1), dtype=np.int64)
        np.cumsum(negative_counts, axis=1, out=cumulative[:, 1:])
        twice_wins = cumulative[:, self.below] + cumulative[:, self.below_or_tied]
        numerator = (counts[:, self.positives] * twice_wins).sum(axis=1)
        n_pos, n_neg = self.positives.size, self.negatives_sorted.size
        return numerator / (2.0 * n_pos * n_neg)


def bootstrap_aucs(labels: np.ndarray, scores: np.ndarray, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """AUC replicates under stratified resampling (labels: bool, scores: finite float64)."""
    return bootstrap_replicates(labels, AucFromCounts(labels, scores), n_boot, seed)
