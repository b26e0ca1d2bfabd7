"""Burned-in text and markers: found inside and outside the scan region, and blanked; and the
yes/no question validation asks (has_text), which must always agree with find_text."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sarco_core.imaging import (
    ScanRegionNotFound,
    blank_outside,
    find_scan_region,
    find_text,
    has_text,
    mask_text,
)
from tests.support.real_data import real_file, real_images
from tests.support.scanner_screens import screen as scanner_screen


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


@pytest.mark.parametrize("relative, header_rows", [
    ("muscle-us-deepacsa/rectus_img_55.tif", 64),  # "Universität Basel, DSBG" and the date
    ("muscle-us-timtrack/dataset2/jumping/gastroc_jumping_048.png", 30),  # GE date and id line
])
def test_real_header_text_is_found(relative, header_rows):
    image = cv2.imread(str(real_file(relative)))
    marks = find_text(image, find_scan_region(image))
    header = [line for line in marks.lines if line[3] <= header_rows]
    assert len(header) >= 2
    assert sum(x1 - x0 for x0, _, x1, _ in header) > 200  # most of the line, not a speck


@pytest.mark.parametrize("subject", ["S1", "S2", "S3", "S4", "S5", "S9"])
def test_clean_real_crops_have_no_text(subject):
    """The subset keeps every 6th crop of each subject of the full data set (and one more of S4)."""
    paths = real_images(f"muscle-us-timtrack/dataset1/{subject}")
    assert len(paths) >= 3
    for path in paths:
        image = cv2.imread(str(path))
        assert not find_text(image, (0, 0, image.shape[1], image.shape[0])).found, path.name


# ---- has_text: find_text's yes/no, searched the cheap way -----------------------------------


def agree(image: np.ndarray, box) -> bool:
    """has_text's answer, after checking that it is find_text's."""
    answer = has_text(image, box)
    assert answer == find_text(image, box).found, box
    return answer


def header_screen(seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A smaller screen with text drawn at random near the box's top edge, where has_text's
    header search is cut off: above it, straddling it, beside the box, or not at all."""
    rng = np.random.default_rng(seed)
    frame = np.full((360, 560, 3), int(rng.integers(20, 90)), np.uint8)
    box = (int(rng.integers(60, 140)), int(rng.integers(5, 70)), int(rng.integers(380, 480)), 340)
    x0, y0, x1, y1 = box
    frame[y0:y1, x0:x1] = bmode(seed, (y1 - y0, x1 - x0))
    for _ in range(int(rng.integers(1, 4))):
        ink = (int(rng.integers(150, 256)),) * 3
        origin = (int(rng.integers(0, 480)), y0 + int(rng.integers(-25, 80)))
        text = "".join(rng.choice(list("ABCDEFGH0123456789/: "), size=int(rng.integers(2, 12))))
        cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.3, 1.1)), ink, 1)
    if rng.random() < 0.5:  # a ruler line through the cut: a stroke taller than any glyph
        x = int(rng.integers(5, max(6, x0 - 5)))
        cv2.line(frame, (x, int(rng.integers(0, 20))), (x, y1), (170, 170, 170), 1)
    return frame, box


@pytest.mark.parametrize("seed", range(16))
def test_has_text_agrees_with_find_text_around_the_header_cut(seed):
    frame, box = header_screen(seed)
    agree(frame, box)


def test_strokes_cut_off_by_the_header_strip_are_not_taken_for_text():
    """Letters hung on lines that run on below the strip has_text searches first: cut off there,
    they look like a text line; in the whole image each is one stroke taller than any glyph."""
    frame = np.full((360, 560, 3), 40, np.uint8)
    x0, y0, x1, y1 = box = (140, 30, 460, 340)
    frame[y0:y1, x0:x1] = bmode(3, (y1 - y0, x1 - x0))
    baseline, x = y0 + 38, 10  # the strip ends 42 rows below the box top
    for letter in "ABCDEF":
        (width, height), _ = cv2.getTextSize(letter, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.putText(frame, letter, (x, baseline), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (220, 220, 220), 1)
        cv2.line(frame, (x + width // 2, baseline - height // 2), (x + width // 2, baseline + 60), (220, 220, 220), 1)
        x += width + 3
    assert agree(frame, box) is False


def test_has_text_cases_both_ways():
    """The synthetic cases of this file and tests/sarco_core/test_scan_region.py's screen, with and without text."""
    clean = bmode(11)
    whole = (0, 0, clean.shape[1], clean.shape[0])
    labelled = clean.copy()
    cv2.putText(labelled, "RF L 4.2cm", (250, 330), cv2.FONT_HERSHEY_PLAIN, 1.0, (235, 235, 235), 1)
    caliper = clean.copy()
    cv2.drawMarker(caliper, (120, 150), (0, 255, 255), cv2.MARKER_CROSS, 14, 1)
    frame, box = scanner_screen(seed=2)
    blank_header = frame.copy()
    blank_header[:box[1]] = 56  # the header line removed; the side labels remain
    no_ui_text = np.full_like(frame, 56)
    no_ui_text[box[1]:box[3], box[0]:box[2]] = frame[box[1]:box[3], box[0]:box[2]]
    cases = [(clean, whole, False), (labelled, whole, True), (caliper, whole, True), (clean, None, False),
             (frame, box, True), (blank_header, box, True), (no_ui_text, box, True),  # the yellow marker
             (cv2.cvtColor(no_ui_text, cv2.COLOR_BGR2GRAY), box, False)]  # grey: no marker, no text
    assert [agree(image, where) for image, where, _ in cases] == [expected for _, _, expected in cases]


def test_has_text_agrees_with_find_text_on_real_images():
    """Every committed real image (every source and layout, label masks too), with its detected
    box (the question validation asks) and as a whole crop."""
    paths = real_images()
    answers = []
    for path in paths:
        image = cv2.imread(str(path))
        try:
            boxes = [find_scan_region(image), (0, 0, image.shape[1], image.shape[0])]
        except ScanRegionNotFound:
            boxes = [None]
        answers += [agree(image, box) for box in boxes]
    assert len(paths) >= 40 and True in answers and False in answers  # both answers were checked
