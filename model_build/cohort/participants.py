"""Checks of participants.csv: ids, cohorts, labels, and every column against schema.yaml."""

from __future__ import annotations

import pandas as pd

from model_build.cohort.findings import Finding, Place
from model_build.cohort.schema import ColumnSpec, Schema
from model_build.cohort.values import check_column

FILE = "participants.csv"
REQUIRED = ("participant_id", "cohort", "label")
LABELS = ("0", "1")
LABEL_SPEC = ColumnSpec(name="label", role="other", type="binary")
TRAINING_COHORT = "development"
# Columns the format itself describes; checked even when schema.yaml does not declare them.
BUILTIN_COLUMNS = {
    "sex": ColumnSpec(name="sex", role="other", type="categorical", levels=("M", "F")),
    "age": ColumnSpec(name="age", role="other", type="numeric", unit="years", range=(0.0, 120.0)),
}
KNOWN = (*REQUIRED, "center", *BUILTIN_COLUMNS)


def column_specs(frame: pd.DataFrame, schema: Schema | None) -> dict[str, ColumnSpec]:
    """The spec of every column present that has one: declared, else built in (sex, age)."""
    declared = schema.columns if schema is not None else {}
    specs = {name: spec for name, spec in BUILTIN_COLUMNS.items() if name in frame.columns}
    specs.update({name: spec for name, spec in declared.items() if name in frame.columns})
    return specs


def check_participants(frame: pd.DataFrame, schema: Schema | None) -> list[Finding]:
    findings = _check_ids(frame) + _check_labels(frame) + _check_classes(frame, schema)
    if schema is not None:
        findings += _check_declared_columns(frame, schema)
    for spec in column_specs(frame, schema).values():
        findings += check_column(frame, spec, FILE)
    return findings


def _check_ids(frame: pd.DataFrame) -> list[Finding]:
    findings = []
    first_seen: dict[str, tuple[int, str]] = {}
    for row, participant, cohort in zip(frame.index, frame["participant_id"], frame["cohort"]):
        row = int(row)
        if not participant:
            findings.append(Place(FILE, row, "participant_id").error(
                "participant_id is empty", "give every participant a pseudonymous id (e.g. P0001)"))
            continue
        if not cohort:
            findings.append(Place(FILE, row, "cohort").error(
                f"participant {participant} has no cohort",
                "write the cohort it belongs to (e.g. development, external, poc)"))
        if participant not in first_seen:
            first_seen[participant] = (row, cohort)
            continue
        first_row, first_cohort = first_seen[participant]
        if cohort and first_cohort and cohort != first_cohort:
            findings.append(Place(FILE, row, "cohort").error(
                f"participant {participant} is in two cohorts: {first_cohort!r} (row {first_row}) "
                f"and {cohort!r} (this row)",
                "a participant belongs to one cohort only: delete one row, or give it another id if it "
                "is another person (otherwise evaluation leaks training data)"))
        else:
            findings.append(Place(FILE, row, "participant_id").error(
                f"participant_id {participant} is duplicated (first at row {first_row})",
                "keep one row per participant; list several images per participant in images.csv"))
    return findings


def _check_labels(frame: pd.DataFrame) -> list[Finding]:
    findings = []
    for row, label in frame["label"].items():
        if label and label not in LABELS:
            lowered = label.lower()
            if lowered in ("1.0", "yes", "true", "sarcopenia"):
                hint = "write 1"
            elif lowered in ("0.0", "no", "false"):
                hint = "write 0"
            else:
                hint = "write 1 (sarcopenia), 0 (no sarcopenia), or leave the cell empty when unknown"
            findings.append(Place(FILE, int(row), "label").error(f"label {label!r} is not 0, 1 or empty", hint))
    return findings


def _check_classes(frame: pd.DataFrame, schema: Schema | None) -> list[Finding]:
    """One class cannot train a model (development) nor give an AUC (any cohort)."""
    place = Place(FILE, None, "label")
    labelled = frame[frame["label"].isin(LABELS)]
    classes = set(labelled["label"])
    if not classes:
        derived = schema is not None and schema.label_definition != "given"
        hint = ("run `sarco label` to derive labels from the reference columns" if derived
                else "fill the label column (1, 0) for the participants whose status is known")
        return [place.warning("no participant has a label: the cohort can be neither trained on nor evaluated", hint)]
    if len(classes) == 1:
        only = classes.pop()
        return [place.error(f"every labelled participant has label {only}: a model cannot be trained "
                            "or evaluated with one class",
                            "add participants of the other class, or check how the label column was filled")]
    findings = []
    for cohort, group in labelled.groupby("cohort", sort=True):
        if group["label"].nunique() > 1:
            continue
        only = group["label"].iloc[0]
        if cohort.lower() == TRAINING_COHORT:
            findings.append(place.error(
                f"cohort {cohort!r}: every labelled participant has label {only}; "
                "a model cannot be trained on one class",
                "add participants of the other class to the development cohort, or check its labels"))
        else:
            findings.append(place.warning(
                f"cohort {cohort!r}: every labelled participant has label {only}; its AUC is undefined",
                "evaluate this cohort only together with another one, or add participants of the other class"))
    return findings


def _check_declared_columns(frame: pd.DataFrame, schema: Schema) -> list[Finding]:
    findings = []
    for name in schema.columns:
        if name not in frame.columns:
            near = [column for column in frame.columns if column.lower() == name.lower()]
            hint = (f"rename column {near[0]!r} to {name!r}" if near
                    else "add the column (cells may be empty) or remove it from schema.yaml")
            findings.append(Place(FILE, 1, name).error(
                f"column {name!r} is declared in schema.yaml but missing from participants.csv", hint))
    for name in frame.columns:
        if name not in schema.columns and name not in KNOWN:
            findings.append(Place(FILE, 1, name).info(
                f"column {name!r} is not declared in schema.yaml: carried along, never a model input",
                "declare it in schema.yaml (role, type, unit, range) to check and use it"))
    return findings
