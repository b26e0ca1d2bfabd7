"""The segmentation model's recipe (sarco_core.measure.segmentation) and the measurement bundle's
loader (sarco_core.bundle): a frame in, the model's input out; logits in, labels at the frame's
size out; the bundle's files checked with the manifest, each failure naming the file."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from sarco_core.bundle import (APONEUROSIS_CONFIG, APONEUROSIS_KIND, APONEUROSIS_ONNX, BundleError,
                               default_measurement_bundle, load_measurement_bundle, write_manifest)
from sarco_core.imaging import ScanRegionNotFound
from sarco_core.measure import (DEEP, SUPERFICIAL, SegmentationRecipe, frame_labels, keep_main_bands,
                                labels_from_bands, labels_from_logits, measure_segmented, muscle_thickness_px,
                                prepare_segmentation_input)
from sarco_core.measure.segmentation import RecipeError
from tests.support.real_data import real_file

RECIPE = SegmentationRecipe(size=128)


def real_pair(name: str) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(real_file(f"dl-track-aponeuroses/images/{name}")), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(real_file(f"dl-track-aponeuroses/masks/{name}")), cv2.IMREAD_GRAYSCALE)
    return image, labels_from_bands(mask)


def ideal_logits(labels: np.ndarray, size: int) -> np.ndarray:
    """What a perfect model answers at its input size: the labels' one-hot, area-resized."""
    one_hot = np.stack([(labels == k).astype(np.float32) for k in range(3)], axis=2)
    return cv2.resize(one_hot, (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1) * 10.0


def test_input_is_the_scan_region_stretched_to_the_square_and_scaled():
    image, _ = real_pair("img_00003.png")  # a 1234x688 screenshot with the scanner's UI around the scan
    prepared = prepare_segmentation_input(image, RECIPE)
    x0, y0, x1, y1 = prepared.box
    assert prepared.frame_shape == image.shape[:2]
    assert x0 > 100 and x1 < image.shape[1] - 100  # the side panels are cut off
    assert prepared.grey.shape == (y1 - y0, x1 - x0) and prepared.grey.dtype == np.uint8
    assert prepared.tensor.shape == (1, 1, 128, 128) and prepared.tensor.dtype == np.float32
    # (grey/255 - mean) / std: EfficientNet-Lite's scaling maps 0..255 to about -1..1
    assert -1.0 <= prepared.tensor.min() < -0.5 and 0.5 < prepared.tensor.max() <= 1.0
    assert not RECIPE.crop_to_scan or prepared.grey.shape != image.shape[:2]


def test_a_given_box_is_used_and_no_crop_keeps_the_whole_frame():
    image, _ = real_pair("img_00001.png")
    boxed = prepare_segmentation_input(image, RECIPE, box=(10, 20, 300, 400))
    assert boxed.box == (10, 20, 300, 400) and boxed.grey.shape == (380, 290)
    whole = prepare_segmentation_input(image, SegmentationRecipe(size=64, crop_to_scan=False))
    assert whole.box == (0, 0, image.shape[1], image.shape[0])


def test_a_blank_frame_has_no_scan_region():
    with pytest.raises(ScanRegionNotFound):
        prepare_segmentation_input(np.zeros((300, 400), np.uint8), RECIPE)


@pytest.mark.parametrize("name", ["img_00001.png", "img_00002.png", "img_00003.png", "img_00036.png"])
def test_round_trip_of_ideal_logits_gives_the_masks_thickness_at_the_original_size(name):
    image, truth = real_pair(name)
    prepared = prepare_segmentation_input(image, SegmentationRecipe(size=256))
    x0, y0, x1, y1 = prepared.box
    logits = ideal_logits(truth[y0:y1, x0:x1], 256)
    measurement, crop_labels = measure_segmented(prepared, logits, SegmentationRecipe(size=256))
    assert crop_labels.shape == prepared.grey.shape
    full = frame_labels(crop_labels, prepared.box, prepared.frame_shape)
    assert full.shape == image.shape[:2]
    expected = muscle_thickness_px(truth).px
    assert measurement.status in ("ok", "no_fascicle_orientation")
    # a 256-pixel input carries the edges to within a pixel or two of the frame's
    assert measurement.muscle_thickness_px == pytest.approx(expected, rel=0.02)
    assert muscle_thickness_px(full).px == measurement.muscle_thickness_px


def test_logits_are_resized_before_the_choice_so_edges_fall_between_input_pixels():
    logits = np.zeros((3, 4, 4), np.float32)
    logits[0] = 1.0
    logits[1, 0] = 3.0  # row 0 superficial, row 3 deep, at 4x4
    logits[2, 3] = 3.0
    labels = labels_from_logits(logits, (40, 40), keep_main=False)
    assert labels.shape == (40, 40)
    rows_superficial = np.flatnonzero((labels == SUPERFICIAL).any(axis=1))
    rows_deep = np.flatnonzero((labels == DEEP).any(axis=1))
    # input rows are 10 output rows apart, centres at 5, 15, ...: the superficial score (3 at
    # row 5, 0 at row 15) beats "other" (1) down to row 11.67; nearest-neighbour would stop at 9
    assert rows_superficial.tolist() == list(range(12)) and rows_deep.tolist() == list(range(28, 40))
    with pytest.raises(ValueError, match=r"\(3, h, w\)"):
        labels_from_logits(np.zeros((2, 4, 4)), (8, 8))


def test_cleanup_keeps_the_main_band_and_its_pieces_beside_it():
    labels = np.zeros((100, 200), np.uint8)
    labels[10:14, 0:90] = SUPERFICIAL       # the aponeurosis, broken by a gap ...
    labels[11:15, 100:200] = SUPERFICIAL    # ... its other piece: kept
    labels[60:63, 40:44] = SUPERFICIAL      # a speck in the muscle: dropped
    labels[40:44, 20:60] = SUPERFICIAL      # a blob under the main piece, sharing its columns: dropped
    labels[80:84, :] = DEEP
    cleaned = keep_main_bands(labels)
    assert (cleaned[10:15] == labels[10:15]).all()
    assert not (cleaned[30:70] == SUPERFICIAL).any()
    assert (cleaned[80:84] == DEEP).all()


def test_recipe_round_trips_through_a_dict_and_refuses_unknown_or_bad_values():
    assert SegmentationRecipe.from_dict(RECIPE.to_dict()) == RECIPE
    with pytest.raises(RecipeError, match="unknown"):
        SegmentationRecipe.from_dict({**RECIPE.to_dict(), "colour": True})
    with pytest.raises(RecipeError, match="size"):
        SegmentationRecipe(size=8)
    with pytest.raises(RecipeError, match="std"):
        SegmentationRecipe(std=0.0)


# --- the measurement bundle ------------------------------------------------------------------

def write_bundle(folder, **changes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"kind": APONEUROSIS_KIND, "format_version": 1, "labels": {"0": "other",
              "1": "superficial aponeurosis", "2": "deep aponeurosis"}, "recipe": RECIPE.to_dict(), **changes}
    (folder / APONEUROSIS_CONFIG).write_text(json.dumps(config), encoding="utf-8")
    (folder / APONEUROSIS_ONNX).write_bytes(b"onnx graph")
    write_manifest(folder)


def test_measurement_bundle_loads_its_recipe_and_names_its_graph(tmp_path):
    write_bundle(tmp_path / "model")
    bundle = load_measurement_bundle(tmp_path / "model")
    assert bundle.recipe == RECIPE
    assert bundle.onnx_path == tmp_path / "model" / APONEUROSIS_ONNX
    assert len(bundle.model_sha256) == 64 and bundle.model_name.startswith("aponeurosis-")


@pytest.mark.parametrize(("changes", "message"), [
    ({"kind": "classifier"}, "kind 'classifier'"),
    ({"format_version": 9}, "format_version 9"),
    ({"labels": {"0": "other", "1": "deep aponeurosis", "2": "superficial aponeurosis"}}, "labels"),
    ({"recipe": {"size": 4}}, "recipe: size 4"),
])
def test_measurement_bundle_refuses_a_config_it_cannot_use(tmp_path, changes, message):
    write_bundle(tmp_path / "model", **changes)
    with pytest.raises(BundleError, match=message) as caught:
        load_measurement_bundle(tmp_path / "model")
    assert "aponeurosis.json" in str(caught.value) and "fix:" in str(caught.value)


def test_measurement_bundle_refuses_a_changed_file_a_classifier_and_a_missing_folder(tmp_path):
    write_bundle(tmp_path / "model")
    (tmp_path / "model" / APONEUROSIS_ONNX).write_bytes(b"other graph")
    with pytest.raises(BundleError, match="aponeurosis.onnx: content differs"):
        load_measurement_bundle(tmp_path / "model")
    classifier = tmp_path / "classifier"
    classifier.mkdir()
    (classifier / "model.onnx").write_bytes(b"x")
    write_manifest(classifier)
    with pytest.raises(BundleError, match="not a measurement model"):
        load_measurement_bundle(classifier)
    with pytest.raises(BundleError, match="not a folder"):
        load_measurement_bundle(tmp_path / "absent")


def test_default_model_follows_the_environment_and_names_the_fix(tmp_path, monkeypatch):
    write_bundle(tmp_path / "model")
    monkeypatch.setenv("SARCO_APONEUROSIS_MODEL", str(tmp_path / "model"))
    assert default_measurement_bundle() == tmp_path / "model"
    monkeypatch.setenv("SARCO_APONEUROSIS_MODEL", str(tmp_path / "nowhere"))
    with pytest.raises(BundleError, match="sarco measure train"):
        default_measurement_bundle()


def test_keeping_the_main_bands_does_not_depend_on_empty_rows_around_them() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        labels = np.zeros((40, 90), np.uint8)
        for _ in range(rng.integers(2, 8)):
            y, x = rng.integers(0, 36), rng.integers(0, 80)
            labels[y:y + rng.integers(1, 4), x:x + rng.integers(3, 60)] = rng.integers(1, 3)
        padded = np.pad(labels, ((25, 31), (0, 0)))
        assert (keep_main_bands(padded)[25:-31] == keep_main_bands(labels)).all()
