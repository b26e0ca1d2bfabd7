"""`sarco validate` on what each image and video shows: format, size, frames, scan box, pixel size,
burned-in text (the media table, its summary findings and the human summary lines).

Files are real: PNG screens and AVI clips written by OpenCV (the synthetic scanner screen of
tests/sarco_core/test_scan_region.py, with a name and date burned into its header), and DICOM written by
pydicom with SequenceOfUltrasoundRegions (tests/model_build/test_dicom.py).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian
from typer.testing import CliRunner

from model_build.cohort.media import DESCRIBED
from model_build.imaging_report import describe_media
from sarco_core.imaging import box_iou
from testkit.cohort_factory import (
    findings_at,
    make_cohort,
    read_rows,
    truncate,
    validate_app,
    validate_json,
    write_csv,
)
from tests.support.dicom import new_dataset, region, save, speckle
from tests.support.real_data import real_file
from tests.support.scanner_screens import screen

IMAGES, VIDEOS = "images.csv", "videos.csv"
REGION = (20, 10, 140, 100)  # the DICOM files' B-mode region; 0.008 cm x 0.012 cm per pixel
DEPTH_MM = 60.0
LISTED_MM = 0.08
VIDEO_FRAMES = 6


def base_cohort(root: Path) -> Path:
    """Participants and schema from the factory; the listings are written by each test."""
    make_cohort(root, seed=21, images=False, videos=False)
    return root


def write_screen(path: Path, seed: int) -> tuple[int, int, int, int]:
    frame, box = screen(seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), frame)
    return box


def write_region_dicom(path: Path, frames: int = 1, burned_in: str = "NO") -> None:
    ds = new_dataset(120, 160, frames=frames)
    pixels = np.stack([speckle((120, 160), seed) for seed in range(frames)]) if frames > 1 else speckle((120, 160))
    ds.set_pixel_data(pixels, "MONOCHROME2", 8)
    ds.SequenceOfUltrasoundRegions = Sequence([region(REGION, delta_cm=0.008)])
    ds.BurnedInAnnotation = burned_in
    path.parent.mkdir(parents=True, exist_ok=True)
    save(ds, path)


def write_screen_clip(path: Path, seed: int) -> tuple[int, int, int, int]:
    frame, box = screen(seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
    for index in range(VIDEO_FRAMES):
        writer.write(np.zeros_like(frame) if index == 0 else frame)  # a recording often starts blank
    writer.release()
    return box


def invoke(*args: str):
    """Human output on a wide terminal (Rich wraps at 80 columns otherwise)."""
    result = CliRunner().invoke(validate_app(), ["validate", *args], env={"COLUMNS": "240"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One cohort holding every kind of file; validated once, asserted on by several tests.

    images.csv rows: 2 PNG screen, no pixel size; 3 DICOM with a region; 4 screen with
    mm_per_pixel; 5 screen with depth_mm; 6 black PNG. videos.csv rows: 2 AVI screen clip,
    3 multi-frame DICOM with a region.
    """
    root = base_cohort(tmp_path_factory.mktemp("mixed") / "cohort")
    boxes = {
        2: write_screen(root / "images/screen.png", seed=1),
        4: write_screen(root / "images/screen_mm.png", seed=2),
        5: write_screen(root / "images/screen_depth.png", seed=3),
    }
    write_region_dicom(root / "images/regions.dcm", burned_in="YES")
    assert cv2.imwrite(str(root / "images/black.png"), np.zeros((300, 400), np.uint8))
    write_csv(root / IMAGES, [
        {"participant_id": "P001", "path": "images/screen.png", "mm_per_pixel": "", "depth_mm": ""},
        {"participant_id": "P002", "path": "images/regions.dcm", "mm_per_pixel": "", "depth_mm": ""},
        {"participant_id": "P003", "path": "images/screen_mm.png", "mm_per_pixel": str(LISTED_MM), "depth_mm": ""},
        {"participant_id": "P004", "path": "images/screen_depth.png", "mm_per_pixel": "", "depth_mm": str(DEPTH_MM)},
        {"participant_id": "P005", "path": "images/black.png", "mm_per_pixel": "", "depth_mm": ""},
    ])
    clip_box = write_screen_clip(root / "videos/screen.avi", seed=4)
    write_region_dicom(root / "videos/cine.dcm", frames=3)
    write_csv(root / VIDEOS, [{"participant_id": "P001", "path": "videos/screen.avi"},
                              {"participant_id": "P002", "path": "videos/cine.dcm"}])
    code, report = validate_json(root)
    media = {(entry["file"], entry["row"]): entry for entry in report["media"]}
    return root, code, report, media, boxes, clip_box


