"""`sarco measure run`: the CSV contract on real stills, a screenshot with the scanner's UI, a DICOM
with its pixel size, a video and a cine DICOM (frame rows + a session row), and a row per failure
status. A scripted model (tests/support/measure_models.py) makes every number predictable."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.sequence import Sequence
from typer.testing import CliRunner

from model_build.cli import app
from model_build.measure.run import COLUMNS
from testkit.cohort_factory import write_dicom
from tests.support.dicom import region
from tests.support.measure_models import scripted_model
from tests.support.real_data import real_file

runner = CliRunner()
REQUIRED = ("path", "frame", "muscle_thickness_px", "muscle_thickness_mm", "pennation_deg", "echo_intensity", "status")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return scripted_model(tmp_path_factory.mktemp("models") / "scripted")


@pytest.fixture(scope="module")
def one_band_model(tmp_path_factory) -> Path:
    return scripted_model(tmp_path_factory.mktemp("models") / "superficial-only", {1: (0.2, 0.25)})


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["measure", "run", *args])
    return result.exit_code, result.output


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def real_image(name: str) -> Path:
    return real_file(f"dl-track-aponeuroses/images/{name}")


def expected_px(height: int) -> float:
    """The scripted bands' gap on a crop of ``height`` rows. At the 64-pixel output the superficial
    band ends at row 16 and the deep one starts at row 45; resized bilinearly, a band's score (6)
    beats "other" (1) for 5/6 of the way to the next row's centre, so each edge moves 1/3 of an
    input row towards the other: (45 - 16 - 2/3) / 64 of the crop's height."""
    return (45 - 16 - 2 / 3) / 64 * height


def test_stills_give_a_row_each_with_the_contract_columns(model, tmp_path):
    out = tmp_path / "m.csv"
    code, output = run(str(model), str(real_image("img_00001.png")), str(real_image("img_00036.png")), "--out", str(out))
    assert code == 0, output
    columns, rows = read_csv(out)
    assert columns == list(COLUMNS) and set(REQUIRED) <= set(columns)
    assert [Path(r["path"]).name for r in rows] == ["img_00001.png", "img_00036.png"]
    for row in rows:
        assert row["frame"] == ""
        assert row["status"] in ("ok", "no_fascicle_orientation")
        x0, y0, x1, y1 = map(int, row["scan_box"].split())
        assert float(row["muscle_thickness_px"]) == pytest.approx(expected_px(y1 - y0), abs=2)
        assert row["muscle_thickness_mm"] == ""  # a PNG says nothing of its pixel size
        assert 0 <= float(row["echo_intensity"]) <= 255
        assert row["model"].startswith("aponeurosis-")
    assert "2 row(s), 2 with a thickness" in output


def test_a_screenshot_is_measured_inside_its_scan_region_and_a_pixel_size_gives_mm(model, tmp_path):
    out = tmp_path / "m.csv"
    screenshot = real_image("img_00003.png")  # 1234x688, scanner panels left and right of the scan
    code, output = run(str(model), str(screenshot), "--out", str(out), "--mm-per-pixel", "0.08")
    assert code == 0, output
    (row,) = read_csv(out)[1]
    x0, y0, x1, y1 = map(int, row["scan_box"].split())
    assert x0 > 150 and x1 < 1100  # the UI panels are not part of the crop
    assert float(row["muscle_thickness_px"]) == pytest.approx(expected_px(y1 - y0), abs=2)
    assert float(row["muscle_thickness_mm"]) == pytest.approx(0.08 * float(row["muscle_thickness_px"]))
    assert row["pixel_size_source"] == "listing"


def test_a_dicom_with_ultrasound_regions_gives_thickness_in_mm(model, tmp_path):
    grey = cv2.imread(str(real_image("img_00036.png")), cv2.IMREAD_GRAYSCALE)
    canvas = np.zeros((600, 700), np.uint8)  # the scan inside a black screen
    canvas[40:552, 100:612] = grey
    path = tmp_path / "scan.dcm"
    write_dicom(path, canvas)
    dataset = pydicom.dcmread(path)
    dataset.SequenceOfUltrasoundRegions = Sequence([region((100, 40, 612, 552), delta_cm=0.008)])
    dataset.save_as(path, enforce_file_format=True)
    out = tmp_path / "m.csv"
    code, output = run(str(model), str(path), "--out", str(out))
    assert code == 0, output
    (row,) = read_csv(out)[1]
    assert row["scan_box"] == "100 40 612 552" and row["frame"] == ""
    assert row["pixel_size_source"] == "dicom"
    px = float(row["muscle_thickness_px"])
    assert px == pytest.approx(expected_px(512), abs=2)
    assert float(row["muscle_thickness_mm"]) == pytest.approx(px * 0.12)  # PhysicalDeltaY 0.012 cm


def write_real_video(path: Path, frames: int = 9) -> None:
    grey = cv2.imread(str(real_image("img_00036.png")), cv2.IMREAD_GRAYSCALE)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (512, 512), isColor=False)
    for shift in range(frames):
        writer.write(np.roll(grey, shift * 3, axis=1))
    writer.release()


