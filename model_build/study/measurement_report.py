"""The report's part on the measurements model: its two tables and its section.

``tables/measurements.csv``: per cohort, the measurements model's AUC beside the image model's on
the same participants, with the paired DeLong test. ``tables/measurement_recovery.csv``
(synthetic cohorts): each measurement against the generator's truth. Both read results.json's
``measurements`` block only.
"""

from __future__ import annotations

import pandas as pd

from model_build.study import html
from model_build.study.formatting import MISSING, format_estimate, format_number, format_p
from model_build.study.inputs import DEVELOPMENT

QUANTITY_NAMES = {"muscle_thickness_mm": "muscle thickness (mm)", "muscle_thickness_px": "muscle thickness (px)",
                  "pennation_deg": "pennation angle (deg)", "echo_intensity": "echo intensity (grey level)"}


def measurements_table(results: dict) -> pd.DataFrame | None:
    """Per cohort: how many were measured, both AUCs and the paired test (difference = measurements - image)."""
    block = results.get("measurements")
    if not block:
        return None
    image = results["models"].get(block["compared_with"], {})
    tests = {c["cohort"]: c for c in block["comparisons"]}
    thickness = "muscle_thickness_" + block["thickness_unit"]
    rows = []
    for cohort in results["cohorts"]:
        mine, measured, test = block["cohorts"][cohort], block["measured"][cohort], tests.get(cohort)
        theirs = image.get(cohort, {})
        rows.append([cohort, str(mine["n"]), str(mine["n_positive"]),
                     f"{measured[thickness]} / {measured['pennation_deg']} / {measured['echo_intensity']}",
                     f"{measured['images_measured']} of {measured['images']}",
                     format_estimate(mine["auc"], mine["auc_ci"]),
                     format_estimate(theirs.get("auc"), theirs.get("auc_ci")),
                     MISSING if test is None else
                     format_estimate(test["difference"], test["difference_ci"], signed=True),
                     MISSING if test is None else format_p(test["p"])])
    return pd.DataFrame(rows, columns=["Cohort", "n", "Sarcopenia, n", "Measured: thickness / pennation / echo, n",
                                       "Images measured", "AUC, measurements (95% CI)",
                                       f"AUC, {block['compared_with']} (95% CI)",
                                       "Difference measurements - image (95% CI)", "P (DeLong)"])


def recovery_table(results: dict) -> pd.DataFrame | None:
    """Each measurement against the generator's truth, over all participants, then per cohort."""
    recovered = (results.get("measurements") or {}).get("recovery")
    if not recovered:
        return None
    rows = []
    for scope, quantities in recovered["scopes"].items():
        for quantity, a in quantities.items():
            rows.append([scope, QUANTITY_NAMES.get(quantity, quantity), f"{a['n_measured']} of {a['n_participants']}",
                         format_number(a["median_absolute_error"], 2),
                         format_number(a["median_absolute_error_percent"], 2),
                         format_number(a["bias"], 2, signed=True), format_number(a["pearson_r"]),
                         format_number(a["spearman_r"]), a.get("note") or ""])
    return pd.DataFrame(rows, columns=["Participants", "Measurement", "Measured", "Median absolute error",
                                       "Median absolute error, % of truth", "Bias (measured - truth)", "Pearson r",
                                       "Spearman r", "Note"])


def measurements_section(results: dict, tables: dict[str, pd.DataFrame]) -> str:
    """The section's words and tables; what the numbers are, and where the features come from."""
    block = results.get("measurements")
    if not block:
        return html.table(None, "Not applicable: no images in this study, so nothing to measure.")
    unit = block["thickness_unit"]
    refit = block["refit"]
    weights = ", ".join(f"{name} {format_number(value, 2, signed=True)}"
                        for name, value in refit["coefficients"].items())
    synthetic = bool(results.get("oracle")) or block.get("recovery") is not None
    text = [
        f"What clinicians read off a muscle scan, as a model: {block['description']} "
        f"(aponeurosis model {block['aponeurosis_model']}). Muscle thickness is in {unit}"
        + (" (every measured participant's images had a pixel size)." if unit == "mm" else
           " (some measured images had no pixel size, so no thickness in mm for every participant).")
        + f" Inputs: {', '.join(block['inputs'])}; {block['missing']}.",
        f"It was evaluated exactly as the other models: out-of-fold on {DEVELOPMENT} (the same folds), refit on "
        f"{DEVELOPMENT} and applied once to every other cohort. The table gives its AUC beside the "
        f"{block['compared_with']} model's on the same participants, and the paired DeLong test of the two "
        "(difference = measurements - image; P unadjusted).",
        f"Refit coefficients (log-odds per SD of each standardised input; indicators and sex levels per 0/1): "
        f"{weights}; intercept {format_number(refit['intercept'], 2, signed=True)}.",
    ]
    if synthetic:
        text.append("These data are synthetic: the measured features come from the generator's own rendering of "
                    "each muscle, whose thickness, echo and fascicle angle it drew from the same latent variables "
                    "that set the label. The recovery table compares each measurement with what the generator drew "
                    "(per participant, the median over the same images): an error there is the measurement's, not "
                    "the rendering's.")
    return ("".join(html.paragraph(line) for line in text)
            + html.table(tables.get("measurements"))
            + (html.table(tables.get("measurement_recovery"), "Measured against the generator's truth. Thickness is "
                          "defined alike on both sides; echo intensity is a grey level against the generator's 0-1 "
                          "latent, so only correlations are given.") if "measurement_recovery" in tables else ""))