def test_warnings_and_infos_leave_the_cohort_usable(mixed):
    _, code, report, *_ = mixed
    assert code == 0 and report["ok"] is True, findings_at(report, severity="error")
    assert report["counts"]["warning"] >= 1


def test_every_listed_file_has_one_row_in_the_media_table(mixed):
    _, _, report, media, *_ = mixed
    assert sorted(media) == [(IMAGES, row) for row in range(2, 7)] + [(VIDEOS, 2), (VIDEOS, 3)]
    assert set(media[(IMAGES, 2)]) == {
        "file", "row", "participant_id", "path", "described", "format", "width", "height", "frames", "scan_box",
        "scan_box_source", "mm_per_pixel", "pixel_size_source", "burned_in_text", "burned_in_annotation_flag"}
    assert media[(IMAGES, 3)]["participant_id"] == "P002" and media[(IMAGES, 3)]["path"] == "images/regions.dcm"


def test_png_screen(mixed):
    _, _, _, media, boxes, _ = mixed
    png = media[(IMAGES, 2)]
    assert png["described"] is True and png["format"] == "png"
    assert (png["width"], png["height"], png["frames"]) == (1280, 720, 1)
    assert png["scan_box_source"] == "detected" and box_iou(tuple(png["scan_box"]), boxes[2]) >= 0.9
    assert png["mm_per_pixel"] is None and png["pixel_size_source"] is None
    assert png["burned_in_text"] is True  # the header line with a name and a date
    assert png["burned_in_annotation_flag"] is None


def test_dicom_with_ultrasound_regions(mixed):
    _, _, _, media, *_ = mixed
    dicom = media[(IMAGES, 3)]
    assert dicom["format"] == "dicom" and (dicom["width"], dicom["height"], dicom["frames"]) == (160, 120, 1)
    assert dicom["scan_box"] == list(REGION) and dicom["scan_box_source"] == "dicom_region"
    assert dicom["pixel_size_source"] == "dicom" and dicom["mm_per_pixel"] == pytest.approx([0.08, 0.12])
    assert dicom["burned_in_text"] is True and dicom["burned_in_annotation_flag"] is True
    cine = media[(VIDEOS, 3)]
    assert cine["format"] == "dicom" and cine["frames"] == 3 and cine["pixel_size_source"] == "dicom"
    assert cine["burned_in_annotation_flag"] is False


def test_video_clip(mixed):
    _, _, _, media, _, clip_box = mixed
    clip = media[(VIDEOS, 2)]
    assert clip["format"] == "video" and (clip["width"], clip["height"]) == (1280, 720)
    assert clip["frames"] == VIDEO_FRAMES
    # The first frame is blank: the box comes from a later one, and so does the text (name, date).
    assert clip["scan_box_source"] == "detected" and box_iou(tuple(clip["scan_box"]), clip_box) >= 0.9
    assert clip["mm_per_pixel"] is None
    assert clip["burned_in_text"] is True


def test_validation_describes_each_file_as_describe_media_does(mixed):
    """Validation describes the pixels its integrity check already decoded (a video's probe frames
    kept while decoding it to the end); describe_media reads the file itself. Same answers."""
    root, _, _, media, *_ = mixed
    listed = {(IMAGES, 4): {"mm_per_pixel": LISTED_MM}, (IMAGES, 5): {"depth_mm": DEPTH_MM}}
    for place, entry in media.items():
        own = describe_media(root / entry["path"], **listed.get(place, {}))
        assert {key: entry[key] for key in DESCRIBED} == {key: own[key] for key in DESCRIBED}, place


def test_pixel_size_from_the_listing_columns(mixed):
    _, _, _, media, *_ = mixed
    listed = media[(IMAGES, 4)]
    assert listed["pixel_size_source"] == "listing" and listed["mm_per_pixel"] == pytest.approx([LISTED_MM] * 2)
    by_depth = media[(IMAGES, 5)]
    height = by_depth["scan_box"][3] - by_depth["scan_box"][1]
    assert by_depth["pixel_size_source"] == "depth"
    assert by_depth["mm_per_pixel"] == pytest.approx([DEPTH_MM / height] * 2)


