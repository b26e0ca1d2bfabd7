"""Scan-region detection: the hand-marked real images, synthetic screens, and the video tracker.

tests/data/scan_regions.csv was marked by eye and by reading pixel rows and columns across
each edge (not with the detector); for sectors and steered scans the box is the bounding box
of the B-mode area.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from sarco_core.imaging import ScanRegionNotFound, ScanRegionTracker, box_iou, find_scan_region
from tests.support.paths import REPO
from tests.support.scanner_screens import screen, speckle
from tests.support.real_data import REAL_DATA, real_file, real_images

MARKED = list(csv.DictReader((REPO / "tests" / "data" / "scan_regions.csv").open()))


def read_image(relative: str) -> np.ndarray:
    image = cv2.imread(str(real_file(relative)), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"OpenCV cannot read {relative}"
    return image


def marked_box(row: dict) -> tuple[int, int, int, int]:
    return tuple(int(row[key]) for key in ("x0", "y0", "x1", "y1"))


def test_marked_set_covers_every_dataset_and_layout():
    assert len(MARKED) >= 20
    files = [row["file"] for row in MARKED]
    for folder in ("dataset1", "dataset2", "dataset3", "dataset4/SampleA", "dataset4/SampleB",
                   "single_images", "muscle-us-deepacsa"):
        assert any(folder in name for name in files), folder
    assert {row["shape"] for row in MARKED} == {"rect", "trapezoid", "sector"}


@pytest.mark.parametrize("row", MARKED, ids=[Path(row["file"]).name for row in MARKED])
def test_marked_real_image(row):
    found = find_scan_region(read_image(row["file"]))
    assert box_iou(found, marked_box(row)) >= 0.9, f"found {found}, marked {marked_box(row)}"


@pytest.mark.slow
def test_every_real_image_loads_and_matches_its_session_layout():
    """All frames of one capture session share a layout; the marked frame stands for the rest.

    Over the committed subset (tests/data/real): every marked image, a second frame of each
    session, and a few images of the other sources. The sweep over all of ../shared/data
    (340 muscle images and more) is benchmarks/bench_real_images.py."""
    layouts = {str(Path(row["file"]).parent): marked_box(row) for row in MARKED
               if "SampleB" not in row["file"] and "dataset1" not in row["file"]
               and "single_images" not in row["file"] and "deepacsa" not in row["file"]}
    # every scan, not the label masks stored beside some of them (dl-track-aponeuroses/masks)
    images = real_images(masks=False)
    relatives = [path.relative_to(REAL_DATA).as_posix() for path in images]
    assert {relative.split("/")[0] for relative in relatives} == {
        "muscle-us-timtrack", "muscle-us-deepacsa", "dl-track-aponeuroses", "busi-development"}
    assert {row["file"] for row in MARKED} <= set(relatives)
    for session in layouts:  # each session's layout is checked on more than the one marked frame
        assert sum(str(Path(relative).parent) == session for relative in relatives) >= 2, session
    for relative in relatives:
        box = find_scan_region(read_image(relative))
        session = str(Path(relative).parent)
        if session in layouts:
            assert box_iou(box, layouts[session]) >= 0.9, f"{relative}: {box} vs {layouts[session]}"


def test_synthetic_screen_with_dark_deep_field():
    frame, box = screen()
    found = find_scan_region(frame)
    assert max(abs(a - b) for a, b in zip(found, box)) <= 3, (found, box)


def test_grey_colour_alpha_and_sixteen_bit_inputs_agree():
    frame, box = screen(seed=1)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    alpha = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    results = {find_scan_region(frame), find_scan_region(alpha), find_scan_region(grey.astype(np.uint16) * 257)}
    assert all(box_iou(result, box) >= 0.98 for result in results)


def test_sector_on_black_with_header_text():
    frame = np.zeros((600, 800), np.uint8)
    mask = np.zeros_like(frame)
    cv2.ellipse(mask, (400, 40), (520, 520), 0, 55, 125, 255, -1)
    cv2.circle(mask, (400, 40), 60, 0, -1)
    frame[mask > 0] = speckle(frame.shape, 3)[mask > 0] | 1  # B-mode never exactly black
    cv2.putText(frame, "UNIVERSITY HOSPITAL  17.07.2020 16:36", (380, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 160, 2)
    ys, xs = np.nonzero(mask)
    truth = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    assert box_iou(find_scan_region(frame), truth) >= 0.95


@pytest.mark.parametrize("blank", [np.zeros((300, 400), np.uint8), np.full((300, 400, 3), 90, np.uint8)])
def test_blank_image_has_no_scan_region(blank):
    with pytest.raises(ScanRegionNotFound):
        find_scan_region(blank)


@pytest.mark.parametrize("bad", [np.zeros((5, 400), np.uint8), np.zeros((100, 100, 2), np.uint8),
                                 np.zeros((100, 100), np.int32), "not an array"])
def test_bad_input_is_a_clear_error(bad):
    with pytest.raises(ValueError):
        find_scan_region(bad)


def test_tracker_detects_once_then_rechecks():
    frame, box = screen(seed=2)
    tracker = ScanRegionTracker(recheck_every=10)
    boxes = [tracker.update(frame) for _ in range(25)]
    assert all(box_iou(found, box) >= 0.98 for found in boxes)
    assert tracker.detections == 3  # frame 1, then frames 11 and 21


def test_tracker_waits_for_a_scan_and_ignores_one_odd_frame():
    frame, box = screen(seed=3)
    blank = np.zeros_like(frame)
    tracker = ScanRegionTracker(recheck_every=5)
    assert tracker.update(blank) is None
    assert box_iou(tracker.update(frame), box) >= 0.98
    odd = frame.copy()
    odd[:, 640:] = 56  # half the scan covered by UI on one frame
    for index in range(12):
        found = tracker.update(odd if index == 4 else frame)  # index 4 is a re-check frame
        assert box_iou(found, box) >= 0.98
    assert tracker.detections == 5  # blank, first find, re-checks at 4 (odd), 5 (not confirmed), 10


def test_tracker_adopts_a_new_layout_once_confirmed():
    frame, box = screen(seed=4)
    tracker = ScanRegionTracker(recheck_every=4, confirmations=2)
    tracker.update(frame)
    deeper = np.full_like(frame, 56)
    deeper[90:690, 500:900] = frame[90:690, 300:700]  # narrower field after a preset change
    seen = [tracker.update(deeper) for _ in range(6)]
    assert box_iou(seen[2], box) >= 0.98  # the first re-check alone changes nothing
    assert box_iou(seen[-1], (500, 90, 900, 690)) >= 0.95


@pytest.mark.parametrize("width", [289, 337, 405])
def test_odd_widths_do_not_index_outside_the_half_size_labels(width):
    """Regression: the half-size label lookup must clip points of the last odd column."""
    rng = np.random.default_rng(width)
    frame = np.zeros((300, width), np.uint8)
    frame[20:280, 30:width] = rng.integers(40, 220, size=(260, width - 30), dtype=np.uint8)
    x0, y0, x1, y1 = find_scan_region(frame)
    assert x1 <= width and y1 <= 300 and x1 - x0 > width // 2
