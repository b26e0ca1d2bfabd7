"""The report's tables, as formatted DataFrames: what the page shows is what the CSV holds.

Cells are text (``0.827 (0.781 to 0.873)``, ``12 (40.0%)``) so a table can be pasted into a
manuscript as it is; the raw numbers stay in results.json. Proportions that estimate a rate carry
95% Wilson intervals (``75.0% (40.9 to 92.9)``). Each builder returns None when its
table does not apply to the run (no fused model, INT8 not run, no synthetic oracle...).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from model_build.cohort import Cohort
from model_build.stats import (
    StatsInputError,
    auc_ci,
    brier_score,
    calibration_intercept_slope,
    roc_auc,
)
from model_build.study.formatting import (
    CLASS_NAMES,
    MISSING,
    format_count,
    format_estimate,
    format_interval,
    format_number,
    format_p,
    format_percent,
    format_proportion,
)
from model_build.study.inputs import CLASSES, DEVELOPMENT, complete_cases, focus_models, labelled
from model_build.study.information_report import auc_drop_table, information_table
from model_build.study.measurement_report import measurements_table, recovery_table
from model_build.study.operating import (SHARE_HEADER, Counts, Predictions, operating_point_table, threshold_table,
                                        two_by_two_table)

ROLE_NAMES = {"clinical": "clinical input", "lab": "lab input", "reference": "reference (not an input)"}
FIRST_VARIABLES = ("age", "sex", "bmi")  # the usual opening lines of a "Table 1"


# --- cohort characteristics -------------------------------------------------------------------

def cohort_characteristics(cohort: Cohort, cohorts: list[str] | None = None) -> pd.DataFrame:
    """Table 1: one row per characteristic, one column per cohort, class and center.

    Clinical and lab columns (the model inputs) and reference columns (the measurements that
    define the label, never inputs) come from schema.yaml roles; ``other`` columns are left out.
    Numbers read ``mean ± SD``, binary and categorical values ``n (%)`` of those with a value;
    a ``missing`` row follows any characteristic with gaps.
    """
    participants = cohort.participants
    groups = _groups(participants, cohorts)
    rows: list[list[str]] = [["Participants, n", "", *(str(int(mask.sum())) for _, mask in groups)]]
    label = participants["label"]
    rows.append(["Sarcopenia, n (%)", "outcome", *(format_count(int((label[m] == 1).sum()), int(label[m].notna().sum()))
                                                    for _, m in groups)])
    if label.isna().any():
        rows.append(["Label unknown, n", "outcome", *(str(int(label[m].isna().sum())) for _, m in groups)])
    if "center" in participants:
        rows.append(["Centers", "", *(", ".join(sorted(participants.loc[m, "center"].dropna().unique())) or MISSING
                                     for _, m in groups)])
    for name, role, kind, unit, levels in _variables(cohort):
        values = participants[name]
        label_text = f"{name} ({unit})" if unit else name
        if kind in ("numeric", "integer"):
            numbers = pd.to_numeric(values, errors="coerce")
            rows.append([f"{label_text}, mean ± SD", role, *(_mean_sd(numbers[m]) for _, m in groups)])
        elif kind == "binary":
            numbers = pd.to_numeric(values, errors="coerce")
            rows.append([f"{label_text} = 1, n (%)", role, *(_share(numbers[m], 1) for _, m in groups)])
        else:
            text = values.astype("string")
            for level in levels or sorted(text.dropna().unique()):
                rows.append([f"{label_text}: {level}, n (%)", role, *(_share(text[m], level) for _, m in groups)])
        if values.isna().any():
            rows.append([f"{label_text} missing, n (%)", role,
                         *(format_count(int(values[m].isna().sum()), int(m.sum())) for _, m in groups)])
    return pd.DataFrame(rows, columns=["Characteristic", "Role", *(title for title, _ in groups)])


def _groups(participants: pd.DataFrame, order: list[str] | None) -> list[tuple[str, pd.Series]]:
    """(column title, row mask): each cohort whole, by class, then by center when it has several."""
    present = list(dict.fromkeys(participants["cohort"]))
    order = [name for name in order or [] if name in present]
    names = sorted(order + [name for name in present if name not in order], key=lambda name: name != DEVELOPMENT)
    groups = []
    for name in names:
        in_cohort = participants["cohort"] == name
        groups += [(name, in_cohort),
                   (f"{name}: sarcopenia", in_cohort & (participants["label"] == 1).fillna(False)),
                   (f"{name}: no sarcopenia", in_cohort & (participants["label"] == 0).fillna(False))]
        if "center" in participants:
            centers = sorted(participants.loc[in_cohort, "center"].dropna().unique())
            if len(centers) > 1:
                groups += [(f"{name}: center {center}", in_cohort & (participants["center"] == center).fillna(False))
                           for center in centers]
    return groups


def _variables(cohort: Cohort) -> list[tuple[str, str, str, str | None, tuple[str, ...] | None]]:
    """(column, role shown, type, unit, levels) in Table 1 order: age, sex, BMI, clinical, lab, reference."""
    schema, columns = cohort.schema, cohort.participants.columns
    found = []
    for name in FIRST_VARIABLES:
        spec = schema.columns.get(name)
        if spec is not None and spec.role in ROLE_NAMES:
            found.append((name, ROLE_NAMES[spec.role], spec.type, spec.unit, spec.levels))
        elif spec is None and name in columns:  # checked by the validator even when undeclared
            found.append((name, "not an input", "categorical" if name == "sex" else "numeric",
                          "years" if name == "age" else None, ("M", "F") if name == "sex" else None))
    for role in ROLE_NAMES:
        for name in schema.columns_with_role(role):
            if name not in FIRST_VARIABLES:
                spec = schema.columns[name]
                found.append((name, ROLE_NAMES[role], spec.type, spec.unit, spec.levels))
    return found


def _share(values: pd.Series, value: object) -> str:
    """``n (%)`` of the participants with a value who have this one."""
    return format_count(int((values == value).sum()), int(values.notna().sum()))


def _mean_sd(values: pd.Series) -> str:
    known = values.dropna().astype(float)
    if known.empty:
        return MISSING
    if len(known) == 1:
        return f"{known.iloc[0]:.1f} (one value)"
    sd = float(known.std(ddof=1))
    # one decimal, more for small spreads (cystatin C in mg/L)
    decimals = 1 if sd == 0 else int(np.clip(1 - math.floor(math.log10(sd)), 1, 3))
    return f"{known.mean():.{decimals}f} ± {sd:.{decimals}f}"


# --- tables from results.json -----------------------------------------------------------------

def performance_table(results: dict) -> pd.DataFrame:
    """One row per model and cohort: discrimination, and accuracy and F1 at the threshold frozen on
    development (sensitivity, specificity, PPV and NPV with their CIs: :mod:`operating`).
    A one-class cohort carries only n, n_positive, auc (null), auc_ci and a note."""
    with_oracle = any(entry[c].get("oracle_auc") is not None for entry in results["models"].values()
                      for c in results["cohorts"])
    rows = []
    for cohort in results["cohorts"]:
        for model, entry in results["models"].items():
            metrics = entry[cohort]
            row = [model, cohort, str(metrics["n"]), str(metrics["n_positive"]),
                   format_estimate(metrics["auc"], metrics["auc_ci"]), format_percent(metrics.get("accuracy")),
                   format_number(metrics.get("f1")), format_number(metrics.get("threshold")),
                   "yes" if model == results["selected_model"] else ""]
            rows.append(row + ([format_number(metrics.get("oracle_auc"))] if with_oracle else []))
    header = ["Model", "Cohort", "n", "Sarcopenia, n", "AUC (95% CI)", "Accuracy", "F1", "Threshold", "Selected"]
    return pd.DataFrame(rows, columns=header + (["Oracle AUC"] if with_oracle else []))


def comparisons_table(comparisons: list[dict]) -> pd.DataFrame | None:
    """Paired DeLong tests as listed by the runner; the difference is AUC A - AUC B; Holm's P beside
    the raw one (each cohort's comparisons one family)."""
    with_ci = any(c.get("difference_ci") for c in comparisons)  # the runner may add the CI of the difference
    rows = [[c["cohort"], c["a"], c["b"], format_number(c["auc_a"]), format_number(c["auc_b"]),
             format_estimate(c["difference"], c.get("difference_ci"), signed=True) if with_ci
             else format_number(c["difference"], signed=True), format_p(c["p"]), format_p(c.get("p_holm")),
             c.get("method", "paired DeLong"), c["why"]]
            for c in comparisons]
    header = ["Cohort", "Model A", "Model B", "AUC A", "AUC B", "Difference A - B" + (" (95% CI)" if with_ci else ""),
              "P (DeLong)", "P (Holm, per cohort)", "Test", "Why compared"]
    return pd.DataFrame(rows, columns=header) if rows else None


def contributions_table(results: dict) -> pd.DataFrame | None:
    details = results.get("contribution_details") or {}
    rows = [[cohort, modality, CLASS_NAMES[klass], format_estimate(by_class[klass]["mean"], by_class[klass]["ci"])]
            for cohort in results["cohorts"] if cohort in details
            for modality, by_class in details[cohort].items() for klass in CLASSES if klass in by_class]
    header = ["Cohort", "Data type", "True class", "Evidence share, the paper's measure (95% CI)"]
    return pd.DataFrame(rows, columns=header) if rows else None


def complete_case_table(results: dict) -> pd.DataFrame | None:
    complete = complete_cases(results)
    if not complete:
        return None
    rows = []
    for cohort in results["cohorts"]:
        for model, by_cohort in complete["models"].items():
            if cohort in by_cohort:
                metrics, full = by_cohort[cohort], results["models"][model][cohort]
                rows.append([model, cohort, str(metrics["n"]), str(metrics["n_positive"]),
                             format_estimate(metrics["auc"], metrics["auc_ci"]),
                             str(full["n"]), format_estimate(full["auc"], full["auc_ci"])])
    header = ["Model", "Cohort", "Complete cases, n", "Sarcopenia, n", "AUC, complete cases (95% CI)",
              "All participants, n", "AUC, all participants (95% CI)"]
    return pd.DataFrame(rows, columns=header) if rows else None


def complete_case_comparisons_table(results: dict) -> pd.DataFrame | None:
    complete = complete_cases(results)
    return comparisons_table(complete["comparisons"]) if complete else None


def selection_table(results: dict) -> pd.DataFrame:
    selection = results["selection"]
    rows = [[c["model"], str(c["n_modalities"]), format_number(c["auc"]),
             format_interval(c.get("difference_ci")),
             format_p(c["p_vs_best"]), "yes" if c["eligible"] else "no",
             "yes" if c["model"] == selection["selected"] else ""] for c in selection["candidates"]]
    return pd.DataFrame(rows, columns=["Model", "Data types, n", f"AUC ({selection['cohort']})",
                                       f"AUC - best ({selection['best']}), 95% CI",
                                       f"P vs best ({selection['best']})", "Eligible", "Selected"])


def int8_table(results: dict) -> pd.DataFrame | None:
    int8 = results["int8"]
    if int8 is None:
        return None
    rows = [[name, str(c["n"]), format_number(c["auc_float"]), format_number(c["auc_int8"]),
             format_number(None if None in (c["auc_float"], c["auc_int8"]) else c["auc_float"] - c["auc_int8"],
                           signed=True), format_p(c["p"]), format_percent(c["flip_rate"], 2)]
            for name, c in int8["cohorts"].items()]
    return pd.DataFrame(rows, columns=["Cohort", "n", "AUC float", "AUC INT8", "AUC drop (float - INT8)", "P (DeLong)",
                                       "Decisions flipped"])


def borderline_table(results: dict) -> pd.DataFrame | None:
    """The device's calls per cohort: the share of borderline results, and sensitivity and
    specificity of the calls a team acts on, then with every borderline result referred."""
    block = results.get("borderline")
    if not block:
        return None
    rows = []
    for cohort in results["cohorts"]:
        c = block["cohorts"][cohort]
        cases, others = c["tp"] + c["fn"] + c["borderline_cases"], c["n"] - c["tp"] - c["fn"] - c["borderline_cases"]
        rows.append([cohort, str(c["n"]), format_proportion(c["borderline"], c["n"]),
                     format_proportion(c["tp"], c["tp"] + c["fn"]), format_proportion(c["tn"], c["tn"] + c["fp"]),
                     format_proportion(c["tp"] + c["borderline_cases"], cases), format_proportion(c["tn"], others)])
    return pd.DataFrame(rows, columns=["Cohort", "n", "Borderline (95% CI)", "Sensitivity, decided calls",
                                       "Specificity, decided calls", "Sensitivity, borderline referred",
                                       "Specificity, borderline referred"])


def oracle_table(results: dict) -> pd.DataFrame | None:
    oracle = results.get("oracle")
    if not oracle:
        return None
    keys = list(dict.fromkeys(key for values in oracle.values() for key in values))
    rows = [[cohort, *(format_number(oracle[cohort].get(key)) for key in keys)]
            for cohort in results["cohorts"] if cohort in oracle]
    return pd.DataFrame(rows, columns=["Cohort", *(f"Oracle AUC: {key}" for key in keys)])


# --- tables computed from the predictions ------------------------------------------------------

def calibration_table(results: dict, predictions: Predictions) -> pd.DataFrame:
    """Brier score, calibration intercept and slope (95% Wald CIs) of every model in every cohort,
    with the number of events each rests on."""
    rows = []
    for cohort in results["cohorts"]:
        for model in results["models"]:
            frame = labelled(predictions[model, cohort])
            y, p = frame["label"].to_numpy(dtype=int), frame["probability"].to_numpy()
            try:
                fit = calibration_intercept_slope(y, p)
                intercept = format_estimate(fit.intercept, list(fit.intercept_ci), 2)
                slope = format_estimate(fit.slope, list(fit.slope_ci), 2)
            except StatsInputError as reason:
                intercept, slope = f"not estimable ({str(reason).split(':')[0]})", "not estimable"
            brier = format_number(brier_score(y, p)) if len(y) else MISSING
            rows.append([model, cohort, str(len(y)), str(int(y.sum())), brier, intercept, slope])
    return pd.DataFrame(rows, columns=["Model", "Cohort", "n", "Sarcopenia, n", "Brier score",
                                       "Calibration intercept (95% CI)", "Calibration slope (95% CI)"])


SUBGROUP_HEADER = ["n", "Sarcopenia, n", "AUC (95% CI)", *SHARE_HEADER]


def by_center_table(results: dict, predictions: Predictions) -> pd.DataFrame | None:
    """Every model by center, at the decisions frozen on development (None without a center column)."""
    rows = []
    for cohort_name in results["cohorts"]:
        for model in results["models"]:
            frame = labelled(predictions[model, cohort_name])
            if "center" in frame:
                for center, group in frame.groupby(frame["center"].fillna(MISSING), sort=True):
                    rows.append([model, cohort_name, center, *_subgroup_cells(group)])
    return pd.DataFrame(rows, columns=["Model", "Cohort", "Center", *SUBGROUP_HEADER]) if rows else None


def by_sex_table(results: dict, predictions: Predictions, cohort: Cohort) -> pd.DataFrame | None:
    """The selected and the multimodal model by sex, at the decisions frozen on development."""
    if "sex" not in cohort.participants:
        return None
    sex = cohort.participants.set_index("participant_id")["sex"].astype("string")
    rows = []
    for cohort_name in results["cohorts"]:
        for model in focus_models(results):
            frame = labelled(predictions[model, cohort_name])
            groups = frame.assign(sex=frame["participant_id"].map(sex).fillna(MISSING))
            for value, group in groups.groupby("sex", sort=True):
                rows.append([model, cohort_name, value, *_subgroup_cells(group)])
    return pd.DataFrame(rows, columns=["Model", "Cohort", "Sex", *SUBGROUP_HEADER])


def _subgroup_cells(group: pd.DataFrame) -> list[str]:
    y, p = group["label"].to_numpy(dtype=int), group["probability"].to_numpy(dtype=float)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if min(positives, negatives) >= 2:
        interval = auc_ci(y, p)
        auc = format_estimate(interval.auc, [interval.lower, interval.upper])
    else:  # DeLong needs two of each class; the AUC itself one
        auc = format_estimate(roc_auc(y, p), None) if min(positives, negatives) == 1 else MISSING
    return [str(len(y)), str(positives), auc, *Counts.of(group).sensitivity_specificity()]


def choices_table(results: dict) -> pd.DataFrame | None:
    """Every choice, what it chose and the data it saw (runs written before it was recorded lack it)."""
    if "choices" not in results:
        return None
    rows = [[entry["choice"], entry["value"], entry["kind"], ", ".join(entry["data"]) or "none (fixed before the run)",
             entry["how"]] for entry in results["choices"]["made"]]
    return pd.DataFrame(rows, columns=["Choice", "Chosen", "Kind", "Data it saw", "How"])


def build_tables(results: dict, predictions: Predictions, cohort: Cohort) -> dict[str, pd.DataFrame]:
    """Every table that applies to the run, by file stem, in the order the report shows them."""
    tables = {
        "characteristics": cohort_characteristics(cohort, results["cohorts"]),
        "choices": choices_table(results),
        "performance": performance_table(results),
        "operating_point": operating_point_table(results, predictions),
        "two_by_two": two_by_two_table(results, predictions),
        "thresholds": threshold_table(results),
        "oracle": oracle_table(results),
        "borderline": borderline_table(results),
        "comparisons": comparisons_table(results["comparisons"]),
        "measurements": measurements_table(results),
        "measurement_recovery": recovery_table(results),
        "calibration": calibration_table(results, predictions),
        "contributions": contributions_table(results),
        "information": information_table(results),
        "information_auc_drop": auc_drop_table(results),
        "by_center": by_center_table(results, predictions),
        "by_sex": by_sex_table(results, predictions, cohort),
        "complete_cases": complete_case_table(results),
        "complete_case_comparisons": complete_case_comparisons_table(results),
        "selection": selection_table(results),
        "int8": int8_table(results),
    }
    return {name: table for name, table in tables.items() if table is not None}
