"""Fine-tuning options of the image model: layer-wise learning rates (`--layer-decay`) and mixup
(`--mixup`). Whether they help is benchmarks/bench_recipe.py's question; these tests check that
each does what docs/models.md says, and refuses what it cannot do."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from model_build.commands import train
from model_build.models.fusion import ModelBatch
from model_build.models.image import FlipAveraged, build_image_encoder, freeze_early_layers, layer_rates
from model_build.models.mixup import mix_participants
from model_build.models.train import Trainer, TrainingError, TrainOptions
from testkit.cohort_factory import make_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cohort(tmp_path_factory.mktemp("fine-tuning") / "c", seed=1, n_participants=12).root


def _image_options(**overrides) -> TrainOptions:
    return TrainOptions.quick(modalities=["image"], epochs=1, batch_size=4, threads=1, **overrides)


def test_layer_rates_decay_from_the_head_convolution_down_to_the_stem() -> None:
    encoder = build_image_encoder("efficientnet-lite0", 64, pretrained=False)
    rates = layer_rates(encoder, 1e-3, 0.5)
    assert len(rates) == 18  # head convolution, 16 blocks, stem
    assert [rate for rate, _ in rates] == pytest.approx([1e-3 * 0.5 ** depth for depth in range(18)])
    assert rates[0][1][0] is encoder.net._conv_head.weight and rates[-1][1][0] is encoder.net._conv_stem.weight
    grouped = [id(p) for _, params in rates for p in params]
    assert sorted(grouped) == sorted(id(p) for p in encoder.parameters())  # each parameter once


def test_layer_rates_leave_frozen_levels_out_and_see_through_the_mirror() -> None:
    encoder = build_image_encoder("efficientnet-lite0", 64, pretrained=False)
    freeze_early_layers(encoder, 4)
    rates = layer_rates(FlipAveraged(encoder, 64), 1e-3, 0.9)
    assert len(rates) == 18 - 5  # the stem and 4 blocks are frozen
    grouped = {id(p) for _, params in rates for p in params}
    assert grouped == {id(p) for p in encoder.parameters() if p.requires_grad}
    with pytest.raises(ValueError, match="efficientnet-lite0 only"):
        layer_rates(build_image_encoder("resnet18", 64), 1e-3, 0.9)


def test_the_optimiser_gives_the_heads_their_rate_and_each_encoder_level_its_own(cohort: Path,
                                                                               tmp_path: Path) -> None:
    trainer = Trainer(_image_options(layer_decay=0.8, backbone_learning_rate=1e-3, learning_rate=5e-3))
    trainer.fit(cohort, tmp_path / "decayed")
    groups = trainer.optimizer.param_groups
    assert [g["base_lr"] for g in groups] == pytest.approx([5e-3] + [1e-3 * 0.8 ** d for d in range(18)])
    heads = {id(p) for p in trainer.model.heads.parameters()}
    assert heads <= {id(p) for p in groups[0]["params"]}
    assert sum(len(g["params"]) for g in groups) == len([p for p in trainer.model.parameters() if p.requires_grad])


def _batch(owner: list[int], rows: int) -> ModelBatch:
    images = torch.arange(len(owner), dtype=torch.float32).reshape(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    return ModelBatch(present=torch.ones((rows, 1), dtype=torch.bool), images=images,
                      image_owner=torch.tensor(owner))


def test_mixup_pairs_participants_and_blends_their_images_in_turn() -> None:
    owner = [0, 0, 1, 2, 2, 2]  # participant 3 has no image
    mixed, partner, lam = mix_participants(_batch(owner, 4), 0.4, np.random.default_rng(7))
    assert 0.0 < lam < 1.0
    assert partner[3] == 3 and sorted(partner[:3]) == [0, 1, 2] and list(partner[:3]) != [0, 1, 2]
    images_of = {row: [i for i, o in enumerate(owner) if o == row] for row in range(3)}
    for row, own in images_of.items():
        theirs = images_of[partner[row]]
        for j, image in enumerate(own):
            expected = lam * image + (1 - lam) * theirs[j % len(theirs)]
            assert mixed.images[image, 0, 0, 0].item() == pytest.approx(expected), (row, j)
    again = mix_participants(_batch(owner, 4), 0.4, np.random.default_rng(7))
    assert torch.equal(again[0].images, mixed.images) and again[2] == lam  # the seed decides


def test_mixup_trains_on_blended_losses_and_is_refused_beside_tables(cohort: Path, tmp_path: Path) -> None:
    plain = Trainer(_image_options()).fit(cohort, tmp_path / "plain")
    mixed = Trainer(_image_options(mixup=0.4)).fit(cohort, tmp_path / "mixed")
    assert mixed.state.history[0]["train_loss"] != pytest.approx(plain.state.history[0]["train_loss"])
    for key, value in mixed.model.state_dict().items():
        assert torch.isfinite(value.float()).all(), key
    with pytest.raises(TrainingError, match="--mixup 0.4 blends images, and this model also trains on lab.*fix:"):
        Trainer(replace(_image_options(mixup=0.4), modalities=["image", "lab"])).fit(cohort, tmp_path / "fused")


def test_a_mixup_recipe_on_a_fused_cohort_is_refused_naming_the_recipe_before_any_image_is_read(
        cohort: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    train.register(app)
    result = CliRunner().invoke(app, [str(cohort), "--out", str(tmp_path / "b"), "--recipe", "compact-mixup"])
    assert result.exit_code != 0
    assert "--recipe compact-mixup (--mixup 0.2) blends images, and this model also trains on clinical, lab" \
        in result.output, result.output
    assert "reading images" not in result.output


@pytest.mark.parametrize(("settings", "message"), [
    ({"layer_decay": 0.0}, "--layer-decay 0.0; fix"),
    ({"layer_decay": 1.5}, "--layer-decay 1.5; fix"),
    ({"layer_decay": 0.9, "backbone": "densenet121"}, "--layer-decay with --backbone densenet121"),
    ({"mixup": 0.0}, "--mixup 0.0; fix"),
    ({"freeze_blocks": 4, "backbone": "resnet18"}, "--freeze-blocks 4 with --backbone resnet18: .*fix: drop"),
])
def test_impossible_fine_tuning_options_are_refused_with_a_fix(settings: dict, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        TrainOptions(**settings)
