"""`sarco validate`: one test per check of participants.csv and schema.yaml.

Each test breaks one thing in a valid factory cohort and asserts the exit code and the finding's
file, row, column and hint. Media are not opened (--no-media) where they play no part.
"""

from __future__ import annotations

import os
import shutil
import threading
import tracemalloc

import pytest
import yaml

from model_build.cohort import validate_cohort
from testkit.cohort_factory import edit_cell, findings_at, make_cohort, read_rows, validate_json, write_csv

PARTICIPANTS = "participants.csv"


@pytest.fixture
def cohort(tmp_path):
    return make_cohort(tmp_path / "cohort", seed=1)


def only(findings: list[dict]) -> dict:
    assert len(findings) == 1, findings
    return findings[0]


def test_valid_cohort_is_usable_without_findings(cohort):
    code, report = validate_json(cohort.root)
    assert code == 0
    assert report["ok"] is True
    assert report["findings"] == []
    assert report["summary"]["participants"] == 6
    assert report["summary"]["cohorts"]["development"] == {"participants": 4, "1": 2, "0": 2, "unknown": 0}
    assert (report["summary"]["images"], report["summary"]["videos"]) == (12, 5)


def test_missing_participants_file(cohort):
    (cohort.root / PARTICIPANTS).unlink()
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, severity="error", file=PARTICIPANTS))
    assert "participant_id" in finding["hint"]


def test_missing_required_column(cohort):
    rows = read_rows(cohort.root / PARTICIPANTS)
    write_csv(cohort.root / PARTICIPANTS, [{k: v for k, v in row.items() if k != "label"} for row in rows])
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, row=1, column="label"))
    assert finding["severity"] == "error" and "add a column" in finding["hint"]


def test_missing_required_column_with_other_spelling(cohort):
    path = cohort.root / PARTICIPANTS
    path.write_text(path.read_text().replace("participant_id", "Participant ID", 1))
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    assert "rename column 'Participant ID'" in only(findings_at(report, column="participant_id"))["hint"]


def test_empty_participant_id(cohort):
    edit_cell(cohort.root / PARTICIPANTS, row=4, column="participant_id", value="")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, row=4, column="participant_id"))
    assert "pseudonymous" in finding["hint"]


def test_duplicated_participant_id(cohort):
    edit_cell(cohort.root / PARTICIPANTS, row=3, column="participant_id", value="P001")  # both development
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, row=3, column="participant_id"))
    assert "duplicated (first at row 2)" in finding["message"]
    assert "one row per participant" in finding["hint"]


def test_participant_in_two_cohorts_is_its_own_error(cohort):
    edit_cell(cohort.root / PARTICIPANTS, row=7, column="participant_id", value="P001")  # row 7 is external
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, row=7))
    assert finding["column"] == "cohort"
    assert "two cohorts: 'development' (row 2) and 'external'" in finding["message"]
    assert "one cohort only" in finding["hint"]
    assert not [f for f in report["findings"] if "duplicated" in f["message"]]


@pytest.mark.parametrize(("value", "hint"), [("2", "write 1 (sarcopenia)"), ("1.0", "write 1"),
                                             ("no", "write 0")])
def test_label_not_zero_one_or_empty(cohort, value, hint):
    edit_cell(cohort.root / PARTICIPANTS, row=5, column="label", value=value)
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, row=5, column="label"))
    assert finding["severity"] == "error" and finding["hint"].startswith(hint)


def test_single_class_in_the_whole_file_is_an_error(cohort):
    for row in range(2, 8):
        edit_cell(cohort.root / PARTICIPANTS, row=row, column="label", value="1")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, severity="error", file=PARTICIPANTS, column="label"))
    assert "one class" in finding["message"] and "other class" in finding["hint"]


def test_single_class_in_an_external_cohort_is_a_warning(cohort):
    edit_cell(cohort.root / PARTICIPANTS, row=7, column="label", value="0")  # external: rows 6, 7
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 0
    finding = only(findings_at(report, file=PARTICIPANTS, column="label"))
    assert finding["severity"] == "warning"
    assert "'external'" in finding["message"] and "AUC is undefined" in finding["message"]


