"""`sarco train / evaluate / predict / export` on small real-file cohorts (testkit/cohort_factory.py:
PNG, JPEG, BMP, TIFF and DICOM stills, MP4 and AVI recordings), plus resume and determinism.

Runs are tiny (64 px, 1-2 epochs, a dozen participants): they check the machinery, not accuracy;
the accuracy targets are measured by benchmarks/bench_train.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from rich.progress import TaskID
from typer.testing import CliRunner

from model_build.commands import evaluate, export, predict, train
from model_build.models.bundle import load_bundle
from model_build.models.checkpoint import CHECKPOINT
from model_build.models.train import Trainer, TrainingError, TrainOptions
from model_build.models.training_data import TrainingData
from testkit.cohort_factory import make_cohort
from tests.support.paths import REPO

QUICK = ["--quick", "--epochs", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    application = typer.Typer()
    for command in (train, evaluate, predict, export):
        command.register(application)
    return application


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """18 participants: 12 development (6 per class), 6 external; the last has no lab values
    and no recording."""
    return make_cohort(tmp_path_factory.mktemp("cohort") / "c", seed=0, n_participants=18).root


@pytest.fixture(scope="module")
def model(app: typer.Typer, cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "bundle"
    result = CliRunner().invoke(app, ["train", str(cohort), "--out", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_complete_bundle(model: Path) -> None:
    bundle = load_bundle(model)  # manifest checked
    assert bundle.config.modalities == ["image", "clinical", "lab"] and bundle.config.fusion == "evidential"
    assert {"model.onnx", "weights.safetensors", "MODEL_CARD.md", "input_schema.json"} <= {p.name for p in model.iterdir()}
    assert not (model / CHECKPOINT).exists()
    training = bundle.training
    assert len(training["data_hash"]) == 64 and training["seed"] == 0
    assert training["participants"] == {"train": 8, "validation": 4, "positive": 6}
    assert training["metrics"]["onnx_parity_max_abs_diff"] <= 1e-4
    assert {"torch", "onnxruntime", "monai"} <= set(training["versions"])
    assert bundle.input_schema["lab"]["albumin"]["unit"] == "g/L"
    assert "grip_kg" not in json.dumps(bundle.input_schema)  # reference columns are never inputs


def test_evaluate_writes_the_promised_files(app: typer.Typer, model: Path, cohort: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", str(model), str(cohort), "--cohort", "external",
                                      "--out", str(tmp_path), "--threads", "1"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"n", "n_positive", "auc", "auc_ci", "sensitivity", "specificity", "accuracy", "f1",
            "threshold"} <= set(metrics)
    assert (metrics["n"], metrics["n_positive"]) == (6, 3)
    assert metrics["threshold"] == load_bundle(model).threshold
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert list(predictions.columns) == ["participant_id", "label", "probability", "uncertainty",
                                         "contribution_image", "contribution_clinical", "contribution_lab"]
    shares = predictions[["contribution_image", "contribution_clinical", "contribution_lab"]]
    assert np.allclose(shares.sum(axis=1), 1.0, atol=1e-5)
    no_labs = predictions.set_index("participant_id").loc["P018"]
    assert no_labs["contribution_lab"] == 0.0 and no_labs["contribution_image"] > 0
    assert ((predictions["uncertainty"] > 0) & (predictions["uncertainty"] < 1)).all()


def test_predict_and_a_missing_modality(app: typer.Typer, model: Path, cohort: Path) -> None:
    image, video = cohort / "images" / "P001_long.png", cohort / "videos" / "P001.mp4"
    common = ["predict", str(model), str(image), str(video), "--clinical", "age=81", "--clinical", "sex=F", "--json"]
    full = CliRunner().invoke(app, [*common, "--lab", "albumin=31.5", "--lab", "creatinine=80"])
    without_lab = CliRunner().invoke(app, common)
    assert full.exit_code == 0 and without_lab.exit_code == 0, full.output + without_lab.output
    full, without_lab = json.loads(full.stdout), json.loads(without_lab.stdout)
    assert full["frames"] == 1 + 4  # a still plus four frames sampled from the recording
    assert without_lab["modalities"]["lab"] == {"present": False, "probability": None,
                                                "contribution": {"non_sarcopenia": 0.0, "sarcopenia": 0.0}}
    for klass in ("sarcopenia", "non_sarcopenia"):
        assert sum(m["contribution"][klass] for m in full["modalities"].values()) == pytest.approx(1.0)
        for other in ("image", "clinical"):  # the removed evidence goes to the others
            assert (without_lab["modalities"][other]["contribution"][klass]
                    > full["modalities"][other]["contribution"][klass])


def test_the_readme_python_example_runs_and_agrees_with_sarco_predict(
        app: typer.Typer, model: Path, cohort: Path, capsys: pytest.CaptureFixture) -> None:
    """The README's Python API example, run as written on this test's bundle and files."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    image, video = cohort / "images" / "P001_long.png", cohort / "videos" / "P001.mp4"
    code = (example.replace('"runs/image/bundle"', repr(str(model)))
            .replace('["scan.png", "scan.mp4"]', repr([str(image), str(video)])))
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own documentation
    *decision, probability, _ = capsys.readouterr().out.splitlines()[0].split(" ")
    cli = CliRunner().invoke(app, ["predict", str(model), str(image), str(video), "--clinical",
                                   "age=81", "--clinical", "sex=F", "--json"])
    expected = json.loads(cli.stdout)
    assert " ".join(decision) == expected["decision"]
    assert float(probability) == round(expected["probability"], 3)


