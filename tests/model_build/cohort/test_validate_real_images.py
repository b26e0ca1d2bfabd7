"""Validation on real public muscle ultrasound images (tests/data/real, a licensed subset of
../shared/data committed with the repository), not only on factory files."""

from __future__ import annotations

import shutil
from pathlib import Path

from testkit.cohort_factory import findings_at, make_cohort, read_rows, truncate, validate_json, write_csv
from tests.support.real_data import real_file

REAL_IMAGES = (
    "muscle-us-timtrack/dataset1/S1/S1_L20_step_025.png",  # GE Logiq E9, grey PNG
    "muscle-us-timtrack/dataset4/SampleB/GM_P_1.bmp",
    "muscle-us-timtrack/dataset3/030/p6_isokinetic030_01_push_01_10.jpg",  # Telemed screenshot
    "muscle-us-deepacsa/rectus_img_55.tif",  # 1152x864 RGB panoramic
)
# The same recording is published twice in the TimTrack repository under two names.
SAME_RECORDING = ("muscle-us-timtrack/dataset2/range-of-motion/gastroc_range_of_motion_002.png",
                  "muscle-us-timtrack/single_images/example_ultrasound_image4.png")


def real_cohort(root: Path, sources: tuple[str, ...]) -> Path:
    """A factory cohort whose images.csv lists real files, one participant each."""
    make_cohort(root, seed=11, images=False, videos=False)
    ids = [row["participant_id"] for row in read_rows(root / "participants.csv")]
    listing = []
    for participant, source in zip(ids, sources):
        relative = f"images/{participant}_{Path(source).name}"
        (root / "images").mkdir(exist_ok=True)
        shutil.copyfile(real_file(source), root / relative)
        listing.append({"participant_id": participant, "path": relative})
    write_csv(root / "images.csv", listing)
    return root


def test_real_images_of_every_format_are_usable(tmp_path):
    code, report = validate_json(real_cohort(tmp_path / "cohort", REAL_IMAGES))
    assert code == 0, report["findings"]
    assert report["summary"]["images"] == len(REAL_IMAGES)


def test_truncated_real_images_are_caught(tmp_path):
    root = real_cohort(tmp_path / "cohort", REAL_IMAGES)
    for path in sorted((root / "images").iterdir()):
        truncate(path, keep=0.9)
    code, report = validate_json(root)
    assert code == 1
    assert [finding["row"] for finding in findings_at(report, severity="error", column="path")] == [2, 3, 4, 5]


def test_real_duplicate_recording_under_two_participants(tmp_path):
    code, report = validate_json(real_cohort(tmp_path / "cohort", SAME_RECORDING))
    assert code == 1
    finding = findings_at(report, severity="error", file="images.csv", row=3, column="path")[0]
    assert "same content as images.csv row 2" in finding["message"]
