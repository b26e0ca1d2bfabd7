"""load_cohort: what training code receives, and what it refuses."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from model_build.cohort import CohortError, load_cohort
from model_build.cohort.paths import CohortPathError
from model_build.models.data import MediaReadError, media_rows
from testkit.cohort_factory import edit_cell, make_cohort, read_rows


@pytest.fixture
def cohort(tmp_path):
    return make_cohort(tmp_path / "cohort", seed=9)


def test_participants_are_typed_per_schema(cohort):
    loaded = load_cohort(cohort.root)
    frame = loaded.participants
    written = read_rows(cohort.root / "participants.csv")
    assert list(frame["participant_id"]) == cohort.participant_ids
    assert list(frame.index) == list(range(2, 2 + len(written)))  # spreadsheet rows
    assert str(frame["label"].dtype) == "Int64" and list(frame["label"]) == [int(r["label"]) for r in written]
    assert str(frame["age"].dtype) == "Int64"
    assert frame["albumin"].dtype == "float64"
    assert frame["albumin"].iloc[0] == pytest.approx(float(written[0]["albumin"]))
    assert str(frame["sex"].dtype) == "string"
    assert str(frame["center"].dtype) == "string"
    assert pd.isna(frame["albumin"].iloc[-1]) and pd.isna(frame["creatinine"].iloc[-1])  # no lab values
    assert loaded.schema.columns_with_role("reference") == ["grip_kg", "gait_speed"]


def test_listings_are_loaded_with_their_paths(cohort):
    loaded = load_cohort(cohort.root)
    assert len(loaded.images) == len(cohort.images) and len(loaded.videos) == len(cohort.videos)
    assert [loaded.media_path(p) for p in loaded.images["path"]] == cohort.images
    assert loaded.images["mm_per_pixel"].dtype == "float64"
    assert "P006" not in set(loaded.videos["participant_id"])


def test_a_cohort_named_by_a_relative_path_gives_paths_relative_to_its_root(cohort,
                                                                          monkeypatch):
    """`sarco study cohort` (relative) crashed after training in calibration's frame listing:
    media paths are resolved (links followed), so the root must be too."""
    monkeypatch.chdir(cohort.root.parent)
    loaded = load_cohort(cohort.root.name)
    assert loaded.root.is_absolute()
    first = loaded.media_path(loaded.images["path"].iloc[0])
    assert str(first.relative_to(loaded.root)) == loaded.images["path"].iloc[0]


def test_missing_listing_is_none(cohort):
    (cohort.root / "videos.csv").unlink()
    assert load_cohort(cohort.root).videos is None


def test_unknown_label_is_na(cohort):
    edit_cell(cohort.root / "participants.csv", row=2, column="label", value="")
    assert pd.isna(load_cohort(cohort.root).participants["label"].iloc[0])


def test_refuses_an_unusable_cohort_naming_each_error(cohort):
    edit_cell(cohort.root / "participants.csv", row=4, column="albumin", value="abc")
    edit_cell(cohort.root / "participants.csv", row=5, column="label", value="2")
    with pytest.raises(CohortError) as raised:
        load_cohort(cohort.root)
    text = str(raised.value)
    assert "participants.csv row 4, column albumin: 'abc' is not a number" in text
    assert "participants.csv row 5, column label" in text
    assert [(f.row, f.column) for f in raised.value.findings if f.severity == "error"] == [(4, "albumin"),
                                                                                          (5, "label")]


def test_media_opened_only_when_asked(cohort):
    cohort.images[0].unlink()
    assert load_cohort(cohort.root).images is not None
    with pytest.raises(CohortError, match="images.csv row 2, column path"):
        load_cohort(cohort.root, check_media=True)


def test_warnings_are_kept_in_the_report(cohort):
    edit_cell(cohort.root / "participants.csv", row=2, column="notes", value="free text")
    loaded = load_cohort(cohort.root)
    assert [f.column for f in loaded.report.findings] == ["notes"]
    assert loaded.participants["notes"].iloc[0] == "free text"


def test_training_refuses_a_media_link_out_of_the_cohort(cohort, tmp_path):
    """load_cohort does not open media; the path it hands to training is checked all the same."""
    shutil.move(cohort.images[0], tmp_path / "outside.png")
    cohort.images[0].symlink_to(tmp_path / "outside.png")
    loaded = load_cohort(cohort.root)
    with pytest.raises(CohortPathError, match="outside the cohort folder; fix: copy the file"):
        loaded.media_path(f"images/{cohort.images[0].name}")
    with pytest.raises(MediaReadError, match=f"images.csv row 2 \\(images/{cohort.images[0].name}\\): is a link"):
        media_rows(loaded, cohort.participant_ids)
