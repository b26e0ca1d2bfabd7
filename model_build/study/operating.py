"""The decisions at the threshold frozen on development: the 2x2 table of each model on each
cohort and the shares a clinician reads from it, each with its 95% Wilson interval.

Counted from the ``decision`` column of the predictions, the same column results.json's
sensitivity and specificity come from, so the two agree. On development each participant is
called at the threshold of the fold model that scored them; elsewhere at the refit's threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from model_build.study.formatting import MISSING, format_estimate, format_number, format_proportion
from model_build.study.inputs import labelled

Predictions = dict[tuple[str, str], pd.DataFrame]


@dataclass(frozen=True)
class Counts:
    """Screen result against the label: true/false positives and negatives."""

    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Counts:
        rows = labelled(frame)
        case, called = rows["label"].astype(int) == 1, rows["decision"].astype(int) == 1
        return cls(tp=int((case & called).sum()), fp=int((~case & called).sum()),
                   fn=int((case & ~called).sum()), tn=int((~case & ~called).sum()))

    def sensitivity_specificity(self) -> list[str]:
        """With Wilson CIs; n/a for a class nobody belongs to."""
        return [format_proportion(self.tp, self.tp + self.fn), format_proportion(self.tn, self.tn + self.fp)]

    def predictive_values(self) -> list[str]:
        """PPV and NPV with Wilson CIs; n/a when nobody was called positive (or negative)."""
        return [format_proportion(self.tp, self.tp + self.fp), format_proportion(self.tn, self.tn + self.fn)]


SHARE_HEADER = ["Sensitivity (95% CI)", "Specificity (95% CI)"]
PREDICTIVE_HEADER = ["PPV (95% CI)", "NPV (95% CI)"]


def operating_point_table(results: dict, predictions: Predictions) -> pd.DataFrame:
    """One row per cohort and model: the 2x2 counts, sensitivity, specificity, PPV and NPV."""
    rows = []
    for cohort in results["cohorts"]:
        for model in results["models"]:
            counts = Counts.of(predictions[model, cohort])
            rows.append([model, cohort, str(counts.tp), str(counts.fp), str(counts.fn), str(counts.tn),
                         *counts.sensitivity_specificity(), *counts.predictive_values()])
    return pd.DataFrame(rows, columns=["Model", "Cohort", "TP", "FP", "FN", "TN", *SHARE_HEADER, *PREDICTIVE_HEADER])


def two_by_two_table(results: dict, predictions: Predictions) -> pd.DataFrame:
    """The selected model's 2x2 table per cohort, as a clinician draws it (screen result by label)."""
    model = results["selected_model"]
    rows = []
    for cohort in results["cohorts"]:
        frame = predictions[model, cohort]
        counts = Counts.of(frame)
        threshold = format_number(float(frame["threshold"].median()))  # development: the folds' median
        rows += [[cohort, f"positive (≥ {threshold})", counts.tp, counts.fp, counts.tp + counts.fp],
                 [cohort, f"negative (< {threshold})", counts.fn, counts.tn, counts.fn + counts.tn],
                 [cohort, "total", counts.tp + counts.fn, counts.fp + counts.tn,
                  counts.tp + counts.fp + counts.fn + counts.tn]]
    frame = pd.DataFrame(rows, columns=["Cohort", "Screen result", "Sarcopenia", "No sarcopenia", "Total"])
    return frame.astype({column: str for column in ("Sarcopenia", "No sarcopenia", "Total")})


RULE_NAMES = {"youden": "Youden's J", "sensitivity": "sensitivity at least {target}",
              "specificity": "specificity at least {target}", "cost": "least cost, a missed case = {target} false alarms"}


def threshold_table(results: dict) -> pd.DataFrame:
    """How each model's threshold was chosen (results.json ``operating_point``): the rule, the cut on
    the calibrated scale with its bootstrap CI, and the raw cuts it becomes for the refit (the
    bundle's) and the fold models."""
    rows = []
    for model, entry in results["models"].items():
        point = entry["operating_point"]
        folds = point["fold_thresholds"]
        rows.append([model, RULE_NAMES[point["rule"]].format(target=point["target"]),
                     format_estimate(point["threshold"], point["threshold_ci"]),
                     format_number(point["refit_threshold"]),
                     f"{format_number(min(folds))} to {format_number(max(folds))}" if folds else MISSING,
                     point.get("note") or ""])
    return pd.DataFrame(rows, columns=["Model", "Rule", "Calibrated threshold (95% bootstrap CI)",
                                       "Refit (bundle) threshold", "Fold models' thresholds", "Note"])
