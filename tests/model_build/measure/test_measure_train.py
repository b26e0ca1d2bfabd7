"""`sarco measure train` and `evaluate` on the four committed real DL_Track pairs: a tiny run (64 px,
1-2 epochs, seconds) writes a sealed model folder whose ONNX graph computes what the network
computes, training is deterministic given the seed, `evaluate` writes metrics.json and its
figures (against masks and against TimTrack-style observer sheets), and every error names the
file and the fix. Tiny runs check the machinery, not accuracy (benchmarks/bench_measure.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from model_build.cli import app
from model_build.measure.data import MeasureDataError, augment, load_pairs, plain_example, read_index
from model_build.measure.export import export_segmentation
from model_build.models.export import parity_gap
from model_build.measure.train import MeasureTrainOptions, fit
from sarco_core.bundle import load_measurement_bundle, verify_manifest
from tests.support.measure_models import real_pairs_folder, scripted_model
from tests.support.real_data import real_file

runner = CliRunner()
TINY = MeasureTrainOptions(epochs=1, image_size=64, batch_size=2, threads=1, synthetic=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return real_pairs_folder(tmp_path_factory.mktemp("data") / "dl-track")


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny"
    result = runner.invoke(app, ["measure", "train", str(data), "--out", str(out), "--epochs", "2",
                                 "--image-size", "64", "--batch-size", "2", "--threads", "1", "--seed", "3",
                                 "--synthetic", "2"])
    assert result.exit_code == 0, result.output
    return out


def test_training_writes_a_sealed_model_folder(trained):
    assert sorted(p.name for p in trained.iterdir()) == ["LICENSE-dl-track", "MANIFEST.sha256", "README.md",
                                                         "aponeurosis.json", "aponeurosis.onnx"]
    assert set(verify_manifest(trained)) == {"LICENSE-dl-track", "README.md", "aponeurosis.json", "aponeurosis.onnx"}
    bundle = load_measurement_bundle(trained)
    assert bundle.recipe.size == 64
    config = bundle.config
    assert config["metrics"]["onnx_parity_max_abs"] <= 1e-3
    training = config["training"]
    assert training["images"] == 6 and training["options"]["seed"] == 3 and len(training["history"]) == 2
    real, synthetic = training["data"]
    assert real["licence"] == "Apache-2.0" and len(real["sha256"]) == 64 and real["pairs"] == 4
    assert synthetic["folder"] == "synthetic-aponeuroses" and synthetic["pairs"] == 2
    assert synthetic["licence"].startswith("synthetic") and synthetic["licence_file"] is None
    assert real["licence_file"] == "LICENSE-dl-track"
    assert "Apache License" in (trained / "LICENSE-dl-track").read_text(encoding="utf-8")
    assert training["command"].startswith("sarco measure train")
    assert "--seed 3" in training["command"] and "--synthetic 2" in training["command"]
    readme = (trained / "README.md").read_text(encoding="utf-8")
    assert "Apache-2.0" in readme and "sarco measure train" in readme
    assert set(config["metrics"]["training_images_in_sample"]) >= {"dice_superficial", "share_measured"}


def test_the_onnx_graph_computes_what_the_network_computes_on_real_inputs(data, tmp_path):
    recipe = TINY.recipe()
    pairs = load_pairs([data], recipe)
    network, history = fit(pairs, TINY)
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    inputs = np.stack([plain_example(p, recipe)[0] for p in pairs])[:, None]
    path = tmp_path / "aponeurosis.onnx"
    gap = export_segmentation(network, 64, path, inputs)
    assert gap <= 1e-3
    assert parity_gap(network, path, inputs) == gap


def test_training_is_deterministic_given_the_seed(data):
    pairs = load_pairs([data], TINY.recipe())
    first, _ = fit(pairs, TINY)
    second, _ = fit(pairs, TINY)
    other, _ = fit(pairs, MeasureTrainOptions(**{**TINY.__dict__, "seed": 1}))
    a, b, c = (torch.cat([p.detach().flatten() for p in n.parameters()]) for n in (first, second, other))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augmentation_keeps_the_labels_on_the_image():
    grey = np.zeros((100, 80), np.uint8)
    grey[20:24] = 255  # a bright aponeurosis ...
    onehot = np.zeros((100, 80, 3), np.uint8)
    onehot[..., 0] = 255
    onehot[20:24, :, 0], onehot[20:24, :, 1] = 0, 255  # ... labelled superficial
    for seed in range(20):
        image, labels = augment(grey, onehot, np.random.default_rng(seed))
        assert image.shape == labels.shape[:2]
        superficial = labels[..., 1] > 127
        if superficial.sum() > 20:  # where the label went, the bright line went
            assert image[superficial].mean() > 2 * image[~superficial].mean()


def test_train_refuses_a_non_empty_out_and_names_bad_rows(data, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    result = runner.invoke(app, ["measure", "train", str(data), "--out", str(out)])
    assert result.exit_code == 1 and "exists and is not an empty folder" in result.output
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    (broken / "index.csv").write_text("image,mask\nimages/img_00001.png,masks/absent.png\n", encoding="utf-8")
    result = runner.invoke(app, ["measure", "train", str(broken), "--out", str(tmp_path / "new")])
    assert result.exit_code == 1
    assert "index.csv: row 2: mask masks/absent.png: file not found" in result.output
    assert not (tmp_path / "new").exists()
    result = runner.invoke(app, ["measure", "train", str(tmp_path / "model"), "--out", str(tmp_path / "new")])
    assert result.exit_code == 1 and "index.csv: not found" in result.output


def test_a_mask_of_another_size_is_named(data, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(data, folder)
    cv2.imwrite(str(folder / "masks" / "img_00001.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(MeasureDataError, match=r"img_00001.png: 10x10 pixels, its image 800x652 \(row 2"):
        load_pairs([folder], TINY.recipe())
    assert len(read_index(folder)) == 4


def test_evaluate_against_masks_writes_metrics_and_figures(trained, data, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["measure", "evaluate", str(trained), str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["reference"] == "masks" and metrics["images"] == 4
    for key in ("dice_superficial", "dice_deep", "thickness_abs_error_px_median", "thickness_abs_error_pct_median",
                "share_measured"):
        assert set(metrics[key]) == {"value", "ci95", "n"}
    assert (out / "per_image.csv").is_file() and (out / "bland_altman_thickness.png").stat().st_size > 1000


def write_observer_sheets(root: Path) -> None:
    """A TimTrack-like dataset2: two real images, three observers' sheets."""
    folder = root / "dataset2" / "jumping"
    folder.mkdir(parents=True)
    for number in (48, 92):
        shutil.copy(real_file(f"muscle-us-timtrack/dataset2/jumping/gastroc_jumping_{number:03d}.png"), folder)
    for observer, offset in ((1, 0.0), (2, 4.0), (3, -2.0)):
        frame = pd.DataFrame({"image": [48, 92], "alpha": [20.0 + offset / 4, 22.0], "betha": [1.0, 1.5],
                              "spoint": [80.0, 82.0], "dpoint": [260.0, 270.0], "height": [178.0 + offset, 186.0]})
        with pd.ExcelWriter(root / "dataset2" / f"dataset2_for_manual_estimation_obs{observer}.xlsx") as writer:
            frame.to_excel(writer, sheet_name="jumping", index=False)


