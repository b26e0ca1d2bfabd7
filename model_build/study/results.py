"""The study's numbers from its prediction tables: metrics, DeLong comparisons, contributions,
the complete-case sensitivity analysis and the oracle.

Development comparisons are fold-stratified (:func:`model_build.stats.compare_auc_stratified`):
out-of-fold scores of different fold models are never ranked against each other. Each cohort's
comparisons are one family for Holm's adjustment (``p_holm`` beside the raw ``p``).

Every figure is computed from ``predictions/<model>/<cohort>.csv`` as written, so a reader can
recompute any number of the report from the files beside it.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from model_build.models.report import classification_metrics, contribution_summary
from model_build.stats import (StatsInputError, auc_ci, compare_auc, compare_auc_stratified, holm_adjust, roc_auc,
                               wilson_proportion)
from model_build.study import information
from model_build.study.design import modalities_of

ORACLE_COLUMNS = {"image": "p_image", "clinical": "p_clinical", "lab": "p_lab", "all": "p_all"}


def auc_of(table: pd.DataFrame) -> float:
    return roc_auc(table["label"].to_numpy(int), table["probability"].to_numpy(float))


def metrics_of(table: pd.DataFrame) -> dict:
    """``metrics.json``'s keys for one model on one cohort. Decisions use each row's threshold
    (cross-validation: its fold model's; other cohorts: the refit model's, frozen); the reported
    ``threshold`` is their median, with the per-fold values where they differ."""
    labels = table["label"].to_numpy(int)
    probability = table["probability"].to_numpy(float)
    thresholds = table["threshold"].to_numpy(float)
    metrics = classification_metrics(labels, probability, float(np.median(thresholds)))
    decision = table["decision"].to_numpy(int)
    tp, fp = int(((decision == 1) & (labels == 1)).sum()), int(((decision == 1) & (labels == 0)).sum())
    fn, tn = int(((decision == 0) & (labels == 1)).sum()), int(((decision == 0) & (labels == 0)).sum())
    metrics.update({"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
                    "sensitivity_ci": _wilson(tp, tp + fn), "specificity_ci": _wilson(tn, tn + fp),
                    "accuracy": (tp + tn) / len(labels), "f1": _ratio(2 * tp, 2 * tp + fp + fn)})
    if "fold" in table and len(np.unique(thresholds)) > 1:
        metrics["threshold_by_fold"] = [float(v) for v in table.groupby("fold")["threshold"].first()]
    return metrics


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _wilson(successes: int, total: int) -> list[float] | None:
    """95% Wilson interval of a proportion, None for 0 of 0."""
    share = wilson_proportion(successes, total)
    return None if share.lower is None else [share.lower, share.upper]


def _auc_with_ci(table: pd.DataFrame) -> dict:
    labels = table["label"].to_numpy(int)
    if len(np.unique(labels)) < 2:
        return {"n": int(len(labels)), "n_positive": int(labels.sum()), "auc": None, "auc_ci": None}
    try:
        interval = auc_ci(labels, table["probability"].to_numpy(float))
        auc, ci = interval.auc, [interval.lower, interval.upper]
    except StatsInputError:
        auc, ci = auc_of(table), None
    return {"n": int(len(labels)), "n_positive": int(labels.sum()), "auc": auc, "auc_ci": ci}


def cohort_metrics(table: pd.DataFrame) -> dict:
    """:func:`metrics_of`, or for a cohort with one class only its size and a ``note`` (no AUC)."""
    if table["label"].nunique() < 2:
        return {**_auc_with_ci(table), "note": "one class only: no AUC"}
    return metrics_of(table)


def by_center(table: pd.DataFrame) -> dict:
    result = {}
    for center, rows in table.groupby("center", sort=True):
        if rows["label"].nunique() < 2:
            result[str(center)] = {**_auc_with_ci(rows), "note": "one class only: no AUC"}
            continue
        full = metrics_of(rows)
        result[str(center)] = {k: full[k] for k in ("n", "n_positive", "auc", "auc_ci", "sensitivity",
                                                   "sensitivity_ci", "specificity", "specificity_ci", "accuracy",
                                                   "f1")}
    return result


def read_truth(cohort: Path) -> pd.DataFrame | None:
    path = cohort / "truth.csv"
    return pd.read_csv(path, dtype={"participant_id": str}) if path.is_file() else None


def oracle_key(model: str) -> str | None:
    modalities = modalities_of(model)
    if len(modalities) == 1:
        return modalities[0]
    return "all" if len(modalities) == 3 else None


def oracle_auc(truth: pd.DataFrame | None, table: pd.DataFrame, key: str | None) -> float | None:
    if truth is None or key is None or ORACLE_COLUMNS[key] not in truth:
        return None
    merged = table[["participant_id", "label"]].merge(truth, on="participant_id", how="inner")
    if len(merged) != len(table) or merged["label"].nunique() < 2:
        return None
    return roc_auc(merged["label"].to_numpy(int), merged[ORACLE_COLUMNS[key]].to_numpy(float))


def oracle_by_cohort(truth: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> dict:
    return {cohort: {key: oracle_auc(truth, table, key) for key in ORACLE_COLUMNS}
            for cohort, table in tables.items()}


def compare(tables: dict[str, pd.DataFrame], a: str, b: str, cohort: str, why: str) -> dict | None:
    """Paired DeLong test of models a and b on the participants both predicted: fold-stratified
    where the rows carry their fold (development), with the pooled test's P beside it; pooled when
    a fold has fewer than 2 of a class (DeLong's variance needs 2)."""
    left, right = tables[a], tables[b]
    columns = ["participant_id", "label", "probability"] + (["fold"] if "fold" in left else [])
    merged = left[columns].merge(right[["participant_id", "probability"]], on="participant_id", suffixes=("_a", "_b"))
    labels = merged["label"].to_numpy(int)
    scores = merged["probability_a"].to_numpy(float), merged["probability_b"].to_numpy(float)
    try:
        pooled = compare_auc(labels, *scores)
    except StatsInputError:
        return None
    result, method, extra = pooled, "paired DeLong", {}
    if "fold" in merged:
        try:
            result = compare_auc_stratified(labels, *scores, merged["fold"].to_numpy(int))
            method, extra = "fold-stratified paired DeLong (pair weights)", {"p_pooled": pooled.p}
        except StatsInputError:
            method = "paired DeLong, pooled folds (a fold has fewer than 2 of a class)"
    return {"a": a, "b": b, "cohort": cohort, "n": int(len(merged)), "auc_a": result.auc_a, "auc_b": result.auc_b,
            "difference": result.difference, "difference_ci": [result.lower, result.upper], "p": result.p,
            "method": method, **extra, "why": why}


def with_holm(comparisons: list[dict]) -> list[dict]:
    """``p_holm`` on each comparison, each cohort's comparisons one family."""
    for cohort in dict.fromkeys(c["cohort"] for c in comparisons):
        family = [c for c in comparisons if c["cohort"] == cohort]
        for entry, adjusted in zip(family, holm_adjust([c["p"] for c in family])):
            entry["p_holm"] = float(adjusted)
    return comparisons


def versus(comparisons: list[dict], best: str) -> dict[str, dict]:
    """Each model's development comparison with ``best``, as the selection reads it: P and the CI
    of this model's AUC minus the best's."""
    found = {}
    for c in comparisons:
        if c["cohort"] == "development" and best in (c["a"], c["b"]):
            lower, upper = c["difference_ci"]
            other, ci = (c["a"], [lower, upper]) if c["b"] == best else (c["b"], [-upper, -lower])
            found[other] = {"p": c["p"], "difference_ci": ci}
    return found


def comparison_plan(models: list[str]) -> list[tuple[str, str, str]]:
    """(a, b, why): the multimodal model against each other model, and the monomodal pairs
    (:func:`comparisons_for` adds each remaining model against the best one, for the selection)."""
    largest = max(models, key=lambda name: len(modalities_of(name)))
    plan = [(largest, other, "multimodal vs other") for other in models if other != largest]
    monomodal = [name for name in models if len(modalities_of(name)) == 1]
    plan += [(a, b, "monomodal pair") for a, b in combinations(monomodal, 2)]
    return plan


def comparisons_for(predictions: dict[str, dict[str, pd.DataFrame]], models: list[str], cohorts: list[str],
                    only: str | None = None) -> list[dict]:
    plan = comparison_plan(models)
    done = {(a, b) for a, b, _ in plan} | {(b, a) for a, b, _ in plan}
    results = []
    for cohort in cohorts:
        tables = {name: _rows(predictions[name][cohort], only) for name in models}
        aucs = {name: auc_of(table) for name, table in tables.items() if table["label"].nunique() == 2}
        steps = list(plan)
        if cohort == "development" and aucs:
            best = max(aucs, key=lambda name: aucs[name])
            steps += [(best, other, "selection: vs best") for other in models
                      if other != best and (best, other) not in done]
        for a, b, why in steps:
            found = compare(tables, a, b, cohort, why)
            if found is not None:
                results.append(found)
    return with_holm(results)


def _rows(table: pd.DataFrame, only: str | None) -> pd.DataFrame:
    """All rows, or those where the boolean column ``only`` (e.g. complete_case) is true."""
    return table if only is None else table[table[only]]


def contributions(predictions: dict[str, dict[str, pd.DataFrame]], models: list[str], seed: int,
                  truth: pd.DataFrame | None = None) -> dict:
    """Evidence shares of the multimodal model: per cohort with CIs, and the development means
    (the study's "contribution" of each data type to each class); beside them, what each data
    type adds to the fused log-odds and to the AUC (:mod:`model_build.study.information`)."""
    largest = max(models, key=lambda name: len(modalities_of(name)))
    modalities = modalities_of(largest)
    if len(modalities) < 2 or f"contribution_{modalities[0]}" not in predictions[largest]["development"]:
        return {}
    details = {}
    for cohort, table in predictions[largest].items():
        summary = contribution_summary(table, modalities, seed)
        if summary:
            details[cohort] = summary
    development = details.get("development", {})
    headline = {klass: {m: development[m][klass]["mean"] for m in modalities if klass in development.get(m, {})}
                for klass in ("sarcopenia", "non_sarcopenia")}
    found = {"contributions": headline, "contribution_details": details, "contributions_model": largest}
    if information.has_evidence(predictions[largest]["development"], modalities):
        found["information"] = information.summary(predictions[largest], largest, modalities, truth, seed)
    return found


def summarise(predictions: dict[str, dict[str, pd.DataFrame]], models: list[str], cohorts: list[str],
              truth: pd.DataFrame | None, seed: int) -> dict:
    """``models``, ``comparisons``, ``contributions``, ``contribution_details``, ``information``
    and ``sensitivity_analysis`` of results.json."""
    summary: dict = {"models": {}}
    for name in models:
        entry: dict = {"modalities": modalities_of(name)}
        for cohort in cohorts:
            table = predictions[name][cohort]
            entry[cohort] = cohort_metrics(table)
            if "note" not in entry[cohort]:
                entry[cohort].update(oracle_auc=oracle_auc(truth, table, oracle_key(name)), by_center=by_center(table))
        summary["models"][name] = entry
    summary["comparisons"] = comparisons_for(predictions, models, cohorts)
    summary.update(contributions(predictions, models, seed, truth))
    summary["sensitivity_analysis"] = {"complete_cases": complete_cases(predictions, models, cohorts)}
    return summary


def complete_cases(predictions: dict[str, dict[str, pd.DataFrame]], models: list[str], cohorts: list[str]) -> dict:
    """The same AUCs and comparisons on participants with every clinical and lab value present:
    imputation cannot be what makes a model look good or bad."""
    only = "complete_case"
    reference = predictions[models[0]]
    counts = {cohort: int(reference[cohort]["complete_case"].sum()) for cohort in cohorts}
    table = {name: {cohort: _auc_with_ci(_rows(predictions[name][cohort], only)) for cohort in cohorts}
             for name in models}
    usable = [c for c in cohorts if counts[c] > 0 and _rows(reference[c], only)["label"].nunique() == 2]
    return {"description": "participants with every clinical and lab value present", "n": counts,
            "models": table, "comparisons": comparisons_for(predictions, models, usable, only)}
