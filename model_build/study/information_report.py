"""The report's part on what each data type contributes: the paper's evidence share beside the
measures of information (results.json's ``information`` block, :mod:`model_build.study.information`).

``tables/information.csv``: per cohort, true class and data type, the evidence share (the paper's
quantity), the Shapley value of the fused log-odds and its share, and the oracle's share.
``tables/information_auc_drop.csv``: per cohort and data type, the AUC lost without it.
"""

from __future__ import annotations

import pandas as pd

from model_build.study import html
from model_build.study.formatting import CLASS_NAMES, MISSING, format_estimate, format_number
from model_build.study.narrative import information_sentence


def information_table(results: dict) -> pd.DataFrame | None:
    block = results.get("information")
    if not block:
        return None
    rows = []
    for cohort, entry in block["cohorts"].items():
        for klass, by_modality in entry["shapley"].items():
            for modality, split in by_modality.items():
                oracle = (entry["oracle"] or {}).get(klass, {}).get(modality)
                rows.append([cohort, CLASS_NAMES[klass], modality,
                             format_number(entry["evidence_share"][klass][modality]),
                             format_estimate(split["mean"], split["ci"], signed=True),
                             format_estimate(split["share"], split["share_ci"]),
                             MISSING if oracle is None else format_estimate(oracle["share"], oracle["share_ci"])])
    return pd.DataFrame(rows, columns=["Cohort", "True class", "Data type", "Evidence share (paper's measure)",
                                       "Shapley log-odds towards the true class (95% CI)", "Shapley share (95% CI)",
                                       "Oracle share (95% CI)"])


def auc_drop_table(results: dict) -> pd.DataFrame | None:
    block = results.get("information")
    if not block:
        return None
    rows = [[cohort, modality, format_number(entry["auc"]), format_number(drop["auc_without"]),
             format_estimate(drop["drop"], drop["ci"], signed=True)]
            for cohort, entry in block["cohorts"].items() for modality, drop in entry["auc_drop"].items()]
    return pd.DataFrame(rows, columns=["Cohort", "Data type", "AUC, fused", "AUC, this data type vacuous",
                                       "AUC drop (95% CI)"])


def information_section(results: dict, tables: dict[str, pd.DataFrame]) -> str:
    if "information" not in tables:
        return ""
    return ("<h3>What each data type adds (information)</h3>"
            + html.paragraph(information_sentence(results))
            + html.table(tables["information"], "Evidence share: the paper's measure (a data type's share of the "
                         "evidence for the true class). Shapley: the change in the fused log-odds attributed to the "
                         "data type, averaged over the subsets of the others (a data type left out is the vacuous "
                         "opinion), signed towards the true class; share = over the sum of the data types. Oracle "
                         "(synthetic data): each data type's own Bayes log-likelihood ratio, signed and shared the "
                         "same way. 95% bootstrap intervals, participants resampled within each class.")
            + html.table(tables["information_auc_drop"], "AUC of the fused model minus its AUC with one data type "
                         "made vacuous for everyone (95% bootstrap interval)."))