def test_unknown_pixel_size_is_one_warning_per_listing_naming_the_rows(mixed):
    _, _, report, *_ = mixed
    [images] = findings_at(report, file=IMAGES, column="mm_per_pixel")
    assert images["severity"] == "warning" and images["row"] is None
    assert "pixel size unknown for 2 of 5 files (rows 2, 6)" in images["message"]
    assert "mm_per_pixel" in images["hint"] and "depth_mm" in images["hint"] and "DICOM" in images["hint"]
    [videos] = findings_at(report, file=VIDEOS, column="mm_per_pixel")
    assert "pixel size unknown for 1 of 2 files (row 2)" in videos["message"]


def test_black_image_has_no_scan_box(mixed):
    _, _, report, media, *_ = mixed
    black = media[(IMAGES, 6)]
    assert black["described"] is True and black["scan_box"] is None and black["scan_box_source"] is None
    [finding] = findings_at(report, file=IMAGES, row=6, column="path")
    assert finding["severity"] == "warning"
    assert finding["message"].startswith("images/black.png: no scan box found")
    assert "B-mode" in finding["hint"] and "crop" in finding["hint"]
    # Only the black image lacks a scan box.
    assert [entry["row"] for entry in media.values() if entry["scan_box"] is None] == [6]


def test_burned_in_text_is_one_info_per_listing(mixed):
    _, _, report, media, *_ = mixed
    rows = [row for (file, row), entry in sorted(media.items()) if file == IMAGES and entry["burned_in_text"]]
    assert {2, 3, 4, 5} <= set(rows)  # three screens with a header line, one DICOM flagged YES
    [info] = findings_at(report, severity="info", file=IMAGES)
    assert f"burned-in text or markers in {len(rows)} of 5 files" in info["message"]
    assert "sarco deidentify" in info["hint"]


def test_summary_counts_match_the_media_table(mixed):
    _, _, report, media, *_ = mixed
    for file in (IMAGES, VIDEOS):
        entries = [entry for (listing, _), entry in media.items() if listing == file]
        assert report["summary"]["media"][file] == {
            "files": len(entries), "described": len(entries),
            "scan_box_found": sum(entry["scan_box"] is not None for entry in entries),
            "pixel_size_known": sum(entry["mm_per_pixel"] is not None for entry in entries),
            "burned_in_text": sum(entry["burned_in_text"] for entry in entries)}
    assert report["summary"]["media"][IMAGES]["scan_box_found"] == 4


def test_human_output_is_a_summary_and_the_table_on_request(mixed):
    root, _, report, *_ = mixed
    counts = report["summary"]["media"][IMAGES]
    line = (f"images.csv: 5 files; scan box found {counts['scan_box_found']}/5, "
            f"pixel size known {counts['pixel_size_known']}/5, burned-in text {counts['burned_in_text']}")
    plain = invoke(str(root))
    assert plain.exit_code == 0 and line in plain.stdout
    assert "screen_depth.png" not in plain.stdout  # no per-file lines without --media-table
    table = invoke(str(root), "--media-table")
    assert table.exit_code == 0 and line in table.stdout
    for text in ("images/screen_depth.png", "videos/cine.dcm", "1280x720", "(dicom_region)", "(listing)",
                 "(depth)", "not found", "unknown"):
        assert text in table.stdout, text


def test_file_that_decodes_but_cannot_be_read_for_training(tmp_path):
    """An HSV DICOM decodes with pydicom, but the image pipeline refuses its colour space."""
    root = base_cohort(tmp_path / "cohort")
    ds = new_dataset(40, 50)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "HSV", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.zeros((40, 50, 3), np.uint8).tobytes()
    (root / "images").mkdir()
    save(ds, root / "images/hsv.dcm")
    write_screen(root / "images/cut.png", seed=5)
    truncate(root / "images/cut.png", keep=0.5)
    write_csv(root / IMAGES, [{"participant_id": "P001", "path": "images/hsv.dcm"},
                              {"participant_id": "P002", "path": "images/cut.png"}])
    code, report = validate_json(root)
    assert code == 1
    [hsv] = findings_at(report, file=IMAGES, row=2, column="path")
    assert hsv["severity"] == "error"
    assert hsv["message"].startswith("images/hsv.dcm: photometric interpretation 'HSV' is not supported")
    assert hsv["hint"] == "export the image as RGB or grey"
    assert "truncated" in findings_at(report, file=IMAGES, row=3, column="path")[0]["message"]
    for entry in report["media"]:  # neither is described; the table still lists both
        assert entry["described"] is False and entry["scan_box"] is None and entry["width"] is None
    assert [entry["format"] for entry in report["media"]] == ["dicom", "png"]
    assert report["summary"]["media"][IMAGES] == {"files": 2, "described": 0, "scan_box_found": 0,
                                                  "pixel_size_known": 0, "burned_in_text": 0}
    assert findings_at(report, column="mm_per_pixel") == []  # nothing described, nothing unknown
    assert "images.csv: 2 files (2 not readable); scan box found 0/0" in invoke(str(root)).stdout


