"""Which participants calibration may use and which the gate evaluates.

Calibration frames come only from the cohort the model was trained on, and never from its inner
validation split: that split (the *development hold-out*) is where the gate compares float and
INT8, together with every evaluation cohort (external, proof of concept...). The split is
recomputed with the training code's own function from the seed and options in training.json,
so calibration and training can never disagree on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from model_build.calibration import CalibrationError
from model_build.calibration.bundles import SourceBundle
from model_build.cohort import Cohort


@dataclass(frozen=True)
class Group:
    """Participants evaluated together: a name for reports and their participants.csv rows."""

    name: str
    rows: pd.DataFrame


def development_split(bundle: SourceBundle, cohort: Cohort) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, hold-out rows) of the bundle's training cohort, as training split them."""
    from model_build.models.splits import TrainingError, inner_split, training_rows

    options = bundle.training.get("options", {})
    try:
        rows = training_rows(cohort, bundle.train_cohort)
        train, held_out = inner_split(rows["label"].astype(int).to_numpy(),
                                      float(options.get("validation_fraction", 0.2)), int(options.get("seed", 0)))
    except TrainingError as error:
        raise CalibrationError(f"{bundle.path}: cannot recompute the training split on {cohort.root} ({error})") \
            from None
    expected = bundle.training.get("participants", {})
    found = {"train": len(train), "validation": len(held_out)}
    if expected and any(expected.get(key) != value for key, value in found.items()):
        raise CalibrationError(
            f"{cohort.root}: its {bundle.train_cohort!r} cohort splits into {found['train']} training and "
            f"{found['validation']} hold-out participants, but {bundle.path / 'training.json'} says "
            f"{expected.get('train')} and {expected.get('validation')}: this is not the cohort the model was "
            "trained on; fix: give the same cohort folder as to `sarco train`")
    return rows.iloc[train], rows.iloc[held_out]


def calibration_rows(bundle: SourceBundle, cohort: Cohort, name: str) -> pd.DataFrame:
    """Participants calibration may draw from: the training part of the training cohort."""
    present = sorted(cohort.participants["cohort"].unique())
    if name not in present:
        raise CalibrationError(f"{cohort.root}/participants.csv: no participant has cohort {name!r} "
                               f"(cohorts: {', '.join(present)})")
    if name != bundle.train_cohort:
        raise CalibrationError(
            f"--cohort {name}: calibration frames must come from the cohort the model was trained on "
            f"({bundle.train_cohort!r}); {name!r} is for evaluation only, and calibrating on it would leak "
            f"it into the model; fix: use --cohort {bundle.train_cohort}")
    train, _ = development_split(bundle, cohort)
    return train


def evaluation_groups(bundle: SourceBundle, cohort: Cohort) -> list[Group]:
    """The development hold-out, then every other cohort value (labelled participants only)."""
    _, held_out = development_split(bundle, cohort)
    groups = [Group(f"{bundle.train_cohort} hold-out", held_out)]
    participants = cohort.participants[cohort.participants["label"].notna()]
    for name in sorted(set(participants["cohort"]) - {bundle.train_cohort}):
        groups.append(Group(name, participants[participants["cohort"] == name]))
    return groups