def test_a_video_gives_a_row_per_sampled_frame_and_a_session_row(model, tmp_path):
    video = tmp_path / "clip.avi"
    write_real_video(video, frames=9)
    out = tmp_path / "m.csv"
    code, output = run(str(model), str(video), "--out", str(out), "--frames", "5", "--depth-mm", "40")
    assert code == 0, output
    rows = read_csv(out)[1]
    assert [r["frame"] for r in rows] == ["0", "2", "4", "6", "8", "session"]
    frames, session = rows[:-1], rows[-1]
    thickness = [float(r["muscle_thickness_px"]) for r in frames]
    assert session["status"] == "ok" and session["frames_measured"] == "5" and session["frames_total"] == "5"
    assert float(session["muscle_thickness_px"]) == pytest.approx(float(np.median(thickness)))
    assert float(session["muscle_thickness_px_spread"]) >= 0.0
    # depth 40 mm over the 512-row scan region: 0.078 mm per pixel
    assert float(session["muscle_thickness_mm"]) == pytest.approx(float(session["muscle_thickness_px"]) * 40 / 512,
                                                                  rel=0.02)
    assert all(r["pixel_size_source"] == "depth" for r in frames)


def test_a_cine_dicom_is_a_recording(model, tmp_path):
    grey = cv2.imread(str(real_image("img_00036.png")), cv2.IMREAD_GRAYSCALE)
    path = tmp_path / "cine.dcm"
    write_dicom(path, np.stack([np.roll(grey, k, axis=1) for k in range(4)]))
    out = tmp_path / "m.csv"
    code, output = run(str(model), str(path), "--out", str(out))
    assert code == 0, output
    rows = read_csv(out)[1]
    assert [r["frame"] for r in rows] == ["0", "1", "2", "3", "session"]
    assert rows[-1]["frames_measured"] == "4"


def test_every_failure_gets_a_row_with_its_status(model, one_band_model, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    cv2.imwrite(str(folder / "blank.png"), np.zeros((300, 400), np.uint8))
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    (folder / "notes.txt").write_text("ignored: not an image", encoding="utf-8")
    out = tmp_path / "m.csv"
    code, output = run(str(model), str(folder), "--out", str(out))
    assert code == 0, output
    rows = {Path(r["path"]).name: r for r in read_csv(out)[1]}
    assert set(rows) == {"blank.png", "broken.jpg"}
    assert rows["blank.png"]["status"] == "no_scan_region" and rows["blank.png"]["muscle_thickness_px"] == ""
    assert rows["broken.jpg"]["status"] == "unreadable" and "convert it to PNG" in rows["broken.jpg"]["detail"]
    out = tmp_path / "one.csv"
    code, output = run(str(one_band_model), str(real_image("img_00001.png")), "--out", str(out))
    assert code == 0, output
    (row,) = read_csv(out)[1]
    assert row["status"] == "one_aponeurosis_missing" and row["muscle_thickness_px"] == ""


def test_a_session_with_no_measured_frame_says_so(one_band_model, tmp_path):
    video = tmp_path / "clip.avi"
    write_real_video(video, frames=3)
    out = tmp_path / "m.csv"
    code, output = run(str(one_band_model), str(video), "--out", str(out))
    assert code == 0, output
    session = read_csv(out)[1][-1]
    assert session["frame"] == "session" and session["status"] == "no_frames_measured"
    assert session["frames_measured"] == "0" and session["frames_total"] == "3"


def test_json_prints_the_rows(model, tmp_path):
    result = runner.invoke(app, ["measure", "run", str(model), str(real_image("img_00036.png")),
                                 "--out", str(tmp_path / "m.csv"), "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert rows[0]["path"].endswith("img_00036.png") and rows[0]["status"] in ("ok", "no_fascicle_orientation")


def test_errors_name_the_input_and_the_fix(model, tmp_path):
    code, output = run(str(model), str(tmp_path / "absent.png"), "--out", str(tmp_path / "m.csv"))
    assert code == 1 and "absent.png: no such file or folder" in output
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output = run(str(model), str(empty), "--out", str(tmp_path / "m.csv"))
    assert code == 1 and "no image, DICOM or video in this folder" in output
    code, output = run(str(model), "--out", str(tmp_path / "m.csv"))
    assert code == 1 and "no image, DICOM or video given" in output
    assert not (tmp_path / "m.csv").exists()


def test_a_broken_model_is_refused_with_its_file_named(model, tmp_path, monkeypatch):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "aponeurosis.json").write_text("{}", encoding="utf-8")
    code, output = run(str(broken), str(real_image("img_00036.png")), "--out", str(tmp_path / "m.csv"))
    assert code == 1 and "aponeurosis.json: content differs from MANIFEST.sha256" in output
    monkeypatch.setenv("SARCO_APONEUROSIS_MODEL", str(tmp_path / "nowhere"))
    code, output = run(str(real_image("img_00036.png")), "--out", str(tmp_path / "m.csv"))
    assert code == 1 and "no measurement model there" in output


def test_help_names_the_commands_and_model_is_optional():
    result = runner.invoke(app, ["measure", "--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in ("train", "run", "evaluate"))
    help_text = " ".join(runner.invoke(app, ["measure", "run", "--help"]).output.split())
    assert "MODEL (a folder with aponeurosis.json) may be left out" in help_text
