"""Burned-in text and markers: found inside and outside the scan region, and blanked."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.imaging import blank_outside, find_scan_region, find_text, mask_text

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real images not present at {DATA}")


def bmode(seed: int, shape: tuple[int, int] = (400, 500)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = rng.rayleigh(45.0, size=shape).astype(np.float32) + 40
    return cv2.cvtColor(np.clip(cv2.GaussianBlur(field, (5, 5), 1.2), 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def drawn(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=2)


@pytest.mark.parametrize("seed", range(4))
def test_white_labels_on_speckle_are_found_and_speckle_is_not(seed):
    clean = bmode(seed)
    box = (0, 0, clean.shape[1], clean.shape[0])
    assert not find_text(clean, box).found
    labelled = clean.copy()
    cv2.putText(labelled, "DOE^JANE 15/01/2024", (30, 120), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(labelled, "RF L 4.2cm", (250, 330), cv2.FONT_HERSHEY_PLAIN, 1.0, (235, 235, 235), 1)
    text = drawn(clean, labelled)
    marks = find_text(labelled, box)
    assert marks.found
    assert (marks.mask & text).sum() >= 0.85 * text.sum()
    assert (marks.mask & ~text).sum() <= 0.01 * text.size  # little speckle lost around the labels


def test_coloured_calipers_inside_the_scan_are_markers():
    clean = bmode(7)
    marked = clean.copy()
    for x, y in ((120, 150), (380, 260)):
        cv2.drawMarker(marked, (x, y), (0, 255, 255), cv2.MARKER_CROSS, 14, 1)
    cv2.line(marked, (120, 150), (380, 260), (0, 200, 0), 1)
    marks = find_text(marked, (0, 0, 500, 400))
    caliper = drawn(clean, marked)
    assert (marks.mask & caliper).sum() == caliper.sum()


def test_text_on_the_ui_panel_is_found():
    screen = np.full((300, 700, 3), 40, np.uint8)
    screen[60:280, 150:550] = bmode(3, (220, 400))
    cv2.putText(screen, "Hospital: Example General   12/03/2021 10:22", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (200, 200, 200), 1)
    screen[:, 560:] = 225  # a light side panel with dark ink
    cv2.putText(screen, "Gn 82 %", (570, 120), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1)
    marks = find_text(screen, (150, 60, 550, 280))
    assert any(y1 <= 40 for _, _, _, y1 in marks.lines)
    assert any(x0 >= 560 for x0, _, _, _ in marks.lines)


def test_mask_text_and_blank_outside_leave_the_scan_alone():
    image = bmode(5)
    cv2.putText(image, "ABC 123", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    marks = find_text(image, (0, 0, 500, 400))
    cleaned = mask_text(image, marks)
    assert cleaned is not image and np.all(cleaned[marks.mask] == 0)
    assert np.array_equal(cleaned[~marks.mask], image[~marks.mask])
    kept = blank_outside(image, (100, 50, 300, 350))
    assert np.array_equal(kept[50:350, 100:300], image[50:350, 100:300])
    assert kept.sum() == image[50:350, 100:300].sum(dtype=np.int64) and kept.sum(dtype=np.int64) > 0


@needs_data
@pytest.mark.parametrize("relative, header_rows", [
    ("muscle-us-deepacsa/rectus_img_55.tif", 64),  # "Universität Basel, DSBG" and the date
    ("muscle-us-timtrack/dataset2/jumping/gastroc_jumping_048.png", 30),  # GE date and id line
])
def test_real_header_text_is_found(relative, header_rows):
    image = cv2.imread(str(DATA / relative))
    marks = find_text(image, find_scan_region(image))
    header = [line for line in marks.lines if line[3] <= header_rows]
    assert len(header) >= 2
    assert sum(x1 - x0 for x0, _, x1, _ in header) > 200  # most of the line, not a speck


@needs_data
@pytest.mark.parametrize("subject", ["S1", "S2", "S3", "S4", "S5", "S9"])
def test_clean_real_crops_have_no_text(subject):
    for path in sorted((DATA / "muscle-us-timtrack" / "dataset1" / subject).glob("*.png"))[::6]:
        image = cv2.imread(str(path))
        assert not find_text(image, (0, 0, image.shape[1], image.shape[0])).found, path.name
