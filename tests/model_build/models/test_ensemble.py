"""`sarco train --ensemble K`: cross-fitted folds, one averaged network, resume per member.

Tiny runs (64 px, 1 epoch, a dozen participants) check the machinery; what an ensemble gains is
measured by benchmarks/bench_train.py (docs/models.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import typer
from typer.testing import CliRunner

from model_build.cohort import load_cohort
from model_build.commands import evaluate, train
from model_build.models.bundle import load_bundle
from model_build.models import crossval
from model_build.models.ensemble import MEMBERS, compose, cross_fitted_splits, fit_ensemble, member_seed
from model_build.models.fusion import FusionModel, ModelBatch, NetworkConfig
from model_build.models.train import Trainer, TrainingError, TrainOptions
from model_build.models.train import train as run_training
from model_build.study.design import assign_folds
from model_build.study.tuning import development_rows
from testkit.cohort_factory import make_cohort

QUICK = ["--quick", "--epochs", "1", "--threads", "1", "--modalities", "image"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 development participants (6 per class) and 6 external ones, real image files."""
    return make_cohort(tmp_path_factory.mktemp("cohort") / "c", seed=0, n_participants=18).root


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    application = typer.Typer()
    for command in (train, evaluate):
        command.register(application)
    return application


def test_cross_fitted_splits_hold_out_every_participant_once_with_both_classes() -> None:
    labels = np.array([0] * 20 + [1] * 9)
    splits = cross_fitted_splits(labels, 4, seed=7)
    held_out = np.concatenate([held for _, held in splits])
    assert np.array_equal(np.sort(held_out), np.arange(len(labels)))  # each exactly once
    for train_rows, held in splits:
        assert not set(train_rows) & set(held) and len(train_rows) + len(held) == len(labels)
        assert set(labels[held]) == {0, 1}
    again = cross_fitted_splits(labels, 4, seed=7)
    other = cross_fitted_splits(labels, 4, seed=8)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(splits, other))
    with pytest.raises(TrainingError, match="at least 10 participants of each class"):
        cross_fitted_splits(labels, 5, seed=7)
    assert len({member_seed(0, k) for k in range(5)}) == 5


def test_the_composed_network_outputs_the_mean_of_the_members_logits() -> None:
    config = NetworkConfig(modalities=["image"], image_size=64)
    members = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        members.append(FusionModel(config, pretrained=False).eval())
    ensemble = compose(members)
    assert ensemble.config.image_members == 3
    torch.manual_seed(0)
    images = torch.randn(5, 1, 64, 64)
    with torch.no_grad():
        expected = torch.stack([m.image_scorer()(images) for m in members]).mean(dim=0)
        assert torch.allclose(ensemble.image_scorer()(images), expected, atol=1e-5)
        # Participant pooling (two images, then three) is the mean over members and images.
        batch = ModelBatch(present=torch.ones(2, 1, dtype=torch.bool), images=images,
                      image_owner=torch.tensor([0, 0, 1, 1, 1]))
        pooled = torch.stack([m(batch).logits for m in members]).mean(dim=0)
        assert torch.allclose(ensemble(batch).logits, pooled, atol=1e-5)


@pytest.mark.slow
def test_an_ensemble_bundle_is_one_graph_that_evaluates_like_any_bundle(app: typer.Typer, cohort: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "ensemble"
    result = CliRunner().invoke(app, ["train", str(cohort), "--out", str(out), *QUICK, "--ensemble", "3"])
    assert result.exit_code == 0, result.output
    assert not (out / MEMBERS).exists()
    bundle = load_bundle(out)  # manifest checked; weights fit the three-member config
    assert bundle.config.image_members == 3
    training = bundle.training
    assert [m["seed"] for m in training["members"]] == [member_seed(0, k) for k in range(3)]
    assert sum(m["held_out"] for m in training["members"]) == 12
    assert training["participants"] == {"train": 12, "validation": 12, "positive": 6}
    assert training["metrics"]["validation"]["n"] == 12  # the threshold saw every participant
    assert training["threshold"]["chosen_on"] == "out-of-fold predictions of the members (12 participants)"
    assert training["metrics"]["onnx_parity_max_abs_diff"] <= 1e-4
    assert "Ensemble of 3 networks" in (out / "MODEL_CARD.md").read_text()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"image": np.zeros((2, 1, 64, 64), np.float32)})[0].shape == (2, 2)

    result = CliRunner().invoke(app, ["evaluate", str(out), str(cohort), "--cohort", "external",
                                      "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n"] == 6


@pytest.mark.slow
def test_resume_after_a_crash_keeps_finished_members_and_ends_with_the_same_weights(
        cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = TrainOptions.quick(modalities=["image"], epochs=1, threads=1, ensemble=2)
    run_training(cohort, tmp_path / "straight", options)

    original = Trainer.fit
    fitted: list[int] = []

    def crash_in_the_second_member(self: Trainer, *args, **kwargs) -> Trainer:  # noqa: ANN002, ANN003
        fitted.append(self.options.seed)
        if fitted == [member_seed(0, 0), member_seed(0, 1)]:  # once
            raise KeyboardInterrupt("power cut")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", crash_in_the_second_member)
    with pytest.raises(KeyboardInterrupt):
        run_training(cohort, tmp_path / "crashed", options)
    with pytest.raises(TrainingError, match="not empty"):
        run_training(cohort, tmp_path / "crashed", options)
    fitted.clear()
    run_training(cohort, tmp_path / "crashed", options, resume=True)
    assert fitted == [member_seed(0, 1)]  # the first member was loaded, not trained again

    monkeypatch.setattr(Trainer, "fit", original)
    first, second = load_bundle(tmp_path / "straight").model, load_bundle(tmp_path / "crashed").model
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key


def test_an_ensemble_of_a_fused_model_is_refused(cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="image models only"):
        run_training(cohort, tmp_path / "fused", TrainOptions.quick(modalities=["image", "lab"], ensemble=2))
    with pytest.raises(TrainingError, match="use 1"):
        run_training(cohort, tmp_path / "zero", TrainOptions.quick(modalities=["image"], ensemble=0))


@pytest.mark.slow
def test_cross_validation_scores_each_fold_with_an_ensemble_that_never_saw_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/bench_recipe.py's loop with --ensemble: every fold is scored by the averaged
    members, all trained on the other folds."""
    loaded = load_cohort(make_cohort(tmp_path / "c", seed=1, n_participants=36).root)
    rows = development_rows(loaded.participants, tmp_path)
    fold_of = assign_folds(rows["label"].astype(int).to_numpy(), 2, seed=3)
    fitted: list[tuple[set, list[Trainer]]] = []

    def recording(cohort, training, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        members = fit_ensemble(cohort, training, *args, **kwargs)
        fitted.append((set(training["participant_id"]), members))
        return members

    monkeypatch.setattr(crossval, "fit_ensemble", recording)
    options = TrainOptions.quick(modalities=["image"], epochs=1, threads=1, ensemble=2)
    folds = crossval.out_of_fold(loaded, rows, fold_of, None, lambda fold: options, tmp_path / "scratch")
    scored = [set(fold.predictions["participant_id"]) for fold in folds]
    assert set().union(*scored) == set(rows["participant_id"]) and sum(map(len, scored)) == len(rows)
    assert len(fitted) == len(folds) == 2
    for fold, (trained_on, members) in zip(scored, fitted):
        assert not fold & trained_on
        assert len(members) == 2 and members[0].model.config.image_members == 2  # the averaged network scored
