"""Which participants train and which hold out: torch-free, so calibration can recompute a
bundle's training split without loading PyTorch."""

from __future__ import annotations

import numpy as np
import pandas as pd

from model_build.cohort import Cohort
from sarco_core.errors import SarcoError


class TrainingError(SarcoError, ValueError):
    """Training cannot start or go on; the message says why and how to fix it."""


def training_rows(cohort: Cohort, name: str) -> pd.DataFrame:
    participants = cohort.participants
    rows = participants[(participants["cohort"] == name) & participants["label"].notna()]
    if rows.empty:
        names = ", ".join(sorted(participants["cohort"].unique()))
        raise TrainingError(f"{cohort.root}/participants.csv: no labelled participant has cohort "
                            f"{name!r} (cohorts: {names}); fix: pass --train-cohort with one of them")
    check_class_counts(rows, f"cohort {name!r}")
    return rows


def check_class_counts(rows: pd.DataFrame, what: str) -> None:
    counts = rows["label"].value_counts()
    if len(counts) < 2 or counts.min() < 4:
        raise TrainingError(f"{what} has {counts.get(1, 0)} sarcopenia and {counts.get(0, 0)} "
                            "other labelled participants; fix: training needs at least 4 of each")


def inner_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Participant-level split stratified by label: ``fraction`` of each class, at least 2, held out
    (two of each class is the least an AUC with a DeLong interval needs)."""
    rng = np.random.default_rng([seed, 0])
    held_out = []
    for klass in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == klass))
        if len(members) < 4:
            raise TrainingError(f"only {len(members)} participants of class {klass}; fix: training needs "
                                "at least 4 of each class")
        held_out.append(members[:max(2, round(fraction * len(members)))])
    validation = np.sort(np.concatenate(held_out))
    return np.setdiff1d(np.arange(len(labels)), validation), validation
