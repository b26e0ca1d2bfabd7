"""The device's borderline rule on the study's cohorts: how often a screening team would be told
"Borderline: repeat the scan", and how sensitive and specific the calls it acts on are.

The rule is the device's own function (:func:`sarco_core.screening.screen_call`), given what a
session gives it: the participant's probability and threshold, and the spread of the log-odds
of the participant's images one by one (the device's frames), with their number. A
participant's images are several muscles and video frames, as a session's frames are several
views; the image model's per-image outputs come from the same network the bundle exports.

Written into the image model's prediction tables (``logit_sd``, ``n_images``) so the summary
is recomputed from the files, as every other figure of the study.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from model_build.models.branch import ImageBranch
from model_build.stats import wilson_proportion
from sarco_core.readout import ProbabilityReadout
from sarco_core.screening import DEFAULT_RULE, BorderlineRule, screen_call

MODEL = "image"  # the model a device runs


def add_spread(table: pd.DataFrame, branch: ImageBranch, readout: str) -> pd.DataFrame:
    """``logit_sd`` (population SD of the per-image log-odds, as a result payload has it; NaN
    without images) and ``n_images``, for each participant of ``table``."""
    probability = ProbabilityReadout(readout).probability
    spread, count = [], []
    for outputs in branch.image_outputs(table["participant_id"].tolist()):
        p = np.clip(probability(outputs), 1e-9, 1 - 1e-9) if len(outputs) else np.zeros(0)
        spread.append(float(np.std(np.log(p / (1 - p)))) if len(p) else np.nan)
        count.append(len(p))
    return table.assign(logit_sd=spread, n_images=count)


def calls(table: pd.DataFrame, rule: BorderlineRule = DEFAULT_RULE) -> list[str]:
    """The device's call for each participant (never ``rescan``: the study has no gate)."""
    return [screen_call(float(p), float(t), enough_frames=True,
                        logit_sd=None if np.isnan(sd) else float(sd), usable_frames=int(n),
                        rule=rule).call
            for p, t, sd, n in zip(table["probability"], table["threshold"], table["logit_sd"],
                                   table["n_images"])]


def summary(tables: dict[str, pd.DataFrame], rule: BorderlineRule = DEFAULT_RULE) -> dict:
    """results.json's ``borderline``: per cohort the share of borderline calls, the
    sensitivity and specificity of the calls that are not borderline, and of all calls when
    every borderline participant is referred."""
    cohorts = {}
    for cohort, table in tables.items():
        call = np.array(calls(table, rule))
        case = table["label"].to_numpy(int) == 1
        border, positive, negative = (call == c for c in ("borderline", "positive", "negative"))
        counts = {"n": int(len(call)), "borderline": int(border.sum()),
                  "borderline_cases": int((border & case).sum()),
                  "tp": int((positive & case).sum()), "fn": int((negative & case).sum()),
                  "fp": int((positive & ~case).sum()), "tn": int((negative & ~case).sum())}
        cases, others = int(case.sum()), int((~case).sum())
        cohorts[cohort] = {
            **counts,
            "share": _share(counts["borderline"], counts["n"]),
            "sensitivity": _share(counts["tp"], counts["tp"] + counts["fn"]),
            "specificity": _share(counts["tn"], counts["tn"] + counts["fp"]),
            "sensitivity_referred": _share(counts["tp"] + counts["borderline_cases"], cases),
            "specificity_referred": _share(counts["tn"], others),
        }
    return {"model": MODEL, "rule": asdict(rule), "cohorts": cohorts,
            "description": "the device's call (sarco_core.screening) from each participant's "
                           "probability and the spread of its images' log-odds"}


def _share(successes: int, total: int) -> dict:
    """The share with its 95% Wilson interval (null for 0 of 0)."""
    share = wilson_proportion(successes, total)
    return {"estimate": share.estimate,
            "ci": None if share.estimate is None else [share.lower, share.upper]}
