"""Thickness where TimTrack takes it (model_build.measure.timtrack.thickness_at_timtrack_position)."""

from __future__ import annotations

import numpy as np
import pytest

from model_build.measure.timtrack import (MIRRORED_DATASETS, TIMTRACK_MARGIN_PX,
                                          thickness_at_timtrack_position, timtrack_folder)
from sarco_core.measure import DEEP, SUPERFICIAL


def diverging_labels(width: int = 400, height: int = 300) -> np.ndarray:
    """Superficial band rows 40+0.05x .. 49+0.05x, deep band rows 150+0.15x .. 164+0.15x
    (rounded): the muscle thickens to the right, as on the TimTrack scans."""
    labels = np.zeros((height, width), np.uint8)
    for x in range(width):
        s, d = round(40 + 0.05 * x), round(150 + 0.15 * x)
        labels[s:s + 10, x] = SUPERFICIAL
        labels[d:d + 15, x] = DEEP
    return labels


def gap_at(x: int) -> int:
    """Pixels strictly between the superficial band's last row and the deep band's first row."""
    return round(150 + 0.15 * x) - (round(40 + 0.05 * x) + 9) - 1


def test_taken_20_px_from_the_left_edge_between_the_facing_edges():
    labels = diverging_labels()
    assert TIMTRACK_MARGIN_PX == 20
    assert thickness_at_timtrack_position(labels) == pytest.approx(gap_at(20), abs=0.6)
    # the middle of the image is thicker: the convention is a place, not a scale
    assert thickness_at_timtrack_position(labels) < gap_at(200) - 15


def test_mirrored_takes_it_20_px_from_the_right_edge():
    labels = diverging_labels()
    assert thickness_at_timtrack_position(labels, mirrored=True) == pytest.approx(gap_at(400 - 1 - 20), abs=0.6)
    assert thickness_at_timtrack_position(labels[:, ::-1], mirrored=True) == pytest.approx(
        thickness_at_timtrack_position(labels), abs=1e-6)
    assert MIRRORED_DATASETS == frozenset({4})


def test_lines_reach_columns_an_aponeurosis_does_not():
    """TimTrack's straight lines extrapolate: a deep band that starts mid-image still gives a value."""
    labels = diverging_labels()
    labels[:, :100][labels[:, :100] == DEEP] = 0
    assert thickness_at_timtrack_position(labels) == pytest.approx(gap_at(20), abs=1.0)


def test_none_without_both_aponeuroses_or_a_positive_gap():
    labels = diverging_labels()
    assert thickness_at_timtrack_position(np.where(labels == DEEP, 0, labels)) is None
    assert thickness_at_timtrack_position(np.zeros((50, 60), np.uint8)) is None
    swapped = np.where(labels == DEEP, SUPERFICIAL, np.where(labels == SUPERFICIAL, DEEP, 0)).astype(np.uint8)
    assert thickness_at_timtrack_position(swapped) is None


def test_the_timtrack_folder_names_the_datasets_it_lacks(tmp_path):
    (tmp_path / "muscle-us-timtrack" / "dataset2").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no dataset3, dataset4; fix: give the folder that holds"):
        timtrack_folder(tmp_path)
    for n in (3, 4):
        (tmp_path / "muscle-us-timtrack" / f"dataset{n}").mkdir()
    assert timtrack_folder(tmp_path) == tmp_path / "muscle-us-timtrack"