def test_long_row_lists_are_shortened(tmp_path):
    root = base_cohort(tmp_path / "cohort")
    (root / "images").mkdir()
    rows = []
    for index in range(8):  # black images of different sizes: no scan box, no duplicate content
        relative = f"images/black_{index}.png"
        assert cv2.imwrite(str(root / relative), np.zeros((100 + index, 120), np.uint8))
        rows.append({"participant_id": "P001", "path": relative})
    write_csv(root / IMAGES, rows)
    code, report = validate_json(root)
    assert code == 0
    [finding] = findings_at(report, file=IMAGES, column="mm_per_pixel")
    assert "pixel size unknown for 8 of 8 files (rows 2, 3, 4, 5, 6 and 3 more)" in finding["message"]
    assert len(findings_at(report, severity="warning", file=IMAGES, column="path")) == 8


def test_invalid_pixel_size_cell_is_an_error_and_not_used(tmp_path):
    root = base_cohort(tmp_path / "cohort")
    write_screen(root / "images/screen.png", seed=6)
    write_csv(root / IMAGES, [{"participant_id": "P001", "path": "images/screen.png", "mm_per_pixel": "0,08"}])
    code, report = validate_json(root)
    assert code == 1
    assert findings_at(report, severity="error", file=IMAGES, row=2, column="mm_per_pixel")
    assert report["media"][0]["mm_per_pixel"] is None
    assert findings_at(report, severity="warning", file=IMAGES, column="mm_per_pixel")


def test_no_media_leaves_the_table_empty(mixed):
    root, *_ = mixed
    code, report = validate_json(root, "--no-media")
    assert code == 0 and report["media"] == [] and "media" not in report["summary"]


def test_real_images_are_described(tmp_path):
    """Real exports (tests/data/real): a GE crop, a Telemed screenshot, a DeepACSA panorama."""
    sources = ("muscle-us-timtrack/dataset1/S1/S1_L20_step_025.png",
               "muscle-us-timtrack/dataset3/030/p6_isokinetic030_01_push_01_10.jpg",
               "muscle-us-deepacsa/rectus_img_55.tif")
    root = base_cohort(tmp_path / "cohort")
    (root / "images").mkdir()
    participants = [row["participant_id"] for row in read_rows(root / "participants.csv")]
    rows = []
    for participant, source in zip(participants, sources):
        relative = f"images/{Path(source).name}"
        (root / relative).write_bytes(real_file(source).read_bytes())
        rows.append({"participant_id": participant, "path": relative})
    write_csv(root / IMAGES, rows)
    code, report = validate_json(root)
    assert code == 0, findings_at(report, severity="error")
    assert [entry["format"] for entry in report["media"]] == ["png", "jpeg", "tiff"]
    assert all(entry["scan_box"] is not None for entry in report["media"])
    assert "pixel size unknown for 3 of 3 files" in findings_at(report, column="mm_per_pixel")[0]["message"]
    assert report["media"][2]["burned_in_text"] is True  # DeepACSA's institution and date header


def test_fault_in_the_image_analysis_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    """A bug in describe_pixels on one file must not stop the validation of the others."""
    root = base_cohort(tmp_path / "cohort")
    write_screen(root / "images/screen.png", seed=7)
    write_csv(root / IMAGES, [{"participant_id": "P001", "path": "images/screen.png"}])

    def broken(*args, **kwargs):
        raise IndexError("index 144 is out of bounds for axis 1 with size 144")

    monkeypatch.setattr("model_build.cohort.media.describe_pixels", broken)
    code, report = validate_json(root)
    assert code == 0
    [finding] = findings_at(report, file=IMAGES, row=2, column="path")
    assert finding["severity"] == "warning" and "could not be described (IndexError" in finding["message"]
    assert "report it" in finding["hint"]
    assert report["media"][0]["described"] is False
