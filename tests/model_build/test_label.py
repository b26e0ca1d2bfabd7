"""`sarco label` on small cohorts written into tmp_path: derived labels, summaries, --out,
--in-place (atomic, everything else kept), --check, and bad input named by file/row/column."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_build.cli import app
from sarco_core import files as atomic_files

runner = CliRunner()

SCHEMA = """\
format_version: 1
label:
  definition: awgs2019
columns:
  age: {role: clinical, type: numeric, unit: years, range: [40, 110]}
  grip_kg: {role: reference, measure: grip, type: numeric, unit: kg}
  gait_m_s: {role: reference, measure: gait_speed, type: numeric, unit: m/s}
  chair_s: {role: reference, measure: chair_stand, type: numeric, unit: s}
  asmi: {role: reference, measure: asmi, type: numeric, unit: kg/m2}
  asmi_method: {role: reference, measure: asmi_method, type: categorical, levels: [dxa, bia]}
  comment: {role: other, type: categorical}
"""

HEADER = "participant_id,cohort,label,center,sex,age,grip_kg,gait_m_s,chair_s,asmi,asmi_method,comment"
# Expected AWGS 2019 outcome in the last two fields (worked out by hand from the cut-offs).
ROWS = [
    # F: grip 16.5 < 18, gait 0.9 < 1.0, BIA ASMI 5.2 < 5.7: all three low.
    ("S001,development,1,A,F,71,16.5,0.9,13,5.2,bia,\"note, with comma\"", "severe_sarcopenia", "1"),
    # M: grip 27.9 < 28 low, gait 1.2 and chair 10 normal, DXA ASMI 6.9 < 7.0 low.
    ("S002,development,1,A,M,68,27.9,1.2,10,6.9,dxa,", "sarcopenia", "1"),
    # M: grip 28.0 not low, gait 1.0 not low, chair 11.99 not low: no sarcopenia whatever ASMI.
    ("S003,development,0,B,M,80,28.0,1.0,11.99,6.0,dxa,", "no_sarcopenia", "0"),
    # F: DXA ASMI 5.5 >= 5.4 normal: no sarcopenia although grip is low.
    ("S004,external,0,B,F,75,12.0,0.7,,5.5,dxa,", "no_sarcopenia", "0"),
    # F: grip low, no ASMI: possible sarcopenia, label unknown.
    ("S005,external,,B,F,77,15.0,,,,,", "possible_sarcopenia", ""),
    # M: ASMI low, grip low, no performance measure: sarcopenia (1) but severity open.
    ("S006,poc,1,C,M,82,20.0,,,6.5,bia,", "undetermined", "1"),
    # no sex: undetermined.
    ("S007,poc,,C,,70,20.0,0.5,15,5.0,dxa,", "undetermined", ""),
]


def write_cohort(folder: Path, rows=ROWS, schema: str = SCHEMA) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "schema.yaml").write_text(schema, encoding="utf-8")
    lines = [HEADER, *[row if isinstance(row, str) else row[0] for row in rows]]
    (folder / "participants.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def invoke(*args: str):
    return runner.invoke(app, ["label", *map(str, args)])


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    return write_cohort(tmp_path / "cohort")


def test_default_prints_a_summary_and_writes_nothing(cohort):
    before = {path.name: path.read_bytes() for path in cohort.iterdir()}
    result = invoke(cohort, "--standard", "awgs2019")
    assert result.exit_code == 0, result.output
    assert {path.name: path.read_bytes() for path in cohort.iterdir()} == before
    assert "nothing written" in result.stdout
    assert "5 agree, 0 disagree, 0 cannot be derived" in result.stdout


def test_out_csv_has_category_label_and_criteria(cohort, tmp_path):
    out = tmp_path / "results" / "labels.csv"
    result = invoke(cohort, "--standard", "awgs2019", "--out", out)
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert list(rows[0]) == ["participant_id", "category", "label",
                             "low_strength", "low_performance", "low_muscle_quantity"]
    assert [(r["category"], r["label"]) for r in rows] == [(category, label) for _, category, label in ROWS]
    s002 = rows[1]
    assert (s002["low_strength"], s002["low_performance"], s002["low_muscle_quantity"]) == ("1", "0", "1")
    s005 = rows[4]
    assert (s005["low_strength"], s005["low_performance"], s005["low_muscle_quantity"]) == ("1", "", "")


def test_json_summary_counts_categories_labels_and_agreement(cohort):
    result = invoke(cohort, "--standard", "awgs2019", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["participants"] == 7
    assert summary["categories"] == {"no_sarcopenia": 2, "possible_sarcopenia": 1, "sarcopenia": 1,
                                     "severe_sarcopenia": 1, "undetermined": 2}
    assert summary["labels"] == {"1": 3, "0": 2, "undetermined": 2}
    assert summary["agreement"] == {"agree": 5, "disagree": 0, "not_derived": 0, "newly_labelled": 0,
                                    "disagreeing_ids": [], "not_derived_ids": []}
    assert summary["written"] == []


def test_check_passes_when_every_existing_label_is_reproduced(cohort):
    assert invoke(cohort, "--standard", "awgs2019", "--check").exit_code == 0


def test_check_fails_on_a_disagreeing_label_and_names_it(tmp_path):
    rows = [ROWS[0], ("S003,development,1,B,M,80,28.0,1.0,11.99,6.0,dxa,", "", "")]
    cohort = write_cohort(tmp_path / "c", rows)
    result = invoke(cohort, "--standard", "awgs2019", "--check")
    assert result.exit_code == 1
    assert "1 disagree" in result.stdout and "S003" in result.stdout
    assert invoke(cohort, "--standard", "awgs2019").exit_code == 0  # without --check: report only


def test_check_fails_when_an_existing_label_cannot_be_derived(tmp_path):
    cohort = write_cohort(tmp_path / "c", [("S005,external,1,B,F,77,15.0,,,,,", "", "")])
    result = invoke(cohort, "--standard", "awgs2019", "--check", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["agreement"]["not_derived_ids"] == ["S005"]


def test_ewgsop2_on_the_same_cohort(cohort):
    result = invoke(cohort, "--standard", "ewgsop2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # S001 F grip 16.5 >= 16 normal, chair 13 <= 15 normal -> no sarcopenia (AWGS said severe).
    assert summary["agreement"]["disagreeing_ids"][0] == "S001"
    assert summary["schema_label_definition"] == "awgs2019"


def test_in_place_rewrites_label_and_category_and_keeps_everything_else(tmp_path):
    rows = [ROWS[0], ("S003,development,1,B,M,80,28.0,1.0,11.99,6.0,dxa,", "", ""), ROWS[4]]
    cohort = write_cohort(tmp_path / "c", rows)
    participants = cohort / "participants.csv"
    os.chmod(participants, 0o640)
    before = read_csv(participants)
    result = invoke(cohort, "--standard", "awgs2019", "--in-place")
    assert result.exit_code == 0, result.output
    after = read_csv(participants)
    assert [r["participant_id"] for r in after] == ["S001", "S003", "S005"]
    assert [r["label"] for r in after] == ["1", "0", ""]
    assert [r["category"] for r in after] == ["severe_sarcopenia", "no_sarcopenia", "possible_sarcopenia"]
    for old, new in zip(before, after):
        assert {k: v for k, v in new.items() if k not in ("label", "category")} == \
               {k: v for k, v in old.items() if k != "label"}
    assert list(after[0]) == [*HEADER.split(","), "category"]
    assert after[0]["comment"] == "note, with comma"
    assert stat.S_IMODE(participants.stat().st_mode) == 0o640
    assert sorted(path.name for path in cohort.iterdir()) == ["participants.csv", "schema.yaml"]
    # A second run updates the category column in place rather than adding another.
    assert invoke(cohort, "--standard", "awgs2019", "--in-place", "--check").exit_code == 0
    assert list(read_csv(participants)[0]).count("category") == 1


def test_in_place_is_atomic_when_the_final_rename_fails(cohort, monkeypatch):
    participants = cohort / "participants.csv"
    before = participants.read_bytes()

    def failing_replace(source, target):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(atomic_files.os, "replace", failing_replace)
    result = invoke(cohort, "--standard", "awgs2019", "--in-place")
    assert result.exit_code == 2
    assert "could not write" in result.output and "Traceback" not in result.output
    assert participants.read_bytes() == before
    assert sorted(path.name for path in cohort.iterdir()) == ["participants.csv", "schema.yaml"]


def test_out_may_not_overwrite_the_cohort(cohort):
    before = (cohort / "participants.csv").read_bytes()
    result = invoke(cohort, "--standard", "awgs2019", "--out", cohort / "participants.csv")
    assert result.exit_code == 2 and "--in-place" in result.output
    assert (cohort / "participants.csv").read_bytes() == before


def _error_of(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


def test_a_value_that_is_not_a_number_names_file_row_and_column(tmp_path):
    rows = [ROWS[0], ROWS[1], "S009,poc,,C,F,70,\"16,5\",0.9,,5.0,bia,"]
    cohort = write_cohort(tmp_path / "c", rows)
    before = (cohort / "participants.csv").read_bytes()
    message = _error_of(invoke(cohort, "--standard", "awgs2019", "--in-place"))
    assert "participants.csv: row 4, column grip_kg: '16,5' is not a number" in message
    assert "decimal separator" in message and "fix:" in message
    assert (cohort / "participants.csv").read_bytes() == before


def test_row_numbers_count_blank_lines_like_a_spreadsheet(tmp_path):
    cohort = write_cohort(tmp_path / "c", [ROWS[0], "", ",,,,,,,,,,,", "S010,poc,,C,F,70,abc,0.9,,5.0,bia,"])
    assert "row 5, column grip_kg: 'abc'" in _error_of(invoke(cohort, "--standard", "awgs2019"))


@pytest.mark.parametrize("row, where", [
    ("S011,poc,,C,F,70,-2,0.9,,5.0,bia,", "row 2, column grip_kg: '-2'"),
    ("S012,poc,,C,female,70,20,0.9,,5.0,bia,", "row 2, column sex: 'female': unknown sex"),
    ("S013,poc,,C,F,70,20,0.9,,5.0,,", "row 2, column asmi_method: empty"),
    ("S014,poc,,C,F,70,20,0.9,,5.0,CT,", "row 2, column asmi_method: 'CT'"),
    ("S015,poc,yes,C,F,70,20,0.9,,5.0,bia,", "row 2, column label: 'yes' is not a label"),
])
def test_bad_cells_are_named(tmp_path, row, where):
    cohort = write_cohort(tmp_path / "c", [row])
    assert where in _error_of(invoke(cohort, "--standard", "awgs2019"))


def test_every_bad_cell_is_listed_in_one_run(tmp_path):
    rows = [f"S{i:03d},poc,,C,F,70,x{i},0.9,,5.0,bia," for i in range(25)]
    message = _error_of(invoke(write_cohort(tmp_path / "c", rows), "--standard", "awgs2019"))
    assert "row 2, column grip_kg" in message and "and 15 more problems" in message


def test_missing_files_and_bad_schema(tmp_path):
    assert "not a folder" in _error_of(invoke(tmp_path / "absent", "--standard", "awgs2019"))
    cohort = write_cohort(tmp_path / "c")
    (cohort / "participants.csv").unlink()
    assert "participants.csv: not found" in _error_of(invoke(cohort, "--standard", "awgs2019"))
    cohort = write_cohort(tmp_path / "d")
    (cohort / "schema.yaml").unlink()
    assert "schema.yaml: not found" in _error_of(invoke(cohort, "--standard", "awgs2019"))
    cohort = write_cohort(tmp_path / "e", schema=SCHEMA.replace("role: reference, measure: grip",
                                                                 "role: lab, measure: grip"))
    assert "columns.grip_kg.measure" in _error_of(invoke(cohort, "--standard", "awgs2019"))


def test_schema_without_a_required_measure_says_what_to_declare(tmp_path):
    schema = SCHEMA.replace("  grip_kg: {role: reference, measure: grip, type: numeric, unit: kg}\n",
                            "  grip_kg: {role: reference, type: numeric, unit: kg}\n")
    message = _error_of(invoke(write_cohort(tmp_path / "c", schema=schema), "--standard", "awgs2019"))
    assert "awgs2019 needs a reference column for: grip" in message and "measure: grip" in message
    # EWGSOP2 accepts the chair stand for strength instead of grip.
    assert invoke(tmp_path / "c", "--standard", "ewgsop2").exit_code == 0


def test_a_declared_column_missing_from_participants_is_named(tmp_path):
    schema = SCHEMA + "  sppb_points: {role: reference, measure: sppb, type: integer}\n"
    message = _error_of(invoke(write_cohort(tmp_path / "c", schema=schema), "--standard", "awgs2019"))
    assert "participants.csv: no column sppb_points" in message
