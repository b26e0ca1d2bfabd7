"""Shared by several test modules (moved from test_study_report.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.special import expit

from model_build.cohort import Cohort, load_cohort
from model_build.stats import auc_ci, compare_auc, roc_auc, wilson_proportion, youden_threshold
from model_build.study import borderline, information
from model_build.study.report import write_report
from model_build.study.results import with_holm
from testkit.cohort_factory import SCHEMA, make_cohort, read_rows, write_csv

COHORTS = ("development", "external", "poc")


STRENGTH = {"image": 1.3, "clinical": 0.8, "lab": 0.5}  # how well each data type separates the classes


def study_cohort(root: Path, *, tabular: bool = True, poc_one_class: bool = False) -> Cohort:
    """60 participants: 40 development, 12 external, 8 proof of concept; two centers."""
    make_cohort(root, seed=3, n_participants=60, images=False, videos=False)
    rows = read_rows(root / "participants.csv")
    sexes = np.random.default_rng(4).permutation(["M", "F"] * 30)  # the factory ties sex to the label
    for index, row in enumerate(rows):
        row["cohort"] = "development" if index < 40 else "external" if index < 52 else "poc"
        row["sex"] = sexes[index]
        if poc_one_class and row["cohort"] == "poc":
            row["label"] = "1"  # an evaluation cohort whose AUC is undefined
    rows[5]["albumin"] = ""  # a development participant without one lab value
    write_csv(root / "participants.csv", rows)
    if not tabular:  # only the reference measurements are declared: no clinical or lab inputs
        schema = {**SCHEMA, "columns": {k: v for k, v in SCHEMA["columns"].items() if v["role"] == "reference"}}
        (root / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False), encoding="utf-8")
    return load_cohort(root)


def model_names(modalities: list[str]) -> list[str]:
    names = list(modalities)
    names += [f"image+{other}" for other in modalities[1:]] if len(modalities) > 2 else []
    return names + (["+".join(modalities)] if len(modalities) > 1 else [])


def metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    decision = p >= threshold
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    auc = roc_auc(y, p) if min(positives, negatives) >= 1 else None
    ci = None
    if min(positives, negatives) >= 2:
        interval = auc_ci(y, p)
        ci = [interval.lower, interval.upper]
    tp, tn = int((decision & (y == 1)).sum()), int((~decision & (y == 0)).sum())
    fp, fn = negatives - tn, positives - tp
    def wilson(k: int, n: int) -> list[float] | None:
        share = wilson_proportion(k, n)
        return None if share.lower is None else [share.lower, share.upper]

    return {"n": len(y), "n_positive": positives, "auc": auc, "auc_ci": ci,
            "sensitivity": tp / positives if positives else None, "specificity": tn / negatives if negatives else None,
            "sensitivity_ci": wilson(tp, positives), "specificity_ci": wilson(tn, negatives),
            "accuracy": (tp + tn) / len(y), "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None}


def bootstrap_share(rng: np.random.Generator, shares: np.ndarray) -> dict:
    means = rng.choice(shares, size=(500, shares.size)).mean(axis=1)
    return {"mean": float(shares.mean()), "ci": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]}


def build_run(run: Path, cohort: Cohort, *, seed: int = 0, int8: bool = True) -> dict:
    """Write predictions/<model>/<cohort>.csv and results.json following the contract exactly."""
    rng = np.random.default_rng(seed)
    participants = cohort.participants.reset_index(drop=True)
    inputs = [r for r in ("clinical", "lab") if cohort.schema.columns_with_role(r)]
    modalities = ["image", *inputs]
    names = model_names(modalities)
    y_all = participants["label"].to_numpy(dtype=int)
    latent = {m: STRENGTH[m] * y_all + rng.normal(size=len(y_all)) for m in modalities}
    tabular = [c for r in inputs for c in cohort.schema.columns_with_role(r)]
    complete = participants[tabular].notna().all(axis=1).to_numpy() if tabular else np.ones(len(y_all), bool)
    probability = {name: expit(sum(latent[m] for m in name.split("+")) + rng.normal(0, 0.3, len(y_all)))
                   for name in names}
    development = (participants["cohort"] == "development").to_numpy()
    thresholds = {name: youden_threshold(y_all[development], probability[name][development]).value for name in names}
    models: dict = {name: {"modalities": name.split("+"), "bundle": f"bundles/{name}",
                           "operating_point": operating_point(thresholds[name])} for name in names}
    details: dict = {}
    oracle = {}
    fused_frames: dict[str, pd.DataFrame] = {}
    spread_rng, spread = np.random.default_rng([seed, 18]), {}
    for cohort_name in COHORTS:
        rows = (participants["cohort"] == cohort_name).to_numpy()
        y = y_all[rows]
        both = len(np.unique(y)) == 2
        oracle[cohort_name] = {**{m: roc_auc(y, latent[m][rows]) if both else None for m in modalities},
                               "all": roc_auc(y, sum(latent[m][rows] for m in modalities)) if both else None}
        for name in names:
            p, threshold = probability[name][rows], thresholds[name]
            frame = pd.DataFrame({
                "participant_id": participants["participant_id"][rows], "cohort": cohort_name,
                "center": participants["center"][rows], "label": y, "probability": p, "threshold": threshold,
                "decision": (p >= threshold).astype(int), "uncertainty": rng.uniform(0, 0.5, rows.sum()),
                "fold": rng.integers(0, 5, rows.sum()) if cohort_name == "development" else np.nan,
                "complete_case": complete[rows]})
            parts = name.split("+")
            if len(parts) > 1:
                shares = rng.dirichlet([4.0 if m == "image" else 1.5 for m in parts], size=rows.sum())
                for index, m in enumerate(parts):
                    frame[f"contribution_{m}"] = shares[:, index]
                    for klass, sign in (("non_sarcopenia", -1), ("sarcopenia", 1)):  # each head's evidence
                        frame[f"evidence_{m}_{klass}"] = np.exp(sign * latent[m][rows] / 2)
                if len(parts) == len(modalities):
                    fused_frames[cohort_name] = frame
            for m in parts:
                frame[f"probability_{m}"] = expit(latent[m][rows])
            if name == borderline.MODEL:  # the per-image spread the runner adds (its own draws)
                frame["logit_sd"] = spread_rng.uniform(0.1, 1.5, rows.sum())
                frame["n_images"] = spread_rng.integers(1, 4, rows.sum())
                spread[cohort_name] = frame
            path = run / "predictions" / name / f"{cohort_name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)
            centers = frame["center"].to_numpy()
            entry = {**metrics(y, p, threshold), "threshold": threshold,
                     "oracle_auc": oracle[cohort_name]["all"] if len(parts) == len(modalities) else
                     oracle[cohort_name][name] if len(parts) == 1 else None,
                     "by_center": {center: metrics(y[centers == center], p[centers == center], threshold)
                                   for center in sorted(set(centers))}}
            one_class = {**{k: entry[k] for k in ("n", "n_positive", "auc", "auc_ci")},
                         "note": "one class only: no AUC"}  # the runner's shape for such a cohort
            models[name][cohort_name] = entry if both else one_class
            if len(parts) == len(modalities) > 1:
                details[cohort_name] = {m: {klass: bootstrap_share(rng, frame.loc[y == label, f"contribution_{m}"]
                                                                   .to_numpy())
                                            for klass, label in (("sarcopenia", 1), ("non_sarcopenia", 0))}
                                        for m in parts}
    fused = names[-1]

    def compare(a: str, b: str, cohort_name: str, why: str, rows: np.ndarray | None = None) -> dict:
        rows = (participants["cohort"] == cohort_name).to_numpy() & (True if rows is None else rows)
        test = compare_auc(y_all[rows], probability[a][rows], probability[b][rows])
        return {"a": a, "b": b, "cohort": cohort_name, "auc_a": test.auc_a, "auc_b": test.auc_b,
                "difference": test.difference, "difference_ci": [test.lower, test.upper], "p": test.p,
                "method": "paired DeLong", "why": why}

    comparisons = [compare(fused, other, c, "multimodal vs other") for c in COHORTS for other in names[:-1]] \
        if len(names) > 1 else []
    comparisons += [compare(a, b, "development", "monomodal pair")
                    for i, a in enumerate(modalities) for b in modalities[i + 1:]]
    with_holm(comparisons)
    best = max(names, key=lambda name: models[name]["development"]["auc"])
    candidates = []
    for name in names:
        versus = None if name == best else compare(name, best, "development", "selection: vs best")
        p_vs_best = None if versus is None else versus["p"]
        candidates.append({"model": name, "n_modalities": len(name.split("+")),
                           "auc": models[name]["development"]["auc"], "p_vs_best": p_vs_best,
                           "difference_ci": None if versus is None else versus["difference_ci"],
                           "eligible": p_vs_best is None or p_vs_best >= ALPHA})
    selected = min((c for c in candidates if c["eligible"]), key=lambda c: (c["n_modalities"], -c["auc"]))["model"]
    results = {
        "schema_version": 1, "created": "2026-11-27T10:00:00+00:00",
        "cohort": {"path": str(cohort.root), "data_hash": "ab" * 32},
        "options": {"seed": seed, "folds": 5, "quick": False, "fusion": "evidential", "alpha": ALPHA,
                    "image": {"epochs": 3, "backbone": "efficientnet_lite0"}, "tabular": {"hidden": 32}},
        "cohorts": list(COHORTS),
        "evaluation": {"development": "5-fold cross-validation, out-of-fold",
                       "external": "refit on development, frozen", "poc": "refit on development, frozen"},
        "models": models, "comparisons": comparisons,
        "contributions": {klass: {m: details["development"][m][klass]["mean"] for m in modalities}
                          for klass in ("sarcopenia", "non_sarcopenia")} if details else {},
        "selection": {"rule": "fewest data types whose AUC is not significantly lower than the best "
                              f"(paired DeLong, alpha {ALPHA}) on development",
                      "cohort": "development", "alpha": ALPHA, "best": best, "candidates": candidates,
                      "selected": selected, "reason": f"{selected} is the simplest model not significantly worse "
                                                      f"than {best}."},
        "selected_model": selected,
        "oracle": oracle,
        "timings": {"total_seconds": 12.5, "stages": {"cross_validation": 10.0, "refit": 2.5}},
    }
    results["borderline"] = borderline.summary(spread)
    if fused_frames:  # the oracle's split from each data type's latent, as truth.csv would give it
        truth = pd.DataFrame({"participant_id": participants["participant_id"],
                              **{f"p_{m}": expit(latent[m]) for m in modalities}})
        results["information"] = information.summary(fused_frames, names[-1], modalities, truth, seed, n_boot=200)
    if details:
        results["contribution_details"] = details
    if len(names) > 1:
        results["sensitivity_analysis"] = {"complete_cases": {
            "description": "participants with every clinical and lab value present",
            "n": {c: int(((participants["cohort"] == c).to_numpy() & complete).sum()) for c in COHORTS},
            "models": {name: {c: {k: v for k, v in metrics(
                y_all[(participants["cohort"] == c).to_numpy() & complete],
                probability[name][(participants["cohort"] == c).to_numpy() & complete], 0.5).items()
                if k in ("n", "n_positive", "auc", "auc_ci")} for c in COHORTS} for name in names},
            "comparisons": with_holm([compare(fused, "image", "development", "multimodal vs other", complete)])}}
    if int8:
        rows = development
        float_p = probability["image"][rows]
        int8_p = np.clip(float_p + rng.normal(0, 0.01, rows.sum()), 0, 1)
        test = compare_auc(y_all[rows], float_p, int8_p)
        results["int8"] = {"accepted": True, "bundle": "bundles/image-int8", "method": "entropy", "target": "tensorrt",
                           "limits": {"max_auc_drop": 0.005, "max_flip_rate": 0.02},
                           "cohorts": {"development_holdout": {
                               "n": int(rows.sum()), "auc_float": test.auc_a, "auc_int8": test.auc_b, "p": test.p,
                               "flip_rate": float(np.mean((float_p >= thresholds["image"])
                                                          != (int8_p >= thresholds["image"])))}},
                           "report": "int8/verify.html"}
    else:
        results["int8"] = None
        results["int8_skipped"] = "no GPU with TensorRT on this workstation"
    (run / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


def operating_point(threshold: float) -> dict:
    """A model's threshold record as the runner writes it (identity calibration: raw = calibrated)."""
    identity = {"intercept": 0.0, "slope": 1.0, "note": None}
    return {"rule": "youden", "target": None, "chosen_on": "pooled out-of-fold development predictions",
            "threshold": threshold, "threshold_ci": [max(0.0, threshold - 0.1), min(1.0, threshold + 0.1)],
            "n_boot": 1000, "development_sensitivity": None, "development_specificity": None,
            "calibration": {"method": "platt", "folds": [{"fold": k, **identity} for k in range(5)],
                            "refit": identity},
            "fold_thresholds": [threshold] * 5, "refit_threshold": threshold, "note": None}


def quick_copy(run: Path, target: Path, cohort: Cohort) -> Path:
    """The same run folder marked as a --quick run, its report written again."""
    shutil.copytree(run, target)
    results = json.loads((target / "results.json").read_text(encoding="utf-8"))
    results["options"]["quick"] = True
    (target / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return write_report(target, cohort)


ALPHA = 0.05
