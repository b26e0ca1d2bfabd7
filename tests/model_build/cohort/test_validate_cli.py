"""`sarco validate` as a command: exit codes, human and JSON output, the issue's done criterion."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from testkit.cohort_factory import edit_cell, findings_at, make_cohort, truncate, validate_app, validate_json


def invoke(*args: str):
    # Output captured, not a terminal: lines are never wrapped, whatever the width says.
    result = CliRunner().invoke(validate_app(), ["validate", *args], env={"COLUMNS": "80"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_done_criterion_deleted_truncated_and_abc(tmp_path):
    """Deleting an image, truncating another and "abc" in a lab cell: exit 1, each one named."""
    cohort = make_cohort(tmp_path / "cohort", seed=4)
    cohort.images[0].unlink()
    truncate(cohort.images[1], keep=0.5)
    edit_cell(cohort.root / "participants.csv", row=3, column="creatinine", value="abc")

    code, report = validate_json(cohort.root)

    assert code == 1
    errors = findings_at(report, severity="error")
    assert len(errors) == 3, errors
    deleted = findings_at(report, file="images.csv", row=2, column="path")[0]
    assert "file not found" in deleted["message"] and cohort.images[0].name in deleted["message"]
    truncated = findings_at(report, file="images.csv", row=3, column="path")[0]
    assert "truncated" in truncated["message"] and cohort.images[1].name in truncated["message"]
    abc = findings_at(report, file="participants.csv", row=3, column="creatinine")[0]
    assert "'abc' is not a number" in abc["message"] and abc["hint"]

    human = invoke(str(cohort.root))
    assert human.exit_code == 1
    for text in ("images.csv", "participants.csv", "file not found", "truncated", "'abc' is not a number",
                 "3 errors", "NOT usable"):
        assert text in human.stdout


def test_usable_cohort_prints_summary_and_exits_0(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", seed=5)
    result = invoke(str(cohort.root))
    assert result.exit_code == 0
    assert "6 participants (development 4, external 2)" in result.stdout
    assert "12 images, 5 videos" in result.stdout and "0 errors" in result.stdout and "usable" in result.stdout


def test_json_output_is_only_json(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", seed=6)
    edit_cell(cohort.root / "participants.csv", row=2, column="label", value="x")
    result = invoke(str(cohort.root), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["counts"]["error"] == 1
    assert set(report["findings"][0]) == {"severity", "file", "row", "column", "message", "hint"}


def test_errors_are_listed_before_warnings_within_a_file(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", seed=7)
    edit_cell(cohort.root / "participants.csv", row=7, column="label", value="0")  # warning: one-class external
    edit_cell(cohort.root / "participants.csv", row=4, column="age", value="old")  # error
    _, report = validate_json(cohort.root, "--no-media")
    severities = [finding["severity"] for finding in findings_at(report, file="participants.csv")]
    assert severities == ["error", "warning"]
    human = invoke(str(cohort.root), "--no-media").stdout
    assert human.index("'old' is not a number") < human.index("AUC is undefined")


def test_brackets_in_user_data_are_printed_verbatim(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", seed=8)
    edit_cell(cohort.root / "participants.csv", row=2, column="sex", value="[bold]X[/bold]")
    result = invoke(str(cohort.root), "--no-media")
    assert result.exit_code == 1
    assert "[bold]X[/bold]" in result.stdout


def test_piped_output_keeps_a_long_file_name_on_one_line(tmp_path):
    """The issue's example: grep on a CI log must find the whole path, in the findings table and
    in the media table, not half of it on each of two lines."""
    cohort = make_cohort(tmp_path / "cohort", seed=9)
    listed = "images/development/D0001_1_rectus_femoris_R.png"
    (cohort.root / listed).parent.mkdir(parents=True)
    cohort.images[0].rename(cohort.root / listed)
    edit_cell(cohort.root / "images.csv", row=2, column="path", value=listed)
    missing = "images/development/D0002_1_rectus_femoris_L.png"
    edit_cell(cohort.root / "images.csv", row=3, column="path", value=missing)

    lines = invoke(str(cohort.root), "--media-table").stdout.splitlines()

    assert any(f"{missing}: file not found" in line for line in lines)
    assert any(listed in line for line in lines)  # the media table's path column


def test_cohort_that_is_not_a_folder_is_a_usage_error(tmp_path):
    assert invoke(str(tmp_path / "absent")).exit_code == 2
    (tmp_path / "file.csv").write_text("participant_id\n")
    assert invoke(str(tmp_path / "file.csv")).exit_code == 2


def test_empty_folder_is_unusable(tmp_path):
    code, report = validate_json(tmp_path)
    assert code == 1
    assert {finding["file"] for finding in report["findings"]} == {"schema.yaml", "participants.csv"}
