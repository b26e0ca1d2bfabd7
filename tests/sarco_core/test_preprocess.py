"""The shared preprocessing: geometry, parameters as JSON, real images, and training == device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sarco_core.preprocess import PreprocessError, Preprocessor, PreprocessParams
from tests.support.paths import REPO
from tests.support.real_data import real_file

REAL_IMAGES = [  # one per source and format: RGBA and grey PNG crops, PNG screenshots, JPEG with UI, TIFF
    "muscle-us-timtrack/single_images/example_ultrasound_image2.png",
    "muscle-us-timtrack/dataset1/S1/S1_L20_step_025.png",
    "muscle-us-timtrack/dataset2/jumping/gastroc_jumping_048.png",
    "muscle-us-timtrack/dataset3/030/p6_isokinetic030_01_push_01_10.jpg",
    "muscle-us-timtrack/dataset4/SampleA/GM_T_1.png",
    "muscle-us-deepacsa/rectus_img_55.tif",
]


def _bright_rectangle(height: int, width: int) -> np.ndarray:
    return np.full((height, width), 200, np.uint8)


def test_letterbox_keeps_the_aspect_ratio_and_pads_with_black() -> None:
    params = PreprocessParams(size=64, crop_to_scan=False)
    prepared = Preprocessor(params).prepare(_bright_rectangle(100, 200))  # wide: 64 x 32 content
    rows_with_content = np.flatnonzero(prepared.max(axis=1) > 0)
    assert prepared.shape == (64, 64)
    assert (rows_with_content.min(), rows_with_content.max()) == (16, 47)
    assert prepared[0].max() == 0.0 and prepared[20, 0] == pytest.approx(200 / 255, abs=1e-6)


def test_normalisation_uses_the_parameters() -> None:
    params = PreprocessParams(size=32, crop_to_scan=False, mean=0.25, std=0.5)
    network_input = Preprocessor(params)(_bright_rectangle(32, 32))
    assert network_input.shape == (1, 32, 32) and network_input.dtype == np.float32
    assert network_input[0, 0, 0] == pytest.approx((200 / 255 - 0.25) / 0.5, abs=1e-6)


def test_physical_mode_resamples_to_the_field_of_view() -> None:
    # 0.1 mm pixels, 40 mm over 64 px = 0.625 mm per pixel: a 200 x 300 image becomes 32 x 48,
    # kept at the top (skin line) and centred horizontally.
    params = PreprocessParams(size=64, crop_to_scan=False, field_of_view_mm=40.0)
    prepared = Preprocessor(params).prepare(_bright_rectangle(200, 300), mm_per_pixel=0.1)
    rows = np.flatnonzero(prepared.max(axis=1) > 0)
    columns = np.flatnonzero(prepared.max(axis=0) > 0)
    assert (rows.min(), rows.max()) == (0, 31)
    assert (columns.min(), columns.max()) == (8, 55)


def test_physical_mode_needs_the_pixel_size() -> None:
    with pytest.raises(PreprocessError, match="mm per pixel is unknown"):
        Preprocessor(PreprocessParams(field_of_view_mm=40.0, crop_to_scan=False)).prepare(_bright_rectangle(50, 50))


def test_parameters_round_trip_through_json_and_refuse_unknown_keys() -> None:
    params = PreprocessParams(size=96, field_of_view_mm=35.0)
    assert PreprocessParams.from_json(params.to_json()) == params
    with pytest.raises(PreprocessError, match="unknown"):
        PreprocessParams.from_json('{"size": 96, "sharpen": 2}')
    with pytest.raises(PreprocessError, match="version"):
        PreprocessParams.from_json('{"size": 96, "version": 99}')


def test_a_non_image_array_is_a_clear_error() -> None:
    with pytest.raises(PreprocessError):
        Preprocessor().prepare(np.zeros((4, 4, 7), np.uint8))


def test_edge_module_does_not_import_torch_or_pandas() -> None:
    code = ("import sys, sarco_core.preprocess; "
            "bad = {'torch', 'pandas', 'scipy', 'model_build'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def _real_images() -> list[Path]:
    return [real_file(relative) for relative in REAL_IMAGES]


def test_real_images_become_finite_square_inputs_without_the_scanner_ui() -> None:
    preprocessor = Preprocessor(PreprocessParams(size=64))
    for path in _real_images():
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        network_input = preprocessor(pixels)
        assert network_input.shape == (1, 64, 64), path
        assert np.isfinite(network_input).all(), path
        assert network_input.std() > 0.05, f"{path}: the prepared image is flat"
        assert np.array_equal(network_input, preprocessor(pixels)), f"{path}: not deterministic"


def test_training_reads_real_files_exactly_as_the_device_sees_them() -> None:
    """Training decodes file bytes (data.read_frames); the device gets OpenCV frames."""
    from model_build.models.data import read_frames

    preprocessor = Preprocessor(PreprocessParams(size=64))
    for path in _real_images():
        frames, digest = read_frames(path, "image", max_frames=4)
        device_frame = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert len(frames) == 1 and len(digest) == 64
        assert np.array_equal(preprocessor.prepare(frames[0]), preprocessor.prepare(device_frame)), path