def test_bad_input_is_one_clear_line(app: typer.Typer, model: Path, cohort: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    wrong_cohort = runner.invoke(app, ["train", str(cohort), "--out", str(tmp_path / "a"), "--train-cohort",
                                       "poc", *QUICK])
    assert wrong_cohort.exit_code == 1 and "no labelled participant has cohort 'poc'" in wrong_cohort.output
    assert runner.invoke(app, ["train", str(cohort), "--out", str(tmp_path / "b"), "--modalities", "x-ray"]).exit_code == 2
    not_empty = runner.invoke(app, ["train", str(cohort), "--out", str(model), *QUICK])
    assert not_empty.exit_code == 1 and "is not empty" in not_empty.output
    no_checkpoint = runner.invoke(app, ["train", str(cohort), "--out", str(tmp_path / "c"), "--resume", *QUICK])
    assert no_checkpoint.exit_code == 1 and "no checkpoint" in no_checkpoint.output
    bad_value = runner.invoke(app, ["predict", str(model), str(cohort / "images" / "P001_long.png"),
                                    "--lab", "albumin=4,1"])
    assert bad_value.exit_code == 1 and "albumin=4,1: not a number" in bad_value.output
    assert "Traceback" not in wrong_cohort.output + not_empty.output + bad_value.output


def test_export_command_rewrites_graph_and_manifest(app: typer.Typer, model: Path) -> None:
    result = CliRunner().invoke(app, ["export", str(model)])
    assert result.exit_code == 0, result.output
    assert "manifest rewritten" in result.output
    load_bundle(model)


def test_tables_only_cohort_with_each_fusion(app: typer.Typer, tmp_path: Path) -> None:
    tables = make_cohort(tmp_path / "tables", seed=1, n_participants=18, images=False, videos=False).root
    for fusion in ("evidential", "concat", "late"):
        out = tmp_path / fusion
        result = CliRunner().invoke(app, ["train", str(tables), "--out", str(out), "--fusion", fusion, *QUICK])
        assert result.exit_code == 0, result.output
        bundle = load_bundle(out)
        assert bundle.config.modalities == ["clinical", "lab"] and not (out / "model.onnx").exists()
        assert (bundle.stacker is not None) == (fusion == "late")
        evaluated = CliRunner().invoke(app, ["evaluate", str(out), str(tables), "--out", str(out.with_suffix(".eval"))])
        assert evaluated.exit_code == 0, evaluated.output


def test_redirected_training_prints_each_epoch_with_its_losses(app: typer.Typer, tmp_path: Path) -> None:
    tables = make_cohort(tmp_path / "tables", seed=2, n_participants=18, images=False, videos=False).root
    result = CliRunner().invoke(app, ["train", str(tables), "--out", str(tmp_path / "model"), "--quick",
                                      "--epochs", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    epochs = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    for line in epochs:
        assert re.search(r": train loss \d+\.\d{4}, validation log loss \d+\.\d{4} \(done \d+/\d+ in \d+ s\)$", line)


def _options(**overrides) -> TrainOptions:
    return TrainOptions.quick(modalities=["image", "lab"], epochs=2, threads=1, **overrides)


@pytest.mark.slow
def test_resume_after_a_crash_ends_with_the_same_weights(cohort: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "straight").mkdir()
    straight = Trainer(_options()).fit(cohort, tmp_path / "straight")

    (tmp_path / "crashed").mkdir()
    crashing = Trainer(_options())
    original = Trainer.train_epoch

    def crash_in_second_epoch(self: Trainer, epoch: int, task: TaskID) -> float:
        if epoch == 1:
            raise KeyboardInterrupt("power cut")
        return original(self, epoch, task)

    monkeypatch.setattr(Trainer, "train_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        crashing.fit(cohort, tmp_path / "crashed")
    assert (tmp_path / "crashed" / CHECKPOINT).is_file()

    resumed = Trainer(_options())  # the power is still cut: this try stops in the epoch it resumed at
    with pytest.raises(KeyboardInterrupt):
        resumed.fit(cohort, tmp_path / "crashed", resume=True)
    assert resumed.state.epoch == 1
    monkeypatch.setattr(Trainer, "train_epoch", original)
    resumed.fit(cohort, tmp_path / "crashed", resume=True)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [h["train_loss"] for h in resumed.state.history] == [h["train_loss"] for h in straight.state.history]

    changed = Trainer(_options(seed=5))
    with pytest.raises(TrainingError, match="other options or data"):
        changed.fit(cohort, tmp_path / "crashed", resume=True)


def test_images_per_step_keeps_a_seeded_random_subset_of_each_participants_images(cohort: Path) -> None:
    from model_build.models.predict import make_batch

    data = TrainingData.prepare(cohort, _options())
    rows = np.arange(len(data.arrays))
    everything = make_batch(data.arrays, rows, data.preprocessor)
    counts = np.bincount(everything.image_owner.numpy(), minlength=len(rows))
    assert counts.max() > 2  # two stills and frames of one recording each
    draws = [make_batch(data.arrays, rows, data.preprocessor, sample=(2, np.random.default_rng([0, s])))
             for s in (0, 0, 1)]
    for batch in draws:
        assert np.array_equal(np.bincount(batch.image_owner.numpy(), minlength=len(rows)), np.minimum(counts, 2))
    assert torch.equal(draws[0].images, draws[1].images)       # same seed, same images
    assert not torch.equal(draws[0].images, draws[2].images)   # another step, other images


def test_weight_average_keeps_the_averaged_weights_and_survives_a_resume(cohort: Path, tmp_path: Path) -> None:
    (tmp_path / "averaged").mkdir()
    averaged = Trainer(replace(_options(weight_average=0.5), epochs=1, batch_size=3)).fit(cohort, tmp_path / "averaged")
    kept = averaged.model.state_dict()  # fit() loaded the kept (best) weights: the average's
    average = averaged.average.module.state_dict()
    assert all(torch.equal(kept[k], average[k]) for k in average)
    (tmp_path / "plain").mkdir()
    plain = Trainer(replace(_options(), epochs=1, batch_size=3))  # same steps, no average
    plain.fit(cohort, tmp_path / "plain")
    assert any(not torch.equal(value, kept[k]) for k, value in plain.model.state_dict().items()
               if value.is_floating_point())
    averaged.save_checkpoint()
    resumed = Trainer(replace(_options(weight_average=0.5), epochs=1, batch_size=3)).fit(
        cohort, tmp_path / "averaged", resume=True)  # the checkpoint says every epoch is done
    for key, value in averaged.average.state_dict().items():
        assert torch.equal(value, resumed.average.state_dict()[key]), key
    with pytest.raises(TrainingError, match="weight-average"):
        Trainer(_options(weight_average=1.0)).fit(cohort, tmp_path / "bad")
