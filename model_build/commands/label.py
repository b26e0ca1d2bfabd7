"""`sarco label`: derive every participant's category and label from the reference columns.

Nothing is written unless asked (`--out`, `--in-place`), because the cohort folder is the
study's record; the summary always compares the derived labels with the existing ones so that
`--check` can prove a cohort's labels follow the standard it claims.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer
from rich.table import Table

from model_build.cohort.schema import SchemaError, load_schema
from sarco_core.cli import CliConsole
from sarco_core.criteria import (CATEGORIES, CRITERIA, MEASURE_FIELDS, Diagnosis, Measurements, MeasurementError,
                                 diagnose)
from sarco_core.errors import SarcoError
from sarco_core.files import atomic_path

MAX_LISTED = 10  # ids / errors shown before "... and N more"
_TEXT_MEASURES = ("asmi_method",)

# Measures a cohort must declare so that `sarco label` can settle every label: one measure of
# each group. EWGSOP2 needs no performance measure for the label (only for the severity grade).
REQUIRED_MEASURES = {
    "awgs2019": (("grip",), ("gait_speed", "chair_stand", "sppb"), ("asmi",), ("asmi_method",)),
    "ewgsop2": (("grip", "chair_stand"), ("asmi", "asm")),
}


class LabelInputError(SarcoError):
    """The cohort cannot be labelled; each entry of ``problems`` names file, row, column and fix."""

    def __init__(self, *problems: str) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def register(app: typer.Typer) -> None:
    """Add `sarco label` to the CLI."""

    @app.command("label")
    def label(
        cohort: Annotated[Path, typer.Argument(help="Cohort folder (docs/cohort-format.md).")],
        standard: Annotated[Literal["awgs2019", "ewgsop2"], typer.Option(help="Diagnostic standard.")],
        out: Annotated[Path | None, typer.Option(help="Write participant_id, category, label and "
                                                      "the criteria to this CSV.")] = None,
        in_place: Annotated[bool, typer.Option("--in-place", help="Rewrite participants.csv's label "
                                                                  "and category columns.")] = False,
        check: Annotated[bool, typer.Option("--check", help="Exit 1 unless every existing label is "
                                                            "reproduced.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Category and label of every participant from the reference measurements."""
        try:
            if out is not None:
                _refuse_cohort_file(cohort, out)
            labelled = label_cohort(cohort, standard)
        except LabelInputError as error:
            for problem in error.problems[:MAX_LISTED]:
                typer.echo(f"Error: {problem}", err=True)
            if len(error.problems) > MAX_LISTED:
                typer.echo(f"... and {len(error.problems) - MAX_LISTED} more problems", err=True)
            raise typer.Exit(code=2) from None
        derived = derived_table(labelled)
        written = []
        try:
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                write_csv_atomic(derived, out)
                written.append(str(out))
            if in_place:
                updated = labelled.participants.copy()
                updated["label"] = derived["label"].to_numpy()
                updated["category"] = derived["category"].to_numpy()
                write_csv_atomic(updated, cohort / "participants.csv")
                written.append(str(cohort / "participants.csv"))
        except OSError as error:
            typer.echo(f"Error: could not write {error.filename}: {error.strerror or error}; "
                       "fix: check the folder exists and is writable", err=True)
            raise typer.Exit(code=2) from None
        summary = summarize(labelled)
        summary["written"] = written
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            _print_summary(summary)
        agreement = summary["agreement"]
        if check and (agreement["disagree"] or agreement["not_derived"]):
            raise typer.Exit(code=1)


@dataclass(frozen=True)
class LabelledCohort:
    """participants.csv as text (untouched, for rewriting), its labels and one Diagnosis per row."""

    cohort: Path
    standard: str
    label_definition: str  # what schema.yaml says the existing labels follow
    participants: pd.DataFrame
    existing: list[int | None]
    diagnoses: list[Diagnosis]