def test_single_class_in_the_development_cohort_is_an_error(cohort):
    for row in (2, 3, 4, 5):
        edit_cell(cohort.root / PARTICIPANTS, row=row, column="label", value="1")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, column="label"))
    assert finding["severity"] == "error" and "'development'" in finding["message"]


def test_no_labels_at_all_is_a_warning(cohort):
    for row in range(2, 8):
        edit_cell(cohort.root / PARTICIPANTS, row=row, column="label", value="")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 0
    finding = only(findings_at(report, file=PARTICIPANTS, column="label"))
    assert finding["severity"] == "warning"


def test_declared_column_missing_from_participants(cohort):
    rows = read_rows(cohort.root / PARTICIPANTS)
    write_csv(cohort.root / PARTICIPANTS, [{k: v for k, v in row.items() if k != "creatinine"} for row in rows])
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, row=1, column="creatinine"))
    assert "declared in schema.yaml" in finding["message"] and "remove it from schema.yaml" in finding["hint"]


def test_undeclared_column_is_info_only(cohort):
    edit_cell(cohort.root / PARTICIPANTS, row=2, column="bmi", value="24.1")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 0
    finding = only(findings_at(report, file=PARTICIPANTS, column="bmi"))
    assert finding["severity"] == "info" and finding["row"] == 1 and "declare it" in finding["hint"]


@pytest.mark.parametrize(("value", "hint"), [
    ("abc", "write a number in g/L"),
    ("4,1", "write a decimal point: 4.1"),
    ("NA", "leave the cell empty"),
    ("41 g/L", "write the number alone (41)"),
])
def test_non_numeric_lab_value(cohort, value, hint):
    edit_cell(cohort.root / PARTICIPANTS, row=3, column="albumin", value=value)
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, row=3, column="albumin"))
    assert "is not a number" in finding["message"] and finding["hint"].startswith(hint)


def test_integer_column_with_a_fraction(cohort):
    edit_cell(cohort.root / PARTICIPANTS, row=2, column="age", value="70.5")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, row=2, column="age"))
    assert "not a whole number" in finding["message"] and "type: numeric" in finding["hint"]


@pytest.mark.parametrize(("value", "hint"), [("male", "use one of M, F"), ("m", "write 'M'")])
def test_categorical_value_not_in_levels(cohort, value, hint):
    edit_cell(cohort.root / PARTICIPANTS, row=6, column="sex", value=value)
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    assert only(findings_at(report, file=PARTICIPANTS, row=6, column="sex"))["hint"].startswith(hint)


@pytest.mark.parametrize(("column", "value", "unit_hint"), [
    ("albumin", "4.1", "it looks like g/dL (4.1 g/dL = 41 g/L)"),
    ("creatinine", "1.1", "it looks like mg/dL (1.1 mg/dL = 97.24 umol/L)"),
    ("gait_speed", "95", "it looks like cm/s (95 cm/s = 0.95 m/s)"),
])
def test_out_of_range_value_with_unit_hint(cohort, column, value, unit_hint):
    edit_cell(cohort.root / PARTICIPANTS, row=4, column=column, value=value)
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, row=4, column=column))
    assert "outside the plausible range" in finding["message"]
    assert finding["hint"].startswith(unit_hint)


def test_out_of_range_value_without_a_likely_unit(cohort):
    edit_cell(cohort.root / PARTICIPANTS, row=4, column="albumin", value="-3")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, row=4, column="albumin"))
    assert "widen `range`" in finding["hint"]


def test_undeclared_sex_is_still_checked(cohort):
    schema = yaml.safe_load((cohort.root / "schema.yaml").read_text())
    del schema["columns"]["sex"]
    (cohort.root / "schema.yaml").write_text(yaml.safe_dump(schema))
    edit_cell(cohort.root / PARTICIPANTS, row=2, column="sex", value="X")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    assert only(findings_at(report, file=PARTICIPANTS, row=2, column="sex"))["severity"] == "error"


