"""`sarco validate`: one test per check of images.csv, videos.csv and the media files.

The factory cohort's images.csv lists two images per participant (rows 2-13, formats cycling
PNG, JPEG, BMP, TIFF, DICOM) and videos.csv one clip for P001-P005 (rows 2-6, MP4 / AVI).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from testkit.cohort_factory import (
    edit_cell,
    findings_at,
    make_cohort,
    read_rows,
    speckle,
    truncate,
    validate_json,
    write_csv,
    write_dicom,
)

IMAGES, VIDEOS = "images.csv", "videos.csv"


@pytest.fixture
def cohort(tmp_path):
    return make_cohort(tmp_path / "cohort", seed=2)


def only(findings: list[dict]) -> dict:
    assert len(findings) == 1, findings
    return findings[0]


def image_row(cohort, suffix: str) -> int:
    """Spreadsheet row of the first image with this suffix."""
    return next(index for index, path in enumerate(cohort.images) if path.suffix == suffix) + 2


def test_unknown_participant_in_images(cohort):
    edit_cell(cohort.root / IMAGES, row=5, column="participant_id", value="P999")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    finding = only(findings_at(report, file=IMAGES, row=5, column="participant_id"))
    assert "P999 is not in participants.csv" in finding["message"]
    assert "add the participant" in finding["hint"]


def test_unknown_participant_in_videos(cohort):
    edit_cell(cohort.root / VIDEOS, row=2, column="participant_id", value="P0001")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    assert only(findings_at(report, file=VIDEOS, row=2, column="participant_id"))["severity"] == "error"


def test_missing_image(cohort):
    cohort.images[3].unlink()
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=IMAGES, row=5, column="path"))
    assert finding["message"] == f"images/{cohort.images[3].name}: file not found"
    assert "correct its path" in finding["hint"]


def test_missing_image_with_other_letter_case(cohort):
    image = cohort.images[0]
    image.rename(image.with_name(image.name.upper()))
    code, report = validate_json(cohort.root)
    assert code == 1
    assert "correct the letter case" in only(findings_at(report, file=IMAGES, row=2, column="path"))["hint"]


def test_media_not_checked_with_no_media(cohort):
    cohort.images[0].unlink()
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 0
    assert report["media_checked"] is False and report["findings"] == []


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".dcm"])
def test_truncated_image(cohort, suffix):
    row = image_row(cohort, suffix)
    truncate(cohort.images[row - 2], keep=0.6)
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=IMAGES, row=row, column="path"))
    assert "truncated" in finding["message"] or "corrupt" in finding["message"]
    assert "copy the file again" in finding["hint"] or "export the file again" in finding["hint"]


def test_png_missing_only_its_end_marker(cohort):
    """Pillow decodes such a PNG without complaint; the missing IEND chunk gives it away."""
    row = image_row(cohort, ".png")
    path = cohort.images[row - 2]
    path.write_bytes(path.read_bytes()[:-12])
    code, report = validate_json(cohort.root)
    assert code == 1
    assert "no end marker" in only(findings_at(report, file=IMAGES, row=row, column="path"))["message"]


def test_garbage_bytes_named_png(cohort):
    row = image_row(cohort, ".png")
    cohort.images[row - 2].write_bytes(np.random.default_rng(0).bytes(2000))
    code, report = validate_json(cohort.root)
    assert code == 1
    assert "is not a PNG image" in only(findings_at(report, file=IMAGES, row=row, column="path"))["message"]


def test_garbage_bytes_named_dcm(cohort):
    row = image_row(cohort, ".dcm")
    cohort.images[row - 2].write_bytes(np.random.default_rng(0).bytes(2000))
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=IMAGES, row=row, column="path"))
    assert "not a DICOM file" in finding["message"] and "convert it to PNG" in finding["hint"]


def test_empty_image_file(cohort):
    cohort.images[1].write_bytes(b"")
    code, report = validate_json(cohort.root)
    assert code == 1
    assert "empty (0 bytes)" in only(findings_at(report, file=IMAGES, row=3, column="path"))["message"]


def test_unsupported_image_format(cohort):
    (cohort.root / "images" / "scan.gif").write_bytes(b"GIF89a")
    edit_cell(cohort.root / IMAGES, row=4, column="path", value="images/scan.gif")
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=IMAGES, row=4, column="path"))
    assert "'.gif' is not a supported image format" in finding["message"]
    assert ".png" in finding["hint"] and ".dcm" in finding["hint"] and ".tiff" in finding["hint"]


@pytest.mark.parametrize("path", ["../outside.png", "images/../../outside.png", "/data/scan.png",
                                  "C:/data/scan.png"])
def test_path_outside_the_cohort_folder(cohort, path):
    edit_cell(cohort.root / IMAGES, row=2, column="path", value=path)
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=IMAGES, row=2, column="path"))
    assert "leaves the cohort folder" in finding["message"] or "is absolute" in finding["message"]
    assert "copy the file into the cohort folder" in finding["hint"]


def test_path_with_backslashes(cohort):
    edit_cell(cohort.root / IMAGES, row=2, column="path", value=r"images\P001_long.png")
    code, report = validate_json(cohort.root)
    assert code == 1
    assert only(findings_at(report, file=IMAGES, row=2, column="path"))["hint"] == "write 'images/P001_long.png'"


def test_same_image_under_two_participants(cohort):
    shutil.copyfile(cohort.images[0], cohort.images[2].with_suffix(".png"))
    edit_cell(cohort.root / IMAGES, row=4, column="path", value=f"images/{cohort.images[2].stem}.png")
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=IMAGES, row=4, column="path"))
    assert "same content as images.csv row 2" in finding["message"]
    assert "belongs to participant P001, not P002" in finding["message"]
    assert "belongs to one participant" in finding["hint"]


def test_same_image_twice_for_one_participant_is_a_warning(cohort):
    rows = read_rows(cohort.root / IMAGES)
    write_csv(cohort.root / IMAGES, rows + [dict(rows[0])])
    code, report = validate_json(cohort.root)
    assert code == 0
    finding = only(findings_at(report, file=IMAGES, row=len(rows) + 2, column="path"))
    assert finding["severity"] == "warning" and "same participant" in finding["message"]


def test_view_not_in_levels(cohort):
    edit_cell(cohort.root / IMAGES, row=3, column="view", value="oblique")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    assert "longitudinal, transverse" in only(findings_at(report, file=IMAGES, row=3, column="view"))["hint"]


def test_depth_in_centimetres(cohort):
    edit_cell(cohort.root / IMAGES, row=3, column="depth_mm", value="4")
    code, report = validate_json(cohort.root, "--no-media")
    assert code == 1
    assert "looks like cm" in only(findings_at(report, file=IMAGES, row=3, column="depth_mm"))["hint"]


def test_missing_video(cohort):
    cohort.videos[2].unlink()
    code, report = validate_json(cohort.root)
    assert code == 1
    assert "file not found" in only(findings_at(report, file=VIDEOS, row=4, column="path"))["message"]


def test_truncated_avi_loses_frames(cohort):
    avi = next(index for index, path in enumerate(cohort.videos) if path.suffix == ".avi")
    truncate(cohort.videos[avi], keep=0.5)
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=VIDEOS, row=avi + 2, column="path"))
    assert "truncated or corrupt video" in finding["message"] and "of 12 frames decode" in finding["message"]


def test_truncated_mp4_cannot_be_opened(cohort):
    mp4 = next(index for index, path in enumerate(cohort.videos) if path.suffix == ".mp4")
    truncate(cohort.videos[mp4], keep=0.7)
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=VIDEOS, row=mp4 + 2, column="path"))
    assert "cannot be opened as a video" in finding["message"]
    assert "export the recording again" in finding["hint"]


def test_zero_length_video(cohort):
    cohort.videos[0].write_bytes(b"")
    code, report = validate_json(cohort.root)
    assert code == 1
    assert "empty (0 bytes)" in only(findings_at(report, file=VIDEOS, row=2, column="path"))["message"]


def test_multi_frame_dicom_video(cohort):
    rng = np.random.default_rng(3)
    clip = cohort.root / "videos" / "P001_cine.dcm"
    write_dicom(clip, np.stack([speckle(rng) for _ in range(6)]))
    rows = read_rows(cohort.root / VIDEOS)
    write_csv(cohort.root / VIDEOS, rows + [dict(rows[0], path="videos/P001_cine.dcm")])
    code, report = validate_json(cohort.root)
    assert code == 0, report["findings"]
    truncate(clip, keep=0.8)
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=VIDEOS, row=len(rows) + 2, column="path"))
    assert "corrupt DICOM" in finding["message"]


def test_single_frame_dicom_listed_as_video(cohort):
    dicom = next(path for path in cohort.images if path.suffix == ".dcm")
    rows = read_rows(cohort.root / VIDEOS)
    write_csv(cohort.root / VIDEOS, rows + [dict(rows[0], participant_id=dicom.name[:4],
                                                 path=f"images/{dicom.name}")])
    code, report = validate_json(cohort.root)
    assert code == 1
    assert "list it in images.csv" in only(findings_at(report, severity="error", file=VIDEOS))["hint"]


def test_jpeg_content_named_png_is_a_warning(cohort):
    row = image_row(cohort, ".png")
    Image.fromarray(speckle(np.random.default_rng(5))).save(cohort.images[row - 2], format="JPEG")
    code, report = validate_json(cohort.root)
    assert code == 0
    finding = only(findings_at(report, file=IMAGES, row=row, column="path"))
    assert finding["severity"] == "warning" and "holds a JPEG image, not PNG" in finding["message"]


@pytest.mark.parametrize("linked", ["file", "folder"])
def test_image_linked_from_outside_the_cohort_is_an_error(cohort, tmp_path, linked):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    if linked == "file":  # a real PNG outside the folder, linked in under the listed name
        shutil.move(cohort.images[0], outside / cohort.images[0].name)
        cohort.images[0].symlink_to(outside / cohort.images[0].name)
    else:  # the whole images folder is a link: every listed image lies outside
        shutil.move(cohort.root / "images", outside / "images")
        (cohort.root / "images").symlink_to(outside / "images")
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=IMAGES, row=2, column="path"))
    assert finding["message"] == (f"images/{cohort.images[0].name}: is a link to "
                                  f"{(outside / 'images' if linked == 'folder' else outside).resolve()}"
                                  f"/{cohort.images[0].name}, outside the cohort folder")
    assert "copy the file into the cohort folder" in finding["hint"]
    assert report["media"][0]["described"] is False


def test_link_to_a_system_file_is_refused_without_reading_it(cohort):
    cohort.images[0].unlink()
    cohort.images[0].symlink_to("/etc/passwd")
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=IMAGES, row=2, column="path"))
    assert "is a link to /etc/passwd, outside the cohort folder" in finding["message"]


def test_link_inside_the_cohort_is_fine(cohort):
    (cohort.root / "originals").mkdir()
    shutil.move(cohort.images[0], cohort.root / "originals" / cohort.images[0].name)
    cohort.images[0].symlink_to(cohort.root / "originals" / cohort.images[0].name)
    code, report = validate_json(cohort.root)
    assert code == 0, report["findings"]
    assert report["media"][0]["described"] is True


def test_named_pipe_is_not_opened(cohort):
    cohort.images[0].unlink()
    os.mkfifo(cohort.images[0])  # opening it for reading would wait for a writer forever
    code, report = validate_json(cohort.root)
    assert code == 1
    finding = only(findings_at(report, file=IMAGES, row=2, column="path"))
    assert finding["message"] == f"images/{cohort.images[0].name}: is a named pipe (FIFO), not a file: it is not opened"
    assert "replace it with the file itself" in finding["hint"]

