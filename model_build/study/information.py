"""Contributions that measure information: results.json's ``information`` block.

The paper's "contribution" (the evidence share, :func:`model_build.study.results.contributions`)
is a modality's share of the evidence emitted for a class. It measures how a head spends its
evidence, not what the modality adds: a frozen image head that emits evidence mostly for
non-sarcopenia gets a small sarcopenia share however well it separates the classes. So beside it,
per cohort, for the multimodal evidential model:

- **Shapley values of the fused log-odds** (:mod:`model_build.models.attribution`; a missing
  modality is the vacuous opinion), signed towards the participant's true class and averaged over
  that class's participants, and their share of the sum over the modalities (only when every
  modality's mean is positive: a share of parts that pull both ways is not a share);
- **the AUC lost** when a modality is made vacuous for everyone;
- on synthetic cohorts, **the oracle's split**: each modality's own Bayes log-likelihood ratio
  (``logit p_<modality> - logit prevalence`` from truth.csv), signed and averaged the same way;
- where the evidence share and the Shapley share of a modality differ by more than
  :data:`DISAGREEMENT`, the pair is listed with the share of that class's participants for whom
  the modality's head emits more evidence for the class than against it: the usual reason.

Intervals: 95 % percentile bootstrap, participants resampled within each class (the statistics'
stratified bootstrap, :mod:`model_build.stats.bootstrap`), every quantity on the same resamples.
Everything is recomputed from ``predictions/<model>/<cohort>.csv`` (its ``evidence_*`` columns).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.special import logit

from model_build.models import CLASSES as HEAD_CLASSES
from model_build.models.attribution import fused_log_odds, shapley_log_odds, without_each
from model_build.models.predict import evidence_column
from model_build.stats.bootstrap import AucFromCounts, bootstrap_replicates, percentile_interval

N_BOOT = 2000
DISAGREEMENT = 0.15  # evidence share and Shapley share further apart than this are reported
CLASSES = {"sarcopenia": 1, "non_sarcopenia": 0}
DESCRIPTION = ("Shapley values of the fused log-odds over the subsets of the data types (a data type left out is "
               "the vacuous opinion), signed towards the true class and averaged over that class's participants; "
               "share = a data type's mean over the sum of the data types' means, given only when every mean is "
               "positive (its interval over the resamples where every mean is); a negative mean moves that class's "
               "participants away from their class on average. AUC drop = AUC of the fused model "
               "minus its AUC with the data type vacuous. Oracle: each data type's own Bayes log-likelihood ratio, "
               "signed and averaged the same way. 95% percentile bootstrap intervals, participants resampled "
               "within each class.")


def has_evidence(table: pd.DataFrame, modalities: list[str]) -> bool:
    return all(evidence_column(m, k) in table for m in modalities for k in HEAD_CLASSES)


def summary(tables: dict[str, pd.DataFrame], model: str, modalities: list[str], truth: pd.DataFrame | None,
            seed: int, n_boot: int = N_BOOT) -> dict:
    """The ``information`` block for ``model``'s prediction tables, one entry per cohort with both classes."""
    cohorts = {name: cohort_information(table, modalities, truth, seed, n_boot) for name, table in tables.items()
               if table["label"].nunique() == 2}
    return {"model": model, "description": DESCRIPTION, "n_boot": n_boot, "seed": seed,
            "disagreement_threshold": DISAGREEMENT, "cohorts": cohorts}


def cohort_information(table: pd.DataFrame, modalities: list[str], truth: pd.DataFrame | None, seed: int,
                       n_boot: int) -> dict:
    labels = table["label"].to_numpy(int)
    evidence = torch.tensor(np.stack([table[[evidence_column(m, k) for k in HEAD_CLASSES]].to_numpy(float)
                                      for m in modalities], axis=1), dtype=torch.float64)
    toward = np.where(labels == 1, 1.0, -1.0)[:, None]
    phi = shapley_log_odds(evidence).numpy() * toward
    everything = torch.ones(evidence.shape[:2], dtype=torch.bool)
    scores = [fused_log_odds(evidence, everything).numpy(), *without_each(evidence).numpy().T]
    oracle = _oracle_llr(table, modalities, truth)
    signed = [phi] + ([oracle * toward] if oracle is not None else [])
    replicates = bootstrap_replicates(labels.astype(bool), _Statistic(labels, signed, scores), n_boot, seed)
    point = _Statistic(labels, signed, scores)(np.ones((1, len(labels)), dtype=np.int64))[0]
    views, aucs = len(modalities), len(scores)
    shapley = _class_means(point, replicates, 0, modalities)
    block = {
        "n": int(len(labels)), "n_positive": int(labels.sum()), "auc": float(point[-aucs]),
        "shapley": shapley,
        "auc_drop": {m: {"auc_without": float(point[-aucs + 1 + v]),
                         "drop": float(point[-aucs] - point[-aucs + 1 + v]),
                         "ci": _interval(replicates[:, -aucs] - replicates[:, -aucs + 1 + v])}
                     for v, m in enumerate(modalities)},
        "evidence_share": _evidence_shares(table, labels, modalities),
        "evidence_for_more_than_against": _evidence_for(evidence.numpy(), labels, modalities),
        "oracle": _class_means(point, replicates, 2 * views, modalities) if oracle is not None else None,
    }
    block["disagreements"] = _disagreements(block, modalities)
    return block