def label_cohort(cohort: Path, standard: str) -> LabelledCohort:
    """Read the cohort and diagnose every participant.

    Raises LabelInputError listing every bad cell, so that one run shows them all.
    """
    participants_path = cohort / "participants.csv"
    if not cohort.is_dir():
        raise LabelInputError(f"{cohort}: not a folder; fix: give the cohort folder "
                              "(it holds participants.csv and schema.yaml)")
    try:
        schema = load_schema(cohort / "schema.yaml")
    except SchemaError as error:
        raise LabelInputError(str(error)) from None
    columns = schema.measure_columns()
    missing_groups = [group for group in REQUIRED_MEASURES[standard] if not set(group) & set(columns)]
    if missing_groups:
        wanted = "; ".join(" or ".join(group) for group in missing_groups)
        raise LabelInputError(
            f"{cohort / 'schema.yaml'}: {standard} needs a reference column for: {wanted}; fix: declare "
            "it, e.g. `grip_kg: {role: reference, measure: grip, type: numeric, unit: kg}`")
    participants = _read_participants(participants_path)
    absent = [name for name in ("participant_id", "sex", *columns.values()) if name not in participants]
    if absent:
        raise LabelInputError(f"{participants_path}: no column {', '.join(absent)}; fix: add the column "
                              "(sex is M or F; reference columns are declared in schema.yaml)")
    problems: list[str] = []
    existing: list[int | None] = []
    diagnoses: list[Diagnosis] = []
    column_of_field = {MEASURE_FIELDS[measure]: column for measure, column in columns.items()}
    column_of_field["sex"] = "sex"
    for index, row in participants.iterrows():
        where = f"{participants_path}: row {index + 2}"
        existing.append(_existing_label(row.get("label", ""), f"{where}, column label", problems))
        values = {measure: _cell(row[column], measure, f"{where}, column {column}", problems)
                  for measure, column in columns.items()}
        sex = row["sex"].strip() or None
        try:
            diagnoses.append(diagnose(Measurements.from_measures(sex, values), standard))
        except MeasurementError as error:
            column = column_of_field.get(error.field, error.field)
            shown = row[column].strip() if column in row else ""
            problems.append(f"{where}, column {column}: {repr(shown) if shown else 'empty'}: {error.problem}; "
                            f"fix: {error.fix}")
    if problems:
        raise LabelInputError(*problems)
    return LabelledCohort(cohort, standard, schema.label_definition, participants, existing, diagnoses)


