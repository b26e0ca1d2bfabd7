"""The study's decision threshold, chosen once on the pooled, calibrated out-of-fold development
predictions and transferred to each fold model and to the refit (docs/study.md, "Thresholds").

Why not each model's own inner split: with ~70 participants Youden's J jumps between plateaus
(fold thresholds 0.22-0.61 in one run), and the refit's threshold then decides every external
call. Here each fold's predictions are first Platt-scaled on that fold (fold models have their own
score scales, :mod:`model_build.stats.platt`), pooled, and the rule picks one cut ``t`` on that
common scale, with a stratified bootstrap interval. A fold model calls a participant positive when
its raw probability is at least the fold calibration's inverse of ``t``; the refit, whose scale
no held-out data shows, gets the inverse under the Platt fit on all out-of-fold predictions (the
scheme of scikit-learn's ``CalibratedClassifierCV(ensemble=False)``). Decisions are unchanged by
the bookkeeping: raw >= inverse(t) exactly when calibrated >= t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from model_build.stats import PlattScaling, StatsInputError, select_threshold, threshold_interval
from model_build.stats.platt import IDENTITY

N_BOOT = 1000
CHOSEN_ON = "pooled out-of-fold development predictions, Platt-scaled per fold"


def calibration(labels: np.ndarray, probability: np.ndarray) -> tuple[PlattScaling, dict]:
    """Platt fit and its record; identity (recorded with the reason) when no increasing fit exists,
    e.g. a small fold whose scores rank the classes backwards."""
    try:
        fit = PlattScaling.fit(labels, probability)
        return fit, {**fit.to_dict(), "note": None}
    except StatsInputError as error:
        return IDENTITY, {**IDENTITY.to_dict(), "note": f"identity: {error}"}


def choose_operating_point(development: pd.DataFrame, rule: str, target: float | None, seed: int) -> dict:
    """results.json's ``operating_point`` of one model, from its out-of-fold prediction table
    (columns label, probability, fold)."""
    labels = development["label"].to_numpy(int)
    raw = development["probability"].to_numpy(float)
    folds = development["fold"].to_numpy(int)
    calibrated = np.empty_like(raw)
    fold_fits, fold_records = {}, []
    for fold in np.unique(folds):
        inside = folds == fold
        fold_fits[int(fold)], record = calibration(labels[inside], raw[inside])
        fold_records.append({"fold": int(fold), **record})
        calibrated[inside] = fold_fits[int(fold)].apply(raw[inside])
    note = None
    try:
        chosen = select_threshold(labels, calibrated, rule, target)
        if not np.isfinite(chosen.value):
            raise StatsInputError("it calls everyone or nobody")
        value, sensitivity, specificity = chosen.value, chosen.development_sensitivity, chosen.development_specificity
        # a resample's infinite cut (everyone or nobody called) is 0 or 1 on the probability scale
        interval = np.clip(threshold_interval(labels, calibrated, rule, target, n_boot=N_BOOT, seed=seed), 0, 1)
        interval = [float(bound) for bound in interval]
    except StatsInputError as error:
        value, sensitivity, specificity, interval = 0.5, None, None, None
        note = f"the rule found no cut ({error}); calibrated probability 0.5 instead"
    refit_fit, refit_record = calibration(labels, raw)
    return {"rule": rule, "target": target, "chosen_on": CHOSEN_ON, "threshold": value, "threshold_ci": interval,
            "n_boot": N_BOOT, "development_sensitivity": sensitivity, "development_specificity": specificity,
            "calibration": {"method": "platt", "folds": fold_records, "refit": refit_record},
            "fold_thresholds": [fold_fits[f["fold"]].invert(value) for f in fold_records],
            "refit_threshold": refit_fit.invert(value), "note": note}


def apply_to_development(development: pd.DataFrame, operating: dict) -> pd.DataFrame:
    """The table with each row's threshold (its fold model's raw cut) and decision."""
    table = development.copy()
    raw_cut = {record["fold"]: cut for record, cut in zip(operating["calibration"]["folds"],
                                                          operating["fold_thresholds"])}
    table["threshold"] = table["fold"].astype(int).map(raw_cut)
    table["decision"] = (table["probability"] >= table["threshold"]).astype(int)
    return table
