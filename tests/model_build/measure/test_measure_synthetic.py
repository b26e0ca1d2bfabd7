"""Synthetic training pairs: the generator's own aponeurosis labels agree with its latent muscle
thickness to the pixel, sit inside the scan, leave the rendered pixels unchanged, and make a
data folder `sarco measure train` reads."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from model_build.cli import app
from model_build.measure.data import load_pairs
from model_build.synth.render import PROFILES, MuscleLatent, render_still, render_still_with_labels
from sarco_core.measure import DEEP, SUPERFICIAL, muscle_thickness_px
from sarco_core.measure.segmentation import SegmentationRecipe


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("thickness_mm", [12.0, 27.0])
def test_labels_give_the_latent_thickness(profile, thickness_mm):
    latent = MuscleLatent("gastrocnemius", thickness_mm, 7.0, 0.3, 0.7, 15.0)
    image, labels = render_still_with_labels(latent, PROFILES[profile], np.random.default_rng(4))
    assert labels.shape == image.pixels.shape[:2]
    x0, y0, x1, y1 = image.scan_box
    outside = labels.copy()
    outside[y0:y1, x0:x1] = 0
    assert not outside.any() and (labels == SUPERFICIAL).any() and (labels == DEEP).any()
    measured = muscle_thickness_px(labels).px * image.mm_per_pixel
    assert measured == pytest.approx(thickness_mm, abs=2.5 * image.mm_per_pixel)


def test_labels_do_not_change_the_rendered_pixels():
    latent = MuscleLatent("rectus_femoris", 18.0, 5.0, 0.4, 0.6, 12.0)
    for profile in PROFILES.values():
        plain = render_still(latent, profile, np.random.default_rng(7))
        labelled, _ = render_still_with_labels(latent, profile, np.random.default_rng(7))
        assert np.array_equal(plain.pixels, labelled.pixels) and plain.scan_box == labelled.scan_box


def test_synth_writes_a_data_folder_that_training_reads(tmp_path):
    out = tmp_path / "synthetic"
    result = CliRunner().invoke(app, ["measure", "synth", "--out", str(out), "--count", "3", "--seed", "2"])
    assert result.exit_code == 0, result.output
    with (out / "index.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and {"image", "mask", "muscle_thickness_mm", "mm_per_pixel"} <= set(rows[0])
    mask = cv2.imread(str(out / rows[0]["mask"]), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(mask).tolist()) == {0, 1, 2}
    pairs = load_pairs([out], SegmentationRecipe(size=64))
    for pair, row in zip(pairs, rows):
        thickness_mm = muscle_thickness_px(pair.labels).px * float(row["mm_per_pixel"])
        assert thickness_mm == pytest.approx(float(row["muscle_thickness_mm"]), abs=0.3)
    again = CliRunner().invoke(app, ["measure", "synth", "--out", str(out), "--count", "3"])
    assert again.exit_code == 1 and "not an empty folder" in again.output
