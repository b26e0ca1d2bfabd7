"""The measurement contract of docs/measurements.md (sarco_core.measure), on masks whose answer
is known: hand-made label images (thickness and echo intensity fixed exactly by the
definitions), striped images with known fascicle angles (pennation), real DL_Track masks (the
band conversion) and a session of frames (the aggregate)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sarco_core.imaging import PixelSize
from sarco_core.measure import (
    DEEP,
    OTHER,
    SUPERFICIAL,
    FrameMeasurement,
    aggregate_measurements,
    check_labels,
    echo_intensity,
    find_bands,
    labels_from_bands,
    measure,
    middle_half,
    muscle_band,
    muscle_thickness_px,
    pennation_angle,
)
from tests.support.real_data import real_file


def labels_from_edges(superficial_last: dict[int, int], deep_first: dict[int, int], height: int = 120,
                      width: int | None = None, thickness: int = 4) -> np.ndarray:
    """Label image with, per column, a superficial band ending at ``superficial_last[c]`` and a
    deep band starting at ``deep_first[c]`` (each ``thickness`` rows)."""
    width = width or max([*superficial_last, *deep_first]) + 1
    labels = np.zeros((height, width), np.uint8)
    for column, last in superficial_last.items():
        labels[max(0, last - thickness + 1):last + 1, column] = SUPERFICIAL
    for column, first in deep_first.items():
        labels[first:first + thickness, column] = DEEP
    return labels


# --- muscle thickness -------------------------------------------------------------------------

def test_thickness_of_straight_aponeuroses_is_the_gap_between_them():
    labels = labels_from_edges({c: 14 for c in range(40)}, {c: 50 for c in range(40)})
    result = muscle_thickness_px(labels)
    assert result.status == "ok"
    assert result.px == 35.0  # 50 - 14 - 1: rows 15..49
    assert result.edges.columns.tolist() == list(range(40))


def test_thickness_of_a_tilted_deep_aponeurosis_is_the_median_of_the_middle_half():
    # deep first row 30 + c: per-column gaps 19 + c over columns 0..39.
    labels = labels_from_edges({c: 10 for c in range(40)}, {c: 30 + c for c in range(40)})
    result = muscle_thickness_px(labels)
    # 25th / 75th percentile of positions 0..39 are 9.75 / 29.25: columns 10..29, gaps 29..48.
    assert result.window.tolist() == list(range(10, 30))
    assert result.px == 38.5


def test_thickness_with_partial_overlap_uses_only_shared_columns():
    superficial = {c: 9 for c in range(0, 30)}
    deep = {c: 40 + 2 * (c - 20) for c in range(20, 60)}
    result = muscle_thickness_px(labels_from_edges(superficial, deep))
    assert result.edges.columns.tolist() == list(range(20, 30))
    # percentiles of 20..29: 22.25 and 26.75 -> columns 23..26, gaps 36, 38, 40, 42.
    assert result.window.tolist() == [23, 24, 25, 26]
    assert result.px == 39.0


def test_percentile_window_bounds_are_inclusive_and_outer_columns_do_not_count():
    # Columns 0, 4, 8, 12, 16: the 25th / 75th percentiles are exactly 4 and 12 (kept).
    gaps = {0: 1000, 4: 30, 8: 10, 12: 31, 16: 1000}
    labels = labels_from_edges({c: 5 for c in gaps}, {c: 5 + g + 1 for c, g in gaps.items()}, height=1100)
    result = muscle_thickness_px(labels)
    assert result.window.tolist() == [4, 8, 12]
    assert result.px == 30.0  # median(30, 10, 31); exclusive bounds would give 10, all columns 31
    assert middle_half(np.arange(100)).nonzero()[0].tolist() == list(range(25, 75))


def test_wild_ends_do_not_move_the_thickness():
    gaps = {c: (20 if 25 <= c < 75 else 200) for c in range(100)}
    labels = labels_from_edges({c: 5 for c in gaps}, {c: 5 + g + 1 for c, g in gaps.items()}, height=260)
    assert muscle_thickness_px(labels).px == 20.0  # the median of all columns would be 110


@pytest.mark.parametrize("superficial, deep, status", [
    ({c: 10 for c in range(30)}, {}, "one_aponeurosis_missing"),
    ({}, {c: 50 for c in range(30)}, "one_aponeurosis_missing"),
    ({c: 10 for c in range(10)}, {c: 50 for c in range(20, 30)}, "no_overlap"),
    # two shared columns far apart: the middle half of their positions holds neither
    ({c: 10 for c in (2, 27)}, {c: 50 for c in (2, 27)}, "no_overlap"),
    ({c: 10 for c in range(30)}, {c: 11 for c in range(30)}, "no_muscle_band"),  # touching
])
def test_thickness_not_measurable_says_why(superficial, deep, status):
    labels = labels_from_edges(superficial, deep, width=30)
    result = muscle_thickness_px(labels)
    assert (result.px, result.status) == (None, status)
    assert measure(np.full(labels.shape, 90, np.uint8), labels) == FrameMeasurement(None, None, None, None, status)


def test_thickness_of_an_empty_label_image():
    assert muscle_thickness_px(np.zeros((50, 50), np.uint8)).status == "no_aponeuroses"


def test_labels_are_checked():
    with pytest.raises(ValueError, match="only 0"):
        check_labels(np.full((10, 10), 3, np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        check_labels(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="integers"):
        check_labels(np.zeros((10, 10), np.float32))


# --- echo intensity ---------------------------------------------------------------------------

def test_echo_intensity_is_the_mean_grey_strictly_between_the_aponeuroses():
    labels = labels_from_edges({c: 14 for c in range(40)}, {c: 50 for c in range(40)}, height=80)
    grey = np.zeros(labels.shape, np.uint8)
    grey[labels > 0] = 255          # aponeuroses: excluded
    grey[15:30] = 100               # 15 rows
    grey[30:50] = 50                # 20 rows
    assert echo_intensity(grey, labels) == pytest.approx((15 * 100 + 20 * 50) / 35, abs=1e-12)


def test_echo_intensity_follows_a_tilted_band_column_by_column():
    labels = labels_from_edges({c: 10 for c in range(20)}, {c: 30 + c for c in range(20)}, height=60)
    rows = np.arange(60)[:, None].repeat(20, axis=1)
    grey = rows.astype(np.uint8)    # grey level = row number
    band = muscle_band(labels)
    assert band.sum() == sum(30 + c - 10 - 1 for c in range(20))
    expected = np.mean([r for c in range(20) for r in range(11, 30 + c)])
    assert echo_intensity(grey, labels) == pytest.approx(expected, abs=1e-12)
    assert not band[labels > 0].any()


def test_echo_intensity_without_a_band_and_with_wrong_input():
    labels = labels_from_edges({c: 10 for c in range(20)}, {}, width=20)
    assert echo_intensity(np.zeros(labels.shape, np.uint8), labels) is None
    with pytest.raises(ValueError, match="uint8"):
        echo_intensity(np.zeros(labels.shape, np.float32), labels)
    with pytest.raises(ValueError, match="differ in size"):
        echo_intensity(np.zeros((5, 5), np.uint8), labels)


# --- pennation angle --------------------------------------------------------------------------

def striped_muscle(fascicle_deg: float, deep_deg: float, *, noise: float, speckle: bool, seed: int,
                   period: float = 10.0, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Fascicles as sinusoidal stripes at ``fascicle_deg`` (y up) between a flat superficial
    aponeurosis and a deep one at ``deep_deg``, with Gaussian noise and optional speckle
    (multiplicative, elongated along x as B-mode speckle is)."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:size, 0:size].astype(float)
    angle = np.radians(fascicle_deg)
    grey = 90 + 35 * np.sin((columns * np.sin(angle) + rows * np.cos(angle)) * 2 * np.pi / period)
    if speckle:
        pattern = cv2.GaussianBlur(rng.rayleigh(1.0, (size, size)), (0, 0), sigmaX=2.0, sigmaY=0.7)
        grey = grey * pattern / pattern.mean()
    grey += rng.normal(0, noise, grey.shape)
    labels = np.zeros((size, size), np.uint8)
    labels[32:40] = SUPERFICIAL
    deep_top = np.round(210 - np.tan(np.radians(deep_deg)) * (np.arange(size) - size / 2)).astype(int)
    for column, top in enumerate(deep_top):
        labels[top:top + 10, column] = DEEP
    grey[labels > 0] = 230
    return np.clip(grey, 0, 255).astype(np.uint8), labels


PENNATION_TOLERANCE_DEG = 1.5


@pytest.mark.parametrize("pennation", [8.0, 15.0, 25.0, 40.0, 60.0])
@pytest.mark.parametrize("deep_deg", [0.0, -6.0, 5.0])
def test_pennation_of_striped_fascicles_against_a_tilted_deep_aponeurosis(pennation, deep_deg):
    for seed, (noise, speckle) in enumerate([(10.0, False), (40.0, False), (25.0, True)]):
        grey, labels = striped_muscle(deep_deg + pennation, deep_deg, noise=noise, speckle=speckle, seed=seed)
        result = pennation_angle(grey, labels)
        assert result.status == "ok"
        assert result.deep_deg == pytest.approx(deep_deg, abs=0.3)
        assert result.pennation_deg == pytest.approx(pennation, abs=PENNATION_TOLERANCE_DEG), (noise, speckle)


def test_pennation_does_not_depend_on_which_way_the_probe_faces():
    grey, labels = striped_muscle(23.0, 3.0, noise=20.0, speckle=True, seed=7, period=13.0)
    right = pennation_angle(grey, labels)
    left = pennation_angle(grey[:, ::-1].copy(), labels[:, ::-1].copy())
    assert right.pennation_deg == pytest.approx(20.0, abs=PENNATION_TOLERANCE_DEG)
    assert left.pennation_deg == pytest.approx(right.pennation_deg, abs=0.05)
    assert left.fascicle_deg == pytest.approx(-right.fascicle_deg, abs=0.05)


def test_pennation_not_measured_without_texture_or_band():
    grey, labels = striped_muscle(30.0, 0.0, noise=0.0, speckle=False, seed=0)
    flat = np.full(grey.shape, 90, np.uint8)
    flat[labels > 0] = 230
    assert pennation_angle(flat, labels).status == "no_fascicle_orientation"
    thin = labels_from_edges({c: 10 for c in range(200)}, {c: 20 for c in range(200)}, height=40)
    assert pennation_angle(np.full(thin.shape, 90, np.uint8), thin).status == "no_fascicle_orientation"
    frame = measure(flat, labels)
    assert frame.status == "no_fascicle_orientation" and frame.pennation_deg is None
    assert frame.muscle_thickness_px == 170.0 and frame.echo_intensity == 90.0


# From dataset2_for_manual_estimation_obs{1,2,3}.xlsx: observer 1's aponeurosis rows at the image's
# middle column (spoint, dpoint) and angle (betha), and the three observers' fascicle angles.
OBSERVED = [
    ("jumping/gastroc_jumping_066.png", 147, 372, -5.86, (27.11, 23.61, 26.68)),  # a plain maximum misses by 14 deg
    ("range-of-motion/gastroc_range_of_motion_062.png", 140, 366, -5.44, (26.45, 24.78, 28.45)),
    ("jumping/gastroc_jumping_048.png", 145, 362, -3.96, (11.07, 11.31, 11.90)),
    ("range-of-motion/gastroc_range_of_motion_512.png", 144, 373, -4.90, (16.22, 15.20, 14.50)),
]


DATASET2_ALPHA_DISAGREEMENT_DEG = 1.91  # median over images of the median |difference| between two observers


@pytest.mark.parametrize("name, spoint, dpoint, betha, alphas", OBSERVED)
def test_fascicle_angle_on_real_scans_agrees_with_the_timtrack_observers(name, spoint, dpoint, betha, alphas):
    """On the observers' own aponeurosis lines (no segmentation), the fascicle angle found lies
    within issue #23's bar of the three observers' mean: the median disagreement between two
    observers on this dataset (docs/measurements.md). The method's parameters were chosen on
    dataset 1, not on these images (benchmarks/tune_pennation.py)."""
    path = real_file(f"muscle-us-timtrack/dataset2/{name}")
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    labels = np.zeros(grey.shape, np.uint8)
    columns = np.arange(110, 690)  # the scan's columns on this GE layout
    slope = -np.tan(np.radians(betha))
    for row, label, offsets in ((spoint, SUPERFICIAL, range(-3, 1)), (dpoint, DEEP, range(0, 4))):
        line = np.round(row + slope * (columns - grey.shape[1] / 2)).astype(int)
        for offset in offsets:
            labels[line + offset, columns] = label
    result = pennation_angle(grey, labels)
    assert result.deep_deg == pytest.approx(betha, abs=0.2)
    assert abs(result.fascicle_deg) == pytest.approx(np.mean(alphas), abs=DATASET2_ALPHA_DISAGREEMENT_DEG)


# --- one frame --------------------------------------------------------------------------------

def test_measure_one_frame_with_and_without_pixel_size():
    grey, labels = striped_muscle(20.0, 0.0, noise=15.0, speckle=False, seed=3)
    plain = measure(grey, labels)
    assert plain.status == "ok" and plain.muscle_thickness_mm is None
    assert plain.muscle_thickness_px == 170.0  # first deep row 210 - last superficial row 39 - 1
    assert plain.pennation_deg == pytest.approx(20.0, abs=PENNATION_TOLERANCE_DEG)
    assert plain.echo_intensity == pytest.approx(float(grey[40:210].mean()), abs=1e-9)
    assert measure(grey, labels, 0.1).muscle_thickness_mm == pytest.approx(17.0)
    anisotropic = PixelSize(0.1, 0.2, "dicom")  # thickness runs along y
    assert measure(grey, labels, anisotropic).muscle_thickness_mm == pytest.approx(34.0)
    colour = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    assert measure(colour, labels).muscle_thickness_px == 170.0
    assert set(plain.to_dict()) == {"muscle_thickness_px", "muscle_thickness_mm", "pennation_deg",
                                    "echo_intensity", "status"}
    with pytest.raises(ValueError, match="differ in size"):
        measure(grey[:100], labels)
    with pytest.raises(ValueError, match="positive"):
        measure(grey, labels, -1.0)
    with pytest.raises(ValueError, match="status"):
        FrameMeasurement(None, None, None, None, "fine")


# --- DL_Track masks -> labels -----------------------------------------------------------------

def test_band_rule_on_hand_made_masks():
    mask = np.zeros((200, 300), np.uint8)
    mask[20:28, 0:140] = 255         # superficial, broken in two pieces on one line
    mask[21:29, 160:300] = 255
    mask[120:130, 0:300] = 255       # deep
    mask[170:178, 0:200] = 255       # a deeper muscle's aponeurosis
    mask[60:62, 100:104] = 255       # a speck
    assert len(find_bands(mask)) == 3
    labels = labels_from_bands(mask)
    assert (labels[20:29] == SUPERFICIAL).sum() == ((mask[20:29] > 0)).sum()
    assert (labels[120:130] == DEEP).all()
    assert (labels[170:178] == OTHER).all() and labels[60:62].max() == OTHER
    # Gaps 92 (columns 0..139) and 91 (160..299); the middle half holds 70 columns of each.
    assert muscle_thickness_px(labels).px == 91.5
    single = np.zeros((100, 100), np.uint8)
    single[70:75] = 1                # one band, even low in the image: superficial
    assert set(np.unique(labels_from_bands(single))) == {OTHER, SUPERFICIAL}


def _split_gaps(mask: np.ndarray, split: int, stop: int) -> float:
    """Thickness the definition gives, computed straight from the mask: per column, the last
    foreground row above ``split`` and the first in ``split..stop``; median over the middle half."""
    upper, lower = mask[:split] > 0, mask[split:stop] > 0
    columns = np.flatnonzero(upper.any(axis=0) & lower.any(axis=0))
    last = np.array([np.flatnonzero(upper[:, c])[-1] for c in columns])
    first = np.array([split + np.flatnonzero(lower[:, c])[0] for c in columns])
    low, high = np.percentile(columns, [25, 75])
    keep = (columns >= low) & (columns <= high)
    return float(np.median((first - last - 1)[keep]))


@pytest.mark.parametrize("name, bands, split, stop", [
    ("img_00001", 2, 300, 652),   # two bands: superficial and deep
    ("img_00096", 4, 100, 250),   # four: the third and fourth belong to the muscle below (soleus)
    ("img_00064", 3, 100, 300),   # the first two are sheets of one superficial aponeurosis
])
def test_real_dl_track_masks(name, bands, split, stop):
    path = real_file(f"dl-track-aponeuroses/masks/{name}.png")
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert len(find_bands(mask)) == bands
    labels = labels_from_bands(mask)
    foreground = mask > 0
    assert not labels[~foreground].any()                       # labels only where the mask is
    assert (labels[:split][foreground[:split]] == SUPERFICIAL).all()
    assert (labels[split:stop][foreground[split:stop]] == DEEP).all()
    assert (labels[stop:][foreground[stop:]] == OTHER).all()
    assert muscle_thickness_px(labels).px == _split_gaps(mask, split, stop)


def test_real_dl_track_mask_with_one_band():
    path = real_file("dl-track-aponeuroses/masks/img_00095.png")
    labels = labels_from_bands(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    assert labels.max() == SUPERFICIAL
    assert muscle_thickness_px(labels).status == "one_aponeurosis_missing"


# --- a session --------------------------------------------------------------------------------

def test_session_aggregate_is_median_and_iqr_over_measured_frames():
    frames = [
        FrameMeasurement(100.0, 10.0, 20.0, 60.0, "ok"),
        FrameMeasurement(110.0, 11.0, None, 62.0, "no_fascicle_orientation"),
        FrameMeasurement(120.0, 12.0, 22.0, 64.0, "ok"),
        FrameMeasurement(130.0, 13.0, 26.0, 66.0, "ok"),
        FrameMeasurement.not_measured("one_aponeurosis_missing"),
    ]
    session = aggregate_measurements(frames)
    assert (session.frames_measured, session.frames_total, session.status) == (4, 5, "ok")
    assert session.muscle_thickness_px == 115.0
    assert session.spread["muscle_thickness_px"] == 15.0     # 122.5 - 107.5
    assert session.muscle_thickness_mm == pytest.approx(11.5)
    assert session.pennation_deg == 22.0                      # over the three frames that have one
    assert session.spread["pennation_deg"] == pytest.approx(3.0)  # 24 - 21
    assert session.echo_intensity == 63.0 and session.spread["echo_intensity"] == 3.0
    assert set(session.to_dict()) >= {"muscle_thickness_px", "muscle_thickness_mm", "pennation_deg",
                                      "echo_intensity", "frames_measured", "spread"}


def test_session_without_measured_frames_or_pixel_size():
    empty = aggregate_measurements([FrameMeasurement.not_measured("no_aponeuroses")] * 3)
    assert (empty.status, empty.frames_measured, empty.frames_total) == ("no_frames_measured", 0, 3)
    assert empty.muscle_thickness_px is None and empty.spread["muscle_thickness_px"] is None
    one = aggregate_measurements([FrameMeasurement(50.0, None, 12.0, 70.0, "ok")])
    assert one.muscle_thickness_px == 50.0 and one.spread["muscle_thickness_px"] == 0.0
    assert one.muscle_thickness_mm is None and one.spread["muscle_thickness_mm"] is None
