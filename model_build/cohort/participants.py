"""Checks of participants.csv: ids, cohorts, labels, and every column against schema.yaml."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Collection

from model_build.cohort.findings import CohortFinding, Place
from model_build.cohort.schema import ColumnSpec, Schema
from model_build.cohort.values import cell_problem

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


def column_specs(columns: Collection[str], schema: Schema | None) -> dict[str, ColumnSpec]:
    """The spec of every column present that has one: declared, else built in (sex, age)."""
    declared = schema.columns if schema is not None else {}
    specs = {name: spec for name, spec in BUILTIN_COLUMNS.items() if name in columns}
    specs.update({name: spec for name, spec in declared.items() if name in columns})
    return specs


class ParticipantsCheck:
    """Every check of participants.csv, fed one row at a time by :meth:`add` (the file is
    streamed: see tables.open_table), then :meth:`finish` for the checks of the whole file.

    What is remembered between rows is only what the checks need: each id's first row and
    cohort (for duplicates) and label counts per cohort, never the cells, so a million rows
    are checked in a few hundred megabytes.
    """

    def __init__(self, header: list[str], schema: Schema | None) -> None:
        self._position = {name: index for index, name in enumerate(header)}
        self._specs = list(column_specs(header, schema).values())
        self.findings = _check_declared_columns(header, schema) if schema is not None else []
        self._first_seen: dict[str, tuple[int, str]] = {}
        self._labels: dict[str, Counter[str]] = {}  # cohort -> label ("" unknown) -> rows
        self.rows = 0

    def add(self, row: int, cells: list[str]) -> None:
        participant, cohort, label = (cells[self._position[name]] for name in REQUIRED)
        cohort = sys.intern(cohort)  # one string per cohort, however many rows name it
        self.rows += 1
        self._check_id(row, participant, cohort)
        if label and label not in LABELS:
            self.findings.append(_label_finding(row, label))
        self._labels.setdefault(cohort, Counter())[label if label in LABELS else ""] += 1
        for spec in self._specs:
            raw = cells[self._position[spec.name]]
            problem = cell_problem(raw, spec) if raw else None
            if problem is not None:
                self.findings.append(Place(FILE, row, spec.name).error(*problem))

    def finish(self, schema: Schema | None) -> list[CohortFinding]:
        """All findings, with those about the labels of the whole file and of each cohort."""
        return self.findings + _check_classes(self._labels, schema)

    @property
    def known_ids(self) -> Collection[str]:
        """The participant ids listed (for the media listings' checks)."""
        return self._first_seen.keys()

    def summary(self) -> dict:
        """Participants, and labels 1 / 0 / unknown, in all and per cohort."""
        summary: dict = {"participants": self.rows, "labels": {"1": 0, "0": 0, "unknown": 0},
                         "cohorts": {}}
        for cohort in sorted(self._labels):
            labels = self._labels[cohort]
            counts = {"participants": labels.total(), "1": labels["1"], "0": labels["0"],
                      "unknown": labels[""]}
            summary["cohorts"][cohort] = counts
            for key in ("1", "0", "unknown"):
                summary["labels"][key] += counts[key]
        return summary

    def _check_id(self, row: int, participant: str, cohort: str) -> None:
        if not participant:
            self.findings.append(Place(FILE, row, "participant_id").error(
                "participant_id is empty", "give every participant a pseudonymous id (e.g. P0001)"))
            return
        if not cohort:
            self.findings.append(Place(FILE, row, "cohort").error(
                f"participant {participant} has no cohort",
                "write the cohort it belongs to (e.g. development, external, poc)"))
        first = self._first_seen.setdefault(participant, (row, cohort))
        if first[0] == row:
            return
        first_row, first_cohort = first
        if cohort and first_cohort and cohort != first_cohort:
            self.findings.append(Place(FILE, row, "cohort").error(
                f"participant {participant} is in two cohorts: {first_cohort!r} (row {first_row}) "
                f"and {cohort!r} (this row)",
                "a participant belongs to one cohort only: delete one row, or give it another id if it "
                "is another person (otherwise evaluation leaks training data)"))
        else:
            self.findings.append(Place(FILE, row, "participant_id").error(
                f"participant_id {participant} is duplicated (first at row {first_row})",
                "keep one row per participant; list several images per participant in images.csv"))


def _label_finding(row: int, label: str) -> CohortFinding:
    lowered = label.lower()
    if lowered in ("1.0", "yes", "true", "sarcopenia"):
        hint = "write 1"
    elif lowered in ("0.0", "no", "false"):
        hint = "write 0"
    else:
        hint = "write 1 (sarcopenia), 0 (no sarcopenia), or leave the cell empty when unknown"
    return Place(FILE, row, "label").error(f"label {label!r} is not 0, 1 or empty", hint)


def _check_classes(labels: dict[str, Counter[str]], schema: Schema | None) -> list[CohortFinding]:
    """One class cannot train a model (development) nor give an AUC (any cohort)."""
    place = Place(FILE, None, "label")
    per_cohort = {cohort: {label for label in LABELS if counts[label]}
                  for cohort, counts in sorted(labels.items())}
    classes = set().union(*per_cohort.values())
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
    for cohort, present in per_cohort.items():
        if len(present) != 1:  # none labelled, or both classes
            continue
        only = present.pop()
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


def _check_declared_columns(header: list[str], schema: Schema) -> list[CohortFinding]:
    findings = []
    for name in schema.columns:
        if name not in header:
            near = [column for column in header if column.lower() == name.lower()]
            hint = (f"rename column {near[0]!r} to {name!r}" if near
                    else "add the column (cells may be empty) or remove it from schema.yaml")
            findings.append(Place(FILE, 1, name).error(
                f"column {name!r} is declared in schema.yaml but missing from participants.csv", hint))
    for name in header:
        if name not in schema.columns and name not in KNOWN:
            findings.append(Place(FILE, 1, name).info(
                f"column {name!r} is not declared in schema.yaml: carried along, never a model input",
                "declare it in schema.yaml (role, type, unit, range) to check and use it"))
    return findings