def test_invalid_schema_names_the_key(cohort):
    schema = yaml.safe_load((cohort.root / "schema.yaml").read_text())
    schema["columns"]["albumin"]["role"] = "input"
    (cohort.root / "schema.yaml").write_text(yaml.safe_dump(schema))
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file="schema.yaml"))
    assert finding["column"] == "albumin" and "clinical, lab, reference, other" in finding["hint"]


def test_missing_schema(cohort):
    (cohort.root / "schema.yaml").unlink()
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    assert "write a schema.yaml" in only(findings_at(report, file="schema.yaml"))["hint"]


def test_not_utf8(cohort):
    path = cohort.root / PARTICIPANTS
    path.write_bytes(path.read_bytes().replace(b"external", "extérieur".encode("latin-1")))  # first on line 6
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS))
    assert "not UTF-8" in finding["message"] and "line 6" in finding["message"] and "UTF-8" in finding["hint"]


def test_semicolon_separated_file(cohort):
    path = cohort.root / PARTICIPANTS
    path.write_text(path.read_text().replace(",", ";"))
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    assert all("semicolon" in f["hint"] for f in findings_at(report, file=PARTICIPANTS))


def test_row_with_more_cells_than_the_header(cohort):
    path = cohort.root / PARTICIPANTS
    lines = path.read_text().splitlines()
    lines[2] += ",surplus"
    path.write_text("\n".join(lines) + "\n")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS, row=3))
    assert "quote cells that contain commas" in finding["hint"]


def test_blank_lines_keep_spreadsheet_row_numbers(cohort):
    path = cohort.root / PARTICIPANTS
    lines = path.read_text().splitlines()
    lines.insert(2, "")  # a blank spreadsheet row 3: P002 moves to row 4
    path.write_text("\n".join(lines) + "\n")
    edit_cell_text = path.read_text().replace("P002,development,1", "P002,development,7")
    path.write_text(edit_cell_text)
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    assert only(findings_at(report, file=PARTICIPANTS, column="label"))["row"] == 4


def test_participants_file_linked_from_outside_the_cohort_is_an_error(cohort, tmp_path):
    outside = tmp_path / "elsewhere.csv"
    shutil.move(cohort.root / PARTICIPANTS, outside)
    (cohort.root / PARTICIPANTS).symlink_to(outside)
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS))
    assert finding["message"] == f"is a link to {outside.resolve()}, outside the cohort folder"
    assert "copy the file into the cohort folder" in finding["hint"]


def test_participants_file_that_is_a_pipe_is_not_opened(cohort):
    path = cohort.root / PARTICIPANTS
    content = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    # a reader of a pipe waits for a writer: this one feeds whoever opens it, so a validator
    # that opened the pipe would read a valid file instead of hanging
    feeder = threading.Thread(target=path.write_bytes, args=(content,), daemon=True)
    feeder.start()
    code, report = validate_json(cohort.root, "--no-media")
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets the feeder finish
    feeder.join(10)
    os.close(reader)
    assert code == 1
    finding = only(findings_at(report, file=PARTICIPANTS))
    assert finding["message"] == "is a named pipe (FIFO), not a file: it is not opened"


def test_a_large_participants_file_is_checked_in_bounded_memory(tmp_path):
    """participants.csv is streamed: validation keeps each id's first row and cohort (to find
    duplicates), not the cells. Issue 17: 1,000,000 rows took 2.8 GB when the whole file was
    read into a DataFrame (about 1,100 bytes per row of this file; now about 180)."""
    small = make_cohort(tmp_path / "small", seed=1, images=False, videos=False).root
    large = make_cohort(tmp_path / "large", seed=1, images=False, videos=False).root
    template = read_rows(large / PARTICIPANTS)[0]
    rows = 20_000
    write_csv(large / PARTICIPANTS, [dict(template, participant_id=f"Q{number:06d}", label=str(number % 2))
                                     for number in range(rows)])
    validate_cohort(small, media=False)  # imports and caches are not what the file costs
    tracemalloc.start()
    try:
        report = validate_cohort(large, media=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.ok and report.summary["participants"] == rows
    assert peak < 400 * rows, f"{peak / rows:.0f} bytes per row"