class _Statistic:
    """Per resample: each signed value's class means (class-major, modality-minor), then the AUC
    of each score. The stratified resample keeps each class's size, so a class mean is the
    count-weighted sum over that class divided by its size."""

    def __init__(self, labels: np.ndarray, signed: list[np.ndarray], scores: list[np.ndarray]) -> None:
        self.members = [labels == CLASSES[klass] for klass in CLASSES]
        self.signed = signed
        self.aucs = [AucFromCounts(labels.astype(bool), score.astype(np.float64)) for score in scores]

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        columns = []
        for values in self.signed:
            for members in self.members:
                weights = counts[:, members].astype(float)
                columns.append(weights @ values[members] / weights.sum(axis=1, keepdims=True))
        columns.append(np.column_stack([auc(counts) for auc in self.aucs]))
        return np.concatenate(columns, axis=1)


def _class_means(point: np.ndarray, replicates: np.ndarray, start: int, modalities: list[str]) -> dict:
    """``{class: {modality: {mean, ci, share, share_ci}}}`` from the columns from ``start`` on."""
    views, result = len(modalities), {}
    for index, klass in enumerate(CLASSES):
        first = start + index * views
        means, draws = point[first:first + views], replicates[:, first:first + views]
        shared = bool((means > 0).all())  # a share of a sum whose parts pull both ways means nothing
        same_sign = draws[(draws > 0).all(axis=1)]
        share_draws = same_sign / same_sign.sum(axis=1, keepdims=True)
        result[klass] = {m: {"mean": float(means[v]), "ci": _interval(draws[:, v]),
                             "share": float(means[v] / means.sum()) if shared else None,
                             "share_ci": _interval(share_draws[:, v]) if shared and len(share_draws) else None}
                         for v, m in enumerate(modalities)}
    return result


def _interval(draws: np.ndarray) -> list[float]:
    return list(percentile_interval(draws[np.isfinite(draws)], 0.95))


def _oracle_llr(table: pd.DataFrame, modalities: list[str], truth: pd.DataFrame | None) -> np.ndarray | None:
    """``(N, V)`` each modality's oracle log-likelihood ratio; the generator's prior is the cohort's
    prevalence, which is the table's (every synthetic participant is labelled)."""
    columns = [f"p_{m}" for m in modalities]
    if truth is None or not set(columns) <= set(truth):
        return None
    merged = table[["participant_id"]].merge(truth[["participant_id", *columns]], on="participant_id", how="left")
    if merged[columns].isna().any().any():
        return None
    probability = np.clip(merged[columns].to_numpy(float), 1e-12, 1 - 1e-12)
    return logit(probability) - logit(table["label"].mean())


def _evidence_shares(table: pd.DataFrame, labels: np.ndarray, modalities: list[str]) -> dict:
    """The paper's quantity, as ``contribution_details`` holds it (mean share for the true class)."""
    return {klass: {m: float(table.loc[labels == label, f"contribution_{m}"].mean()) for m in modalities}
            for klass, label in CLASSES.items()}


def _evidence_for(evidence: np.ndarray, labels: np.ndarray, modalities: list[str]) -> dict:
    """Per class and modality: the share of that class's participants with the modality whose head
    emits more evidence for their class than against it (None when nobody of the class has it)."""
    result = {}
    for klass, label in CLASSES.items():
        result[klass] = {}
        for view, modality in enumerate(modalities):
            rows = (labels == label) & (evidence[:, view].sum(axis=1) > 0)
            more = evidence[rows, view, label] > evidence[rows, view, 1 - label]
            result[klass][modality] = float(more.mean()) if rows.any() else None
    return result


def _disagreements(block: dict, modalities: list[str]) -> list[dict]:
    found = []
    for klass in CLASSES:
        for modality in modalities:
            evidence_share = block["evidence_share"][klass][modality]
            shapley = block["shapley"][klass][modality]
            pulls_away = shapley["share"] is None and shapley["mean"] < 0  # no share to compare: the sign says it
            if pulls_away or (shapley["share"] is not None and abs(evidence_share - shapley["share"]) > DISAGREEMENT):
                more = block["evidence_for_more_than_against"][klass][modality]
                found.append({"class": klass, "modality": modality, "evidence_share": evidence_share,
                              "shapley_share": shapley["share"], "shapley_mean": shapley["mean"],
                              "evidence_for_more_than_against": more})
    return found
