"""Grad-CAM of the image model: the map points at what the model learned to use, the model is
left as it was, and the right/wrong-call figure is drawn from real files and a real bundle."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from model_build.cohort import load_cohort
from model_build.models import InputError
from model_build.models import bundle as bundle_io
from model_build.models.fusion import FusionModel, NetworkConfig
from model_build.models.tabular import NumericColumn, TabularEncoder
from model_build.study.gradcam import gradcam_figure, gradcam_maps, pick_examples, target_layer
from sarco_core import bundle as bundle_format
from sarco_core.preprocess import PreprocessParams
from testkit.cohort_factory import edit_cell, make_cohort

# EfficientNet-Lite0 features are 1/32 of the input: 4 x 4 at 128 px tells the halves apart;
# at 64 px (2 x 2) this test failed: too coarse.
BLOB_SIZE = 128
FIGURE_SIZE = 64


def _blob_images(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise images; every other one (label 1) has a bright blob in its left or right half."""
    size = BLOB_SIZE
    images = rng.normal(0.0, 0.3, (count, 1, size, size)).astype(np.float32)
    labels, side = np.arange(count) % 2, (np.arange(count) // 2) % 2
    rows, columns = np.mgrid[:size, :size]
    for index in np.flatnonzero(labels):
        centre_x = rng.uniform(0.15, 0.35) * size + side[index] * size / 2
        centre_y = rng.uniform(0.25, 0.75) * size
        images[index, 0] += 2.5 * np.exp(-((columns - centre_x) ** 2 + (rows - centre_y) ** 2) / (2 * (size / 16) ** 2))
    return images, labels, side


def test_the_map_falls_on_the_blob_the_model_learned_to_detect() -> None:
    """A model taught that a bright blob means class 1 (in either half, so no fixed place can pass)
    must put most of the class-1 map on the blob's half, for every positive image.

    The ImageNet weights (the default start of training) give features at once: a randomly
    initialised EfficientNet in eval mode has never estimated its batch-norm statistics and its
    features vanish, and training one from scratch takes minutes on a CPU. Only the linear head
    is fitted (a logistic regression on the pooled features).
    """
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    scorer = FusionModel(NetworkConfig(["image"], image_size=BLOB_SIZE), pretrained=True).image_scorer().eval()
    train, labels, _ = _blob_images(rng, 24)
    with torch.no_grad():
        features = scorer.encoder(torch.from_numpy(train)).numpy()
    fitted = LogisticRegression(max_iter=2000).fit(features, labels)
    linear = scorer.head[1]
    with torch.no_grad():  # logit 1 - logit 0 = the regression's log-odds
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[1] = torch.from_numpy(fitted.coef_[0])
        linear.bias[1] = float(fitted.intercept_[0])

    test, labels, side = _blob_images(rng, 16)
    with torch.no_grad():
        assert (scorer(torch.from_numpy(test)).argmax(1).numpy() == labels).all()  # it did learn the blob
    positive = np.flatnonzero(labels)
    maps = gradcam_maps(scorer, test[positive])
    half = BLOB_SIZE // 2
    left, right = maps[:, :, :half].sum((1, 2)), maps[:, :, half:].sum((1, 2))
    on_blob_half = np.where(side[positive] == 0, left, right) / (left + right)
    assert (on_blob_half > 0.5).all(), on_blob_half
    # Logit 0 is a constant here: no feature favours class 0, so its maps are zero (not NaN).
    assert not gradcam_maps(scorer, test[positive[:2]], target_class=0).any()


@pytest.mark.parametrize("backbone, layer", [("efficientnet-lite0", "encoder.net._bn1"),
                                             ("densenet121", "encoder.features.norm5"),
                                             ("resnet18", "encoder.net.layer4")])
def test_each_backbone_gets_its_last_feature_layer(backbone: str, layer: str) -> None:
    torch.manual_seed(0)
    scorer = FusionModel(NetworkConfig(["image"], backbone=backbone, image_size=64), pretrained=False).image_scorer()
    assert target_layer(scorer) == layer
    images = np.random.default_rng(1).normal(size=(2, 1, 64, 64)).astype(np.float32)
    maps = gradcam_maps(scorer, images)
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0


def test_the_model_is_left_as_it_was() -> None:
    torch.manual_seed(0)
    config = NetworkConfig(["image"], image_size=FIGURE_SIZE, freeze_blocks=3)
    scorer = FusionModel(config, pretrained=True).image_scorer().train()
    before = {name: tensor.clone() for name, tensor in scorer.state_dict().items()}
    trainable = {name: p.requires_grad for name, p in scorer.named_parameters()}
    images = np.random.default_rng(2).normal(size=(3, 1, FIGURE_SIZE, FIGURE_SIZE)).astype(np.float32)

    in_training_mode = gradcam_maps(scorer, images)

    assert scorer.training  # the caller's mode is kept
    assert all(torch.equal(before[name], tensor) for name, tensor in scorer.state_dict().items())
    assert trainable == {name: p.requires_grad for name, p in scorer.named_parameters()}
    assert set(trainable.values()) == {False, True}  # the frozen blocks stayed frozen, the rest trainable
    assert all(p.grad is None for p in scorer.parameters())
    assert not any(m._forward_hooks or m._backward_hooks for m in scorer.modules())
    assert in_training_mode.shape == (3, FIGURE_SIZE, FIGURE_SIZE) and in_training_mode.dtype == np.float32
    assert in_training_mode.min() >= 0.0 and in_training_mode.max() == pytest.approx(1.0)
    # Computed in eval mode whatever the caller's mode (no dropout, no batch statistics).
    np.testing.assert_allclose(in_training_mode, gradcam_maps(scorer.eval(), images), atol=1e-5)
    deeper = gradcam_maps(scorer, images, layer="encoder.net._blocks.10")
    assert not np.allclose(deeper, in_training_mode, atol=0.05)  # the named layer is the one explained
    with pytest.raises(ValueError, match="no layer 'encoder.nope'"):
        gradcam_maps(scorer, images, layer="encoder.nope")
    with pytest.raises(ValueError, match=r"\(M, 1, S, S\)"):
        gradcam_maps(scorer, images[:, 0])


def test_pick_examples_prefers_confident_calls_and_breaks_ties_by_seed() -> None:
    predictions = pd.DataFrame({
        "participant_id": [f"S{i:02d}" for i in range(10)],
        "label":       [1,    1,    1,    0,    0,    0,    1,    0,    1,    pd.NA],
        "probability": [0.95, 0.70, 0.55, 0.10, 0.30, 0.80, 0.20, 0.60, 0.30, 0.99],
        "threshold":   [0.5] * 9 + [0.5],
    })
    chosen = pick_examples(predictions, per_group=2, seed=0)
    assert chosen["group"].tolist() == ["TP", "TP", "TN", "TN", "FP", "FP", "FN", "FN"]
    assert chosen["participant_id"].tolist() == ["S00", "S01", "S03", "S04", "S05", "S07", "S06", "S08"]
    # S06 (p 0.20) and S08 (0.30) are false negatives at 0.30 and 0.20 from the threshold: S06 first.
    ties = predictions.assign(probability=[0.95, 0.70, 0.55, 0.10, 0.30, 0.80, 0.25, 0.60, 0.25, 0.99])
    picks = {pick_examples(ties, per_group=1, seed=seed).query("group == 'FN'")["participant_id"].item()
             for seed in range(10)}
    assert picks == {"S06", "S08"}
    assert pick_examples(ties, 1, seed=3).equals(pick_examples(ties, 1, seed=3))
    with pytest.raises(InputError, match="row 4, column label: '2' is not 0 or 1"):
        pick_examples(predictions.assign(label=[1, 1, 2, 0, 0, 0, 1, 0, 1, 0]))
    with pytest.raises(InputError, match="lack the column.*threshold"):
        pick_examples(predictions.drop(columns="threshold"))


def _write_bundle(folder: Path, modalities: list[str], field_of_view_mm: float | None = None) -> Path:
    """A complete bundle as training writes it, minus the training (and the ONNX graph)."""
    encoders = {"lab": TabularEncoder(numeric=[NumericColumn("albumin", "numeric", 40.0, 39.0, 4.0, True)])}
    encoders = {m: e for m, e in encoders.items() if m in modalities}
    config = NetworkConfig(modalities, image_size=FIGURE_SIZE,
                         tabular_inputs={m: len(e.feature_names) for m, e in encoders.items()})
    torch.manual_seed(0)
    bundle = bundle_io.Bundle(model=FusionModel(config, pretrained=False).eval(), config=config,
                              preprocess=PreprocessParams(size=FIGURE_SIZE, field_of_view_mm=field_of_view_mm),
                              encoders=encoders, threshold=0.5, input_schema={}, training={"seed": 0})
    bundle_io.write_bundle_files(bundle, folder, "# card\n")
    bundle_format.write_manifest(folder)
    return folder


@pytest.mark.parametrize("stills", [True, False], ids=["stills-letterbox", "recordings-physical"])
def test_figure_from_real_files(tmp_path: Path, stills: bool) -> None:
    """Without stills, P008 has no file at all, and P002's recording no pixel size, which a
    model resampling to physical pixels cannot use: both are the most confident of their group
    (TP), so choosing either would leave a panel without an image and fail here."""
    made = make_cohort(tmp_path / "cohort", seed=0, n_participants=8, images=stills)
    if not stills:
        edit_cell(made.root / "videos.csv", row=3, column="mm_per_pixel", value="")  # P002's recording
    cohort = load_cohort(made.root)
    ids = made.participant_ids
    predictions = pd.DataFrame({"participant_id": ids, "label": [i % 2 for i in range(8)],
                                "probability": [0.2, 0.9, 0.8, 0.1, 0.6, 0.4, 0.3, 0.99], "threshold": 0.5})
    bundle = _write_bundle(tmp_path / "bundle", ["image", "lab"], None if stills else 6.4)  # 0.1 mm per pixel
    out = tmp_path / "figures" / "gradcam.png"
    assert gradcam_figure(bundle, cohort, predictions, out, per_group=2, seed=0) == out
    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape[0] > picture.shape[1]  # four rows of at most two panels
    assert [p.name for p in out.parent.iterdir()] == ["gradcam.png"]  # no temporary file left

    tables_only = _write_bundle(tmp_path / "tables", ["lab"])
    assert gradcam_figure(tables_only, cohort, predictions, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    with pytest.raises(InputError, match="participant X9 of the predictions is not in"):
        gradcam_figure(bundle, cohort, predictions.assign(participant_id=ids[:-1] + ["X9"]), out)
