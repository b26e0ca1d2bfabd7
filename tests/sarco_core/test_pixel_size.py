"""Physical pixel size: resampling to a fixed mm per pixel, the sources, and depth-scale ticks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pydicom.sequence import Sequence

from model_build.imaging_report import MediaError, describe_media
from sarco_core.imaging import (
    PixelSize,
    ScannerProfile,
    box_iou,
    find_depth_ticks,
    first_known,
    pixel_size_from_depth,
    resample_to_mm,
)
from tests.support.dicom import new_dataset, region, save, speckle
from tests.support.real_data import real_file
from tests.support.scanner_screens import screen

TARGET_MM = 0.1
APONEUROSES_MM = (6.0, 24.3)  # superficial and deep aponeurosis depths: an 18.3 mm thick muscle


def phantom(mm_per_pixel: float, seed: int, width_mm: float = 40.0, depth_mm: float = 32.0) -> np.ndarray:
    """A muscle between two bright aponeuroses over speckle, rendered at a given pixel size.

    The image is sampled from the continuous scene at pixel centres, as a scanner with that
    pixel size would show it.
    """
    rows, columns = round(depth_mm / mm_per_pixel), round(width_mm / mm_per_pixel)
    depth = (np.arange(rows) + 0.5) * mm_per_pixel
    lines = sum(np.exp(-((depth - centre) ** 2) / (2 * 0.35 ** 2)) for centre in APONEUROSES_MM)
    rng = np.random.default_rng(seed)
    noise = rng.rayleigh(25.0, size=(rows, columns))
    return np.clip(60 + noise + 170 * lines[:, None], 0, 255).astype(np.uint8)


def thickness_px(image: np.ndarray) -> int:
    """Distance between the two aponeurosis peaks of the mean depth profile, in pixels."""
    profile = image.astype(float).mean(axis=1)
    middle = len(profile) // 2
    return int(np.argmax(profile[middle:]) + middle - np.argmax(profile[:middle]))


@pytest.mark.parametrize("sizes", [(0.06, 0.13), (0.045, 0.1), (0.08, 0.15)])
def test_same_muscle_at_two_pixel_sizes_has_the_same_thickness_after_resampling(sizes):
    fine, coarse = (resample_to_mm(phantom(size, seed), size, TARGET_MM) for seed, size in enumerate(sizes))
    expected = (APONEUROSES_MM[1] - APONEUROSES_MM[0]) / TARGET_MM
    assert abs(thickness_px(fine) - thickness_px(coarse)) <= 1
    assert abs(thickness_px(fine) - expected) <= 1
    raw = [thickness_px(phantom(size, 0)) for size in sizes]
    assert abs(raw[0] - raw[1]) > 10  # without resampling the scanner shows through


def test_resampled_size_follows_the_physical_size():
    image = np.zeros((400, 300), np.uint8)
    assert resample_to_mm(image, 0.05, 0.1).shape == (200, 150)
    assert resample_to_mm(image, (0.2, 0.1), 0.1).shape == (400, 600)
    assert resample_to_mm(image, PixelSize(0.1, 0.05, "dicom"), 0.1).shape == (200, 300)
    assert resample_to_mm(image, 0.1, 0.1) is image
    colour = np.zeros((100, 80, 3), np.uint8)
    assert resample_to_mm(colour, 0.2, 0.1).shape == (200, 160, 3)


def test_pixel_size_checks_and_sources():
    with pytest.raises(ValueError, match="positive"):
        PixelSize(0.0, 0.1, "dicom")
    with pytest.raises(ValueError, match="unknown pixel size source"):
        PixelSize(0.1, 0.1, "guess")
    with pytest.raises(ValueError):
        resample_to_mm(np.zeros((20, 20), np.uint8), -1.0, 0.1)
    from_depth = pixel_size_from_depth(40.0, (111, 60, 689, 521))
    assert from_depth.source == "depth" and from_depth.mm_per_pixel_y == pytest.approx(40.0 / 461)
    scanner = ScannerProfile("GE Logiq E9", mm_per_pixel=0.0868)
    assert first_known(None, None, scanner.pixel_size(), from_depth).source == "scanner"
    assert first_known(None, ScannerProfile("unknown").pixel_size()) is None


def test_ticks_on_a_synthetic_ruler():
    frame = np.full((600, 800), 50, np.uint8)
    frame[50:550, 200:700] = 120
    cv2.line(frame, (150, 50), (150, 549), 200, 1)
    for y in np.arange(50, 550, 24.5):  # minor ticks, 2.5 mm
        cv2.line(frame, (150, int(round(y))), (153, int(round(y))), 200, 1)
    for y in np.arange(50, 550, 98.0):  # major ticks, 10 mm, drawn longer
        cv2.line(frame, (150, int(y)), (158, int(y)), 200, 2)
    ticks = find_depth_ticks(frame, (200, 50, 700, 550))
    assert ticks.spacing_px == pytest.approx(98.0, abs=1.0)
    assert ticks.pixel_size(10.0).mm_per_pixel_x == pytest.approx(10.0 / 98.0, rel=0.01)
    assert find_depth_ticks(np.full((300, 400), 50, np.uint8), (100, 50, 300, 250)) is None


# Major tick rows read off the screens by hand (mean row of each tick mark):
HAND_READ_TICKS = {
    "muscle-us-timtrack/dataset2/jumping/gastroc_jumping_048.png": ((111, 60, 689, 521), [59.5, 175.5, 290.5, 406.5, 521.5]),
    "muscle-us-timtrack/dataset4/SampleA/GM_T_1.png": ((237, 43, 997, 686), [43.0, 168.5, 294.5, 420.5, 547.5, 673.5]),
    "muscle-us-deepacsa/rectus_img_55.tif": ((182, 116, 972, 731), [116.5, 212.5, 309.0, 406.0, 503.0]),
}


@pytest.mark.parametrize("relative", list(HAND_READ_TICKS))
def test_ticks_on_real_screens_match_the_hand_read_scale(relative):
    box, rows = HAND_READ_TICKS[relative]
    ticks = find_depth_ticks(cv2.imread(str(real_file(relative))), box)
    assert ticks.spacing_px == pytest.approx(float(np.mean(np.diff(rows))), abs=1.0)


def test_telemed_ticks_agree_with_its_printed_depth():
    """The Telemed ruler is labelled 0 and 50 mm at its first and last major tick."""
    box, rows = HAND_READ_TICKS["muscle-us-timtrack/dataset4/SampleA/GM_T_1.png"]
    ticks = find_depth_ticks(cv2.imread(str(real_file("muscle-us-timtrack/dataset4/SampleA/GM_T_1.png"))), box)
    assert ticks.pixel_size(10.0).mm_per_pixel_y == pytest.approx(50.0 / (rows[-1] - rows[0]), rel=0.01)


# ---- describe_media: what `sarco validate` reports per file ---------------------------------


def test_describe_dicom_uses_its_region_and_pixel_size(tmp_path):
    ds = new_dataset(120, 160, frames=3)
    ds.set_pixel_data(np.stack([speckle((120, 160), seed) for seed in range(3)]), "MONOCHROME2", 8)
    ds.SequenceOfUltrasoundRegions = Sequence([region((20, 10, 140, 100), delta_cm=0.008)])
    ds.BurnedInAnnotation = "YES"
    report = describe_media(save(ds, tmp_path / "cine.dcm"), mm_per_pixel=0.5)
    assert report["format"] == "dicom" and report["frames"] == 3
    assert (report["width"], report["height"]) == (160, 120)
    assert report["scan_box"] == [20, 10, 140, 100] and report["scan_box_source"] == "dicom_region"
    assert report["pixel_size_source"] == "dicom" and report["mm_per_pixel"] == pytest.approx([0.08, 0.12])
    assert report["burned_in_text"] is True and report["burned_in_annotation_flag"] is True


def test_describe_image_pixel_size_sources_in_order(tmp_path):
    frame, box = screen(seed=5)
    path = tmp_path / "screen.png"
    cv2.imwrite(str(path), frame)
    unknown = describe_media(path)
    assert unknown["format"] == "png" and unknown["frames"] == 1 and unknown["scan_box_source"] == "detected"
    assert unknown["mm_per_pixel"] is None and unknown["pixel_size_source"] is None
    assert unknown["burned_in_text"] is True  # the header line with a name and a date
    assert describe_media(path, mm_per_pixel=0.07, depth_mm=50.0)["pixel_size_source"] == "listing"
    by_depth = describe_media(path, depth_mm=60.0)
    assert by_depth["pixel_size_source"] == "depth"
    assert by_depth["mm_per_pixel"][1] == pytest.approx(60.0 / (by_depth["scan_box"][3] - by_depth["scan_box"][1]))
    assert describe_media(path, scanner=ScannerProfile("x", mm_per_pixel=0.09))["pixel_size_source"] == "scanner"
    ticks = describe_media(path, scanner=ScannerProfile("x", major_tick_mm=10.0))
    assert ticks["pixel_size_source"] == "depth_scale"
    assert ticks["mm_per_pixel"][0] == pytest.approx(10.0 / 120, rel=0.02)  # screen() draws a tick every 120 px


def test_describe_video_and_unreadable_files(tmp_path):
    frame, box = screen(seed=6)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
    for index in range(8):
        writer.write(np.zeros_like(frame) if index == 0 else frame)  # blank first frame
    writer.release()
    report = describe_media(path)
    assert report["format"] == "video" and report["frames"] == 8
    assert box_iou(tuple(report["scan_box"]), box) >= 0.95
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(MediaError, match="broken.png"):
        describe_media(broken)
    not_dicom = tmp_path / "scan.dcm"
    not_dicom.write_bytes(b"x" * 200)
    with pytest.raises(MediaError, match="scan.dcm: not a DICOM file"):
        describe_media(not_dicom)