def test_evaluate_against_observer_sheets_compares_with_their_disagreement(tmp_path):
    model = scripted_model(tmp_path / "scripted")
    timtrack = tmp_path / "muscle-us-timtrack"
    write_observer_sheets(timtrack)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["measure", "evaluate", str(model), str(timtrack), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["reference"] == "timtrack-observers"
    summary = metrics["datasets"]["dataset2"]
    assert summary["images"] == 2 and summary["share_measured"]["value"] == 1.0
    # image 48: 178, 182, 176 (pairs differ by 4, 6, 2: median 4); image 92: 0; their median: 2
    assert summary["thickness_observer_disagreement_px_median"]["value"] == pytest.approx(2.0)
    assert summary["thickness_abs_error_px_median"]["value"] is not None
    for key in ("timtrack_position_abs_error_px_median", "timtrack_position_abs_error_pct_median",
                "timtrack_position_bias_pct_mean"):
        assert set(summary[key]) == {"value", "ci95", "n"}
    assert "thickness_model_timtrack_position_px" in (out / "per_image.csv").read_text(encoding="utf-8")
    assert (out / "bland_altman_thickness_dataset2.png").is_file()
    assert "observers' disagreement" in result.output


def test_evaluate_needs_one_data_folder(trained, tmp_path):
    result = runner.invoke(app, ["measure", "evaluate", str(trained), "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "give one DATA folder" in result.output
