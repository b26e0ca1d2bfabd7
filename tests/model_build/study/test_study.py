"""`sarco study`: the design (folds, model names, selection rule), leakage, determinism, the
run folder's contract, INT8 for an image-only selection and the edge replay of the demo.

Cohorts come from testkit/cohort_factory.py (real image and video files, random content): these
tests check what the study does with data, not how well a model learns from noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from model_build.commands import study as study_command
from model_build.models.train import Trainer
from model_build.study import borderline
from model_build.study.design import StudyError, StudyOptions, assign_folds, combined_models, select_model
from model_build.study.inputs import StudyReportError, check_results
from model_build.study.runner import run_study
from testkit.cohort_factory import make_cohort

N_PARTICIPANTS = 24  # development 16 (8 per class): the least 5 folds allow; external 8


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    application = typer.Typer()
    study_command.register(application)
    return application


def test_folds_are_stratified_disjoint_and_seeded() -> None:
    labels = np.array([0] * 40 + [1] * 15)
    folds = assign_folds(labels, 5, seed=3)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    for fold in range(5):
        assert np.bincount(labels[folds == fold], minlength=2).tolist() == [8, 3]
    assert np.array_equal(folds, assign_folds(labels, 5, seed=3))
    assert not np.array_equal(folds, assign_folds(labels, 5, seed=4))


def test_too_few_participants_for_the_folds_is_one_clear_error() -> None:
    with pytest.raises(StudyError, match="too few for 5-fold cross-validation; fix: a cohort with at least 8 "):
        assign_folds(np.array([0] * 30 + [1] * 7), 5, seed=0)  # 4/5 of 7 is 5.6 per class, under 6
    with pytest.raises(StudyError, match="too few for 2-fold cross-validation; fix: a cohort with at least 12 "):
        assign_folds(np.array([0] * 30 + [1] * 11), 2, seed=0)
    assign_folds(np.array([0] * 30 + [1] * 8), 5, seed=0)  # 6.4 per class: enough


def test_the_best_type_is_combined_with_each_other_then_with_all() -> None:
    assert combined_models("image", ["image", "clinical", "lab"]) == ["image+clinical", "image+lab",
                                                                     "image+clinical+lab"]
    assert combined_models("lab", ["image", "clinical", "lab"]) == ["image+lab", "clinical+lab", "image+clinical+lab"]
    assert combined_models("clinical", ["clinical", "lab"]) == ["clinical+lab"]
    assert combined_models("image", ["image"]) == []


def test_selection_takes_the_fewest_types_not_significantly_worse_than_the_best() -> None:
    aucs = {"image": 0.827, "clinical": 0.70, "lab": 0.68, "image+clinical": 0.835, "image+clinical+lab": 0.845}
    p_vs_best = {"image": 0.019, "clinical": 0.001, "lab": 0.0005, "image+clinical": 0.40}
    versus = {name: {"p": p, "difference_ci": [-0.2, 0.0]} for name, p in p_vs_best.items()}
    chosen = select_model(aucs, versus, "fewest-not-worse", 0.05)
    # image is significantly worse (P 0.019 < 0.05): the two-type model is the fewest that is not.
    assert chosen["selected"] == "image+clinical"
    assert chosen["best"] == "image+clinical+lab"
    assert "P = 0.400" in chosen["reason"]
    # With alpha 0.01 image is no longer significantly worse: one data type suffices, as in the study.
    assert select_model(aucs, versus, "fewest-not-worse", 0.01)["selected"] == "image"
    assert select_model(aucs, versus, "best", 0.01)["selected"] == "image+clinical+lab"
    eligible = {c["model"]: c["eligible"] for c in chosen["candidates"]}
    assert eligible == {"image": False, "clinical": False, "lab": False, "image+clinical": True,
                        "image+clinical+lab": True}


def test_a_best_model_with_one_data_type_is_not_said_to_beat_models_with_fewer() -> None:
    aucs = {"image": 0.60, "clinical": 0.70, "image+clinical": 0.66}
    versus = {"image": {"p": 0.01, "difference_ci": [-0.2, -0.02]},
              "image+clinical": {"p": 0.3, "difference_ci": [-0.1, 0.03]}}
    chosen = select_model(aucs, versus, "fewest-not-worse", 0.05)
    assert chosen["selected"] == "clinical"
    assert chosen["reason"] == "clinical has the highest development AUC (0.700), and no model has fewer data types"


def test_non_inferiority_reads_the_interval_not_the_p_value() -> None:
    aucs = {"image": 0.80, "clinical": 0.70, "image+clinical": 0.84}
    # image: not significant (P 0.09) but its interval reaches -0.09, beyond the margin 0.05
    versus = {"image": {"p": 0.09, "difference_ci": [-0.09, 0.007]},
              "clinical": {"p": 0.001, "difference_ci": [-0.22, -0.06]}}
    assert select_model(aucs, versus, "fewest-not-worse", 0.05)["selected"] == "image"
    strict = select_model(aucs, versus, "non-inferior", 0.05, margin=0.05)
    assert strict["selected"] == "image+clinical" and strict["margin"] == 0.05
    assert "not shown non-inferior (margin 0.05)" in strict["reason"]
    assert [c["difference_ci"] for c in strict["candidates"] if c["model"] == "image"] == [[-0.09, 0.007]]
    loose = select_model(aucs, versus, "non-inferior", 0.05, margin=0.10)
    assert loose["selected"] == "image" and "-0.090 to 0.007 lies above -0.1" in loose["reason"]


def test_options_are_checked_in_one_place() -> None:
    with pytest.raises(StudyError, match="--selection"):
        StudyOptions(selection="smallest")
    with pytest.raises(StudyError, match="--alpha"):
        StudyOptions(alpha=1.5)
    with pytest.raises(StudyError, match="needs --threshold-target"):
        StudyOptions(threshold_rule="sensitivity")
    with pytest.raises(StudyError, match="no target"):
        StudyOptions(threshold_target=0.9)
    with pytest.raises(StudyError, match="--margin"):
        StudyOptions(selection="non-inferior", margin=0.0)
    options = StudyOptions(seed=5, quick=True)
    fold0, fold1, refit = (options.training(["clinical"], f) for f in (0, 1, None))
    assert len({fold0.seed, fold1.seed, refit.seed}) == 3
    assert options.training(["image", "lab"], 0).image_size == options.image.image_size


@pytest.fixture(scope="module")
def tables_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cohort(tmp_path_factory.mktemp("tables") / "c", seed=2, n_participants=N_PARTICIPANTS,
                       images=False, videos=False).root


@pytest.fixture(scope="module")
def recorded_run(tables_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, list]:
    """A quick tables-only study, recording which participants every training saw and scored."""
    trained_on: list[set[str]] = []
    predicted: list[tuple[int, set[str]]] = []
    original_fit, original_predict = Trainer.fit, Trainer.predict

    def recording_fit(self: Trainer, cohort, out, *, rows, **inputs) -> Trainer:  # noqa: ANN001
        trained_on.append(set(rows["participant_id"]))
        self.recorded = len(trained_on) - 1
        return original_fit(self, cohort, out, rows=rows, **inputs)

    def recording_predict(self: Trainer, frame):  # noqa: ANN001, ANN202
        predicted.append((self.recorded, set(frame["participant_id"])))
        return original_predict(self, frame)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "fit", recording_fit)
        patch.setattr(Trainer, "predict", recording_predict)
        run = run_study(tables_cohort, tmp_path_factory.mktemp("tables-run") / "a", StudyOptions(seed=1, quick=True))
    return run, trained_on, predicted


def test_no_participant_is_predicted_by_a_model_that_trained_on_them(recorded_run) -> None:  # noqa: ANN001
    run, trained_on, predicted = recorded_run
    assert len(trained_on) == 3 * 5 + 3  # three models, five folds, then the refits
    assert predicted and all(not (trained_on[index] & ids) for index, ids in predicted)
    development = {f"P{n:03d}" for n in range(1, 17)}
    for name in ("clinical", "lab", "clinical+lab"):
        table = pd.read_csv(run / "predictions" / name / "development.csv", dtype={"participant_id": str})
        assert sorted(table["participant_id"]) == sorted(development)  # everyone, once
        assert sorted(table["fold"].unique()) == [0, 1, 2, 3, 4]


def test_tables_only_study_is_complete_and_deterministic(recorded_run, tables_cohort: Path,  # noqa: ANN001
                                                         tmp_path: Path) -> None:
    first = recorded_run[0]
    second = run_study(tables_cohort, tmp_path / "b", StudyOptions(seed=1, quick=True))
    results = json.loads((first / "results.json").read_text())
    check_results(results)
    assert list(results["models"]) == ["clinical", "lab", "clinical+lab"]
    assert results["models"]["clinical"]["development"]["n"] == 16
    assert results["int8"] is None and "no images" in results["int8_skipped"]
    assert "borderline" not in results  # no image model: nothing a device would run
    assert "measurements" not in results and not (first / "measurements").exists()  # no images to measure
    assert {c["why"] for c in results["comparisons"]} >= {"multimodal vs other", "monomodal pair"}
    assert all(0.0 <= c["p"] <= 1.0 for c in results["comparisons"])
    for klass in ("sarcopenia", "non_sarcopenia"):
        assert sum(results["contributions"][klass].values()) == pytest.approx(1.0)
    settings = results["provenance"]["torch"]
    assert settings["deterministic_algorithms"] and settings["intra_op_threads"] >= 1
    assert results["provenance"]["packages"]["numpy"] == np.__version__
    broken = json.loads(json.dumps(results))
    broken["provenance"]["torch"]["intra_op_threads"] = "two"
    with pytest.raises(StudyReportError, match="provenance.torch.intra_op_threads must be a whole number"):
        check_results(broken)
    again = json.loads((second / "results.json").read_text())
    for volatile in ("created", "timings"):
        results.pop(volatile), again.pop(volatile)
    results["cohort"].pop("path"), again["cohort"].pop("path")
    assert results == again
    assert (first / "report.html").is_file() and (first / "model-card.md").is_file()
    assert not first.with_name("a.partial").exists()


def test_thresholds_come_from_out_of_fold_predictions_and_reach_the_bundles(recorded_run) -> None:  # noqa: ANN001
    run = recorded_run[0]
    results = json.loads((run / "results.json").read_text())
    for name, model in results["models"].items():
        operating = model["operating_point"]
        assert operating["rule"] == "youden" and "out-of-fold" in operating["chosen_on"]
        assert [f["fold"] for f in operating["calibration"]["folds"]] == [0, 1, 2, 3, 4]
        development = pd.read_csv(run / "predictions" / name / "development.csv")
        cuts = development.groupby("fold")["threshold"].first().tolist()
        assert cuts == pytest.approx(operating["fold_thresholds"])
        assert (development["decision"] == (development["probability"] >= development["threshold"])).all()
        external = pd.read_csv(run / "predictions" / name / "external.csv")
        assert external["threshold"].tolist() == pytest.approx([operating["refit_threshold"]] * len(external))
        config = json.loads((run / model["bundle"] / "config.json").read_text())
        assert config["decision_threshold"] == pytest.approx(operating["refit_threshold"])
        assert config["operating_point"] == operating
        for cohort in results["cohorts"]:
            metrics = model[cohort]
            for share in ("sensitivity", "specificity"):
                if metrics.get(share) is not None:
                    lower, upper = metrics[f"{share}_ci"]
                    assert lower <= metrics[share] <= upper


def test_comparisons_carry_holm_beside_the_raw_p_and_name_their_method(recorded_run) -> None:  # noqa: ANN001
    results = json.loads((recorded_run[0] / "results.json").read_text())
    for cohort in results["cohorts"]:
        family = [c for c in results["comparisons"] if c["cohort"] == cohort]
        assert all(c["p"] <= c["p_holm"] <= min(1.0, len(family) * c["p"]) + 1e-12 for c in family)
        assert min((c["p_holm"] for c in family), default=0) == pytest.approx(
            min((min(1.0, len(family) * c["p"]) for c in family), default=0))  # the smallest: x family size
    development = {c["method"] for c in results["comparisons"] if c["cohort"] == "development"}
    # 16 development participants in 5 folds: a fold holds 1 case, so the test pools (and says so)
    assert development == {"paired DeLong, pooled folds (a fold has fewer than 2 of a class)"}
    assert {c["method"] for c in results["comparisons"] if c["cohort"] != "development"} == {"paired DeLong"}


@pytest.fixture(scope="module")
def image_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images and recordings only (clinical and lab columns dropped from the schema): the study
    then has one model, the image model, which it selects, quantizes and verifies."""
    root = make_cohort(tmp_path_factory.mktemp("images") / "c", seed=4, n_participants=N_PARTICIPANTS).root
    schema = yaml.safe_load((root / "schema.yaml").read_text())
    schema["columns"] = {name: spec for name, spec in schema["columns"].items() if spec["role"] == "reference"}
    (root / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def image_run(app: typer.Typer, image_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("image-run") / "run"
    result = CliRunner().invoke(app, ["study", str(image_cohort), "--out", str(out), "--quick", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "selected" in result.output and "INT8 (tensorrt, entropy)" in result.output
    return out


@pytest.mark.slow  # the module's image study: about 30 s to build
def test_image_only_study_ends_with_a_verified_int8_bundle(image_run: Path) -> None:
    results = json.loads((image_run / "results.json").read_text())
    check_results(results)
    assert results["selected_model"] == "image"
    int8 = results["int8"]
    assert set(int8["cohorts"]) >= {"external"}
    gate = json.loads((image_run / int8["bundle"] / "quantization.json").read_text())["gate"]
    assert gate["status"] == ("accepted" if int8["accepted"] else "rejected")
    assert (image_run / "int8" / "verify.html").is_file()
    assert (image_run / "figures" / "gradcam.png").is_file()
    page = (image_run / "report.html").read_text()
    assert "INT8" in page and "Grad-CAM" in page
    # the device's borderline rule on every cohort, recomputed from the prediction files
    tables = {name: pd.read_csv(image_run / "predictions" / "image" / f"{name}.csv")
              for name in results["cohorts"]}
    assert all((table["n_images"] >= 1).all() and table["logit_sd"].notna().all()
               for table in tables.values())
    assert borderline.summary(tables) == results["borderline"]
    assert "Borderline results on the device" in page
    # the measurements model beside it, on the same participants, from its own prediction files
    block = results["measurements"]
    for name in results["cohorts"]:
        mine = pd.read_csv(image_run / "predictions" / "measurements" / f"{name}.csv", dtype={"participant_id": str})
        image = pd.read_csv(image_run / "predictions" / "image" / f"{name}.csv", dtype={"participant_id": str})
        assert sorted(mine["participant_id"]) == sorted(image["participant_id"])
        assert block["cohorts"][name]["n"] == len(mine) == block["measured"][name]["participants"]
    assert {c["n"] for c in block["comparisons"]} <= {block["cohorts"][c]["n"] for c in results["cohorts"]}
    frames = pd.read_csv(image_run / "measurements" / "frames.csv")
    assert len(frames) == sum(block["measured"][name]["images"] for name in results["cohorts"])
    assert block["recovery"] is None  # not a synthetic cohort: no generator truth
    assert "Muscle measurements beside the image model" in page
    assert (image_run / "tables" / "measurements.csv").is_file()


def test_the_demo_replays_a_recording_on_the_edge_app(image_run: Path, image_cohort: Path, tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    study_command.replay_on_edge(image_cohort, image_run, tmp_path / "edge", console)
    text = console.export_text()
    assert "replaying" in text and "usable frames" in text
    assert "Muscle" in text  # the device's muscle measurement ran (noise: not measured)
    assert any((tmp_path / "edge").iterdir())
    # the recording's listed pixel size goes to the device, for a thickness in mm
    assert study_command._first_recording(image_cohort)[1] == 0.1


def test_a_folder_that_is_not_a_run_is_refused(app: typer.Typer, tables_cohort: Path, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["study", str(tables_cohort), "--out", str(tmp_path), "--quick"])
    assert result.exit_code == 1
    assert "is not a study run; fix: choose a new --out folder" in result.output
    assert (tmp_path / "precious.txt").read_text() == "keep me"