def _read_participants(path: Path) -> pd.DataFrame:
    """participants.csv as text, blank lines dropped but row numbers kept (index + 2)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False,
                            encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelInputError(f"{path}: not found; fix: write participants.csv "
                              "(see docs/cohort-format.md)") from None
    except OSError as error:
        raise LabelInputError(f"{path}: cannot be read ({error.strerror}); "
                              "fix: check it is a readable file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise LabelInputError(f"{path}: not a readable CSV ({error}); "
                              "fix: save it as UTF-8 CSV with a header row") from None
    blank = (frame.apply(lambda column: column.str.strip()) == "").all(axis=1)
    return frame[~blank]


def _cell(text: str, measure: str, where: str, problems: list[str]) -> float | str | None:
    text = text.strip()
    if not text:
        return None
    if measure in _TEXT_MEASURES:
        return text
    try:
        return float(text)
    except ValueError:
        hint = " (use a dot as the decimal separator)" if "," in text else ""
        problems.append(f"{where}: {text!r} is not a number{hint}; "
                        "fix: write a plain number such as 16.5, or leave the cell empty if not measured")
        return None


def _existing_label(text: str, where: str, problems: list[str]) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = None
    if value not in (0.0, 1.0):
        problems.append(f"{where}: {text!r} is not a label; fix: write 1 (sarcopenia), 0 (not) or leave it empty")
        return None
    return int(value)


def derived_table(labelled: LabelledCohort) -> pd.DataFrame:
    """participant_id, category, label, then one 1/0/empty column per criterion (text cells)."""
    def cell(value: bool | int | None) -> str:
        return "" if value is None else str(int(value))

    diagnoses = labelled.diagnoses
    return pd.DataFrame({
        "participant_id": labelled.participants["participant_id"].to_numpy(),
        "category": [d.category for d in diagnoses],
        "label": [cell(d.label) for d in diagnoses],
        **{criterion: [cell(d.criteria[criterion]) for d in diagnoses] for criterion in CRITERIA},
    })


def summarize(labelled: LabelledCohort) -> dict:
    """Counts per category and label, and agreement with the labels already in the cohort."""
    diagnoses = labelled.diagnoses
    categories = Counter(d.category for d in diagnoses)
    labels = Counter("undetermined" if d.label is None else str(d.label) for d in diagnoses)
    disagreeing, not_derived, agree, new = [], [], 0, 0
    ids = labelled.participants["participant_id"]
    for participant_id, old, diagnosis in zip(ids, labelled.existing, diagnoses):
        if old is None:
            new += diagnosis.label is not None
        elif diagnosis.label is None:
            not_derived.append(participant_id)
        elif diagnosis.label == old:
            agree += 1
        else:
            disagreeing.append(participant_id)
    return {
        "cohort": str(labelled.cohort),
        "standard": labelled.standard,
        "schema_label_definition": labelled.label_definition,
        "participants": len(diagnoses),
        "categories": {name: categories[name] for name in CATEGORIES if categories[name]},
        "labels": {name: labels[name] for name in ("1", "0", "undetermined")},
        "agreement": {
            "agree": agree,
            "disagree": len(disagreeing),
            "not_derived": len(not_derived),
            "newly_labelled": new,
            "disagreeing_ids": disagreeing[:MAX_LISTED],
            "not_derived_ids": not_derived[:MAX_LISTED],
        },
    }


def _refuse_cohort_file(cohort: Path, out: Path) -> None:
    """--out must not be one of the cohort's own files: overwriting input needs --in-place."""
    for name in ("participants.csv", "schema.yaml", "images.csv", "videos.csv", "truth.csv"):
        if out.resolve() == (cohort / name).resolve():
            raise LabelInputError(f"{out}: is the cohort's own {name}; fix: choose another --out, "
                                  "or use --in-place to rewrite participants.csv's label column")


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Atomically, so a crash never leaves half a file; the file keeps its permissions."""
    with atomic_path(path, mode=None) as temporary, \
            temporary.open("w", encoding="utf-8", newline="") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")


def _print_summary(summary: dict) -> None:
    console = CliConsole()
    console.print(f"{summary['cohort']}: {summary['standard']}, {summary['participants']} participants",
                  markup=False)
    table = Table()
    table.add_column("category")
    table.add_column("n", justify="right")
    for name, count in summary["categories"].items():
        table.add_row(name, str(count))
    console.print(table)
    if summary["schema_label_definition"] != summary["standard"]:
        console.print(f"note: schema.yaml says the existing labels are {summary['schema_label_definition']!r}, "
                      f"not {summary['standard']!r}", markup=False)
    labels = summary["labels"]
    console.print(f"labels: {labels['1']} sarcopenia, {labels['0']} not, {labels['undetermined']} undetermined")
    agreement = summary["agreement"]
    console.print(f"existing labels: {agreement['agree']} agree, {agreement['disagree']} disagree, "
                  f"{agreement['not_derived']} cannot be derived, {agreement['newly_labelled']} newly labelled")
    for key, title in (("disagreeing_ids", "disagree"), ("not_derived_ids", "cannot be derived")):
        if agreement[key]:
            console.print(f"{title}: {', '.join(map(str, agreement[key]))}", markup=False)
    for path in summary["written"]:
        console.print(f"wrote {path}", markup=False)
    if not summary["written"]:
        console.print("nothing written (use --out CSV or --in-place)")
