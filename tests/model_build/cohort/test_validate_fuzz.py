"""Garbage in, findings out: no cell value or file content may make validation crash.

Hypothesis (derandomized, so the run is reproducible) writes arbitrary text into CSV cells and
arbitrary bytes into any file of a valid cohort. `sarco validate` must exit 0 or 1 with a
report in both output modes, and load_cohort must either load or raise CohortError.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from model_build.cohort import CohortError, load_cohort
from testkit.cohort_factory import edit_cell, make_cohort, read_rows, validate_app, validate_json

FUZZ = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
LISTINGS = ("participants.csv", "images.csv", "videos.csv")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_cohort(tmp_path_factory.mktemp("fuzz") / "cohort", seed=10).root


def assert_never_crashes(root: Path, *, human_output: bool, media: bool = True) -> None:
    options = () if media else ("--no-media",)
    code, report = validate_json(root, *options)
    assert code in (0, 1) and report is not None
    assert report["ok"] == (code == 0)
    for finding in report["findings"]:
        assert finding["severity"] in ("error", "warning", "info") and finding["file"] and finding["hint"]
    if human_output:  # Rich rendering of user text; slower, so only where cells carry the garbage
        human = CliRunner().invoke(validate_app(), ["validate", str(root), *options])
        assert human.exception is None or isinstance(human.exception, SystemExit), repr(human.exception)
        assert human.exit_code == code
    try:
        load_cohort(root)
    except CohortError:
        pass


def cohort_copy(base: Path, scratch: str) -> Path:
    return Path(shutil.copytree(base, Path(scratch) / "cohort"))


@FUZZ
@given(file=st.sampled_from(LISTINGS), row=st.integers(2, 8), column_index=st.integers(0, 12),
       value=st.text(max_size=30))
def test_any_cell_value(base, file, row, column_index, value):
    with tempfile.TemporaryDirectory() as scratch:
        root = cohort_copy(base, scratch)
        path = root / file
        header = list(read_rows(path)[0])
        column = header[column_index] if column_index < len(header) else "extra"
        edit_cell(path, row=min(row, len(read_rows(path)) + 1), column=column, value=value)
        assert_never_crashes(root, human_output=True)


@FUZZ
@given(target=st.integers(0, 40), payload=st.binary(max_size=3000), mode=st.sampled_from(["replace", "cut", "splice"]))
def test_any_file_content(base, target, payload, mode):
    with tempfile.TemporaryDirectory() as scratch:
        root = cohort_copy(base, scratch)
        files = sorted(path for path in root.rglob("*") if path.is_file())
        path = files[target % len(files)]
        data = path.read_bytes()
        cut = len(payload) % (len(data) + 1)
        if mode == "replace":
            path.write_bytes(payload)
        elif mode == "cut":
            path.write_bytes(data[:cut])
        else:
            path.write_bytes(data[:cut] + payload + data[cut:])
        assert_never_crashes(root, human_output=False)


YAML_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3),
                           max_leaves=6)


@FUZZ
@given(column=st.sampled_from(["age", "sex", "albumin", "grip_kg", "new"]),
       key=st.sampled_from(["role", "type", "unit", "range", "levels", "measure", "label", "format_version"]),
       value=YAML_VALUES)
def test_any_schema_value(base, column, key, value):
    with tempfile.TemporaryDirectory() as scratch:
        root = cohort_copy(base, scratch)
        schema = yaml.safe_load((root / "schema.yaml").read_text())
        if key in ("label", "format_version"):
            schema[key] = value
        else:
            schema["columns"].setdefault(column, {"role": "other"})[key] = value
        (root / "schema.yaml").write_text(yaml.safe_dump(schema), encoding="utf-8")
        assert_never_crashes(root, human_output=False, media=False)  # the schema does not touch media
