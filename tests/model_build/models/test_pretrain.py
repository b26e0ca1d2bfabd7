"""`sarco pretrain`: contrastive pretraining of the image encoder on unlabelled images. Tiny runs
check the machinery (what is read, what is written, that training starts from the result); whether
the weights help is benchmarks/bench_recipe.py's question."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from model_build.commands import pretrain
from model_build.models.image import build_image_encoder
from model_build.models.pretrain import Views, image_files, nt_xent
from model_build.models.splits import TrainingError
from testkit.cohort_factory import speckle


def _images(folder: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        Image.fromarray(speckle(rng, (96, 128))).save(folder / f"scan{number:02d}.png")


def test_the_loss_is_low_when_the_views_agree_and_high_when_they_do_not() -> None:
    torch.manual_seed(0)
    first = torch.randn(8, 16)
    assert nt_xent(first, first + 0.01 * torch.randn(8, 16), 0.2) < nt_xent(first, torch.randn(8, 16), 0.2) - 1.0


def test_masks_listed_in_an_index_are_never_read_as_images(tmp_path: Path) -> None:
    data = tmp_path / "shared" / "dl-track"  # the index one level below the folder given
    _images(data / "images", 16)
    _images(data / "masks", 16, seed=1)
    (data / "index.csv").write_text("image,mask\n" + "".join(
        f"images/scan{n:02d}.png,masks/scan{n:02d}.png\n" for n in range(16)))
    found = image_files([tmp_path / "shared"])
    assert len(found) == 16 and all(path.parent.name == "images" for path in found)


def test_too_few_images_are_refused_with_a_fix(tmp_path: Path) -> None:
    _images(tmp_path, 3)
    with pytest.raises(TrainingError, match="3 images .*fix: pretraining needs at least 16"):
        image_files([tmp_path])


def test_the_two_views_differ_and_repeat_from_the_seed() -> None:
    images = np.random.default_rng(0).random((4, 32, 32), dtype=np.float32)
    views = Views(seed=1, size=32)
    first, second = views(images, 0, np.arange(4), 0), views(images, 0, np.arange(4), 1)
    assert first.shape == images.shape and not np.allclose(first, second)
    assert np.array_equal(first, Views(seed=1, size=32)(images, 0, np.arange(4), 0))


def test_the_command_writes_weights_that_training_loads(tmp_path: Path) -> None:
    _images(tmp_path / "scans", 20)
    (tmp_path / "scans" / "broken.png").write_bytes(b"not a png")
    app = typer.Typer()
    pretrain.register(app)
    out = tmp_path / "encoder.safetensors"
    result = CliRunner().invoke(app, [str(tmp_path / "scans"), "--out", str(out), "--image-size", "32",
                                      "--epochs", "1", "--batch-size", "8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "20 images, 1 skipped" in result.output
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["images"] == 20 and "broken.png" in record["skipped"][0] and len(record["history"]) == 1
    imagenet = build_image_encoder("efficientnet-lite0", 32, pretrained=True)
    adapted = build_image_encoder("efficientnet-lite0", 32, pretrained=True, weights=out)
    changed = [k for k, v in adapted.state_dict().items() if not torch.equal(v, imagenet.state_dict()[k])]
    assert changed  # the file's weights are the ones loaded


def test_fewer_images_than_a_batch_still_train(tmp_path: Path) -> None:
    _images(tmp_path / "scans", 16)
    app = typer.Typer()
    pretrain.register(app)
    out = tmp_path / "encoder.safetensors"
    result = CliRunner().invoke(app, [str(tmp_path / "scans"), "--out", str(out), "--image-size", "32",
                                      "--epochs", "1", "--threads", "1"])  # the default batch is 64
    assert result.exit_code == 0, result.output
    assert np.isfinite(json.loads(out.with_suffix(".json").read_text())["history"][0]["loss"])


def test_the_output_must_be_a_safetensors_file(tmp_path: Path) -> None:
    _images(tmp_path / "scans", 16)
    app = typer.Typer()
    pretrain.register(app)
    result = CliRunner().invoke(app, [str(tmp_path / "scans"), "--out", str(tmp_path / "encoder.pth")])
    assert result.exit_code == 1 and "*.safetensors" in result.output
