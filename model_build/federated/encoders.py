"""Clinical and lab encoders agreed between sites without sharing a row.

FedAvg averages tensors of equal shapes, so every site's network must have the same inputs: the
same columns, missing indicators and one-hot levels, scaled the same way. A site therefore does
not fit its own :class:`~model_build.models.tabular.TabularEncoder`; before the first round it
sends sums over its training rows (the inner split's, as ``TrainingData.prepare`` uses), per
column: how many values are known, their sum and sum of squares, whether any is missing, and the
categorical levels it has seen (none where the schema lists the levels). The coordinator adds
them up. The pooled mean and standard deviation are exact; missing values are imputed with the
pooled mean, not a median, because a median cannot be rebuilt from sums.

What this still reveals: a site's count and moments per column (a site with one participant
would reveal that participant's values), and the levels it has seen. Secure aggregation of these
sums is later work (docs/federated.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from model_build.cohort import Cohort, load_cohort
from model_build.models.data import tabular_columns
from model_build.models.splits import inner_split, training_rows
from model_build.models.tabular import CategoricalColumn, NumericColumn, TabularEncoder, column_numbers
from model_build.models.training_data import resolve_modalities
from model_build.models.train import TrainOptions


def site_statistics(cohort: Path | Cohort, options: TrainOptions) -> dict[str, list[dict]]:
    """What one site sends to agree the encoders: per tabular modality, per column, sums only."""
    cohort = cohort if isinstance(cohort, Cohort) else load_cohort(cohort)
    rows = training_rows(cohort, options.train_cohort)
    modalities = [m for m in resolve_modalities(cohort, rows, options.modalities) if m != "image"]
    train_index, _ = inner_split(rows["label"].astype(int).to_numpy(), options.validation_fraction, options.seed)
    fit_rows = rows.iloc[train_index]
    statistics: dict[str, list[dict]] = {}
    for modality in modalities:
        columns = []
        for spec in tabular_columns(cohort, modality):
            if spec.type == "categorical":
                seen = sorted({str(v) for v in fit_rows[spec.name].dropna()} - {""})
                columns.append({"name": spec.name, "type": spec.type, "levels": list(spec.levels or seen),
                                "fixed_levels": bool(spec.levels)})
                continue
            values = column_numbers(fit_rows[spec.name], spec.name, spec.type)
            known = values[~np.isnan(values)]
            columns.append({"name": spec.name, "type": spec.type, "count": int(known.size),
                            "sum": float(known.sum()), "squares": float((known ** 2).sum()),
                            "missing": bool(np.isnan(values).any())})
        statistics[modality] = columns
    return statistics


def agree_encoders(sites: list[dict[str, list[dict]]]) -> dict[str, TabularEncoder]:
    """The encoders every site uses, from the sites' :func:`site_statistics` (same schema)."""
    if not sites:
        raise ValueError("no site statistics to agree the encoders on")
    modalities = list(sites[0])
    if any(list(site) != modalities for site in sites):
        raise ValueError(f"sites disagree on the tabular modalities: {[list(s) for s in sites]}; "
                         "fix: give every site the same schema.yaml")
    encoders = {}
    for modality in modalities:
        encoder = TabularEncoder()
        for position, first in enumerate(sites[0][modality]):
            same = [site[modality][position] for site in sites]
            if any(c["name"] != first["name"] or c["type"] != first["type"] for c in same):
                raise ValueError(f"sites disagree on {modality} column {position}; fix: one schema for all sites")
            if first["type"] == "categorical":
                levels = first["levels"] if first["fixed_levels"] else sorted({v for c in same for v in c["levels"]})
                encoder.categorical.append(CategoricalColumn(first["name"], list(levels)))
                continue
            count = sum(c["count"] for c in same)
            if count == 0:
                raise ValueError(f"column {first['name']!r} has no value at any site")
            mean = sum(c["sum"] for c in same) / count
            variance = max(0.0, sum(c["squares"] for c in same) / count - mean ** 2)
            scale = math.sqrt(variance)
            encoder.numeric.append(NumericColumn(
                first["name"], type=first["type"], median=mean, mean=mean, scale=scale if scale > 0 else 1.0,
                missing_indicator=any(c["missing"] for c in same)))
        encoders[modality] = encoder
    return encoders


def tabular_inputs(encoders: dict[str, TabularEncoder]) -> dict[str, int]:
    """Input width of each tabular encoder network (``NetworkConfig.tabular_inputs``)."""
    return {modality: len(encoder.feature_names) for modality, encoder in encoders.items()}
