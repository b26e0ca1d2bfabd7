"""The tuning rule (docs/study.md): every choice is made on development or fixed before the run.

`sarco tune` reads development only; `sarco study --tuning` refuses a tuning that saw its
validation participants and records where the image settings came from; and no choice of the
study moves when the validation cohorts' labels are permuted, while their results do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from model_build.commands import tune as tune_command
from model_build.models import data as model_data
from model_build.models.train import Trainer
from model_build.study.design import StudyError, StudyOptions
from model_build.study.inputs import StudyReportError, check_results
from model_build.study.runner import run_study
from model_build.study.tuning import TuneOptions, choose, tune
from testkit.cohort_factory import make_cohort

N_PARTICIPANTS = 36  # development 24 (12 per class): the least 2 folds allow; external 12
VOLATILE = ("created", "provenance")


@pytest.fixture(scope="module")
def image_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images and recordings only: the study's one model is the image model."""
    root = make_cohort(tmp_path_factory.mktemp("tune") / "c", seed=5, n_participants=N_PARTICIPANTS).root
    schema = yaml.safe_load((root / "schema.yaml").read_text())
    schema["columns"] = {name: spec for name, spec in schema["columns"].items() if spec["role"] == "reference"}
    (root / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    return root


def _options(**overrides) -> TuneOptions:
    return TuneOptions(**{"sizes": (32,), "epochs": (1, 2), "folds": 2, "seed": 4, **overrides})


def _with_validation_labels_flipped(root: Path, copy: Path) -> Path:
    shutil.copytree(root, copy)
    table = pd.read_csv(copy / "participants.csv", dtype=str, keep_default_na=False)
    validation = table["cohort"] != "development"
    table.loc[validation, "label"] = table.loc[validation, "label"].map({"0": "1", "1": "0"})
    table.to_csv(copy / "participants.csv", index=False)
    return copy


def _stable(tuning: dict) -> dict:
    kept = {key: value for key, value in tuning.items() if key not in VOLATILE}
    kept["cohort"] = {"development_fingerprint": tuning["cohort"]["development_fingerprint"]}
    for candidate in kept["candidates"]:
        candidate.pop("seconds")
    return kept


@pytest.fixture(scope="module")
def tuned(image_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[list[str]], Path]:
    """A tuning, recording every participant whose images were read or who trained or was scored."""
    touched: list[list[str]] = []
    original_load, original_fit, original_predict = model_data.load_images, Trainer.fit, Trainer.predict

    def recording_load(cohort, participant_ids, *args, **kwargs):  # noqa: ANN001, ANN202
        touched.append(list(participant_ids))
        return original_load(cohort, participant_ids, *args, **kwargs)

    def recording_fit(self, cohort, out, *, rows, **inputs):  # noqa: ANN001, ANN202
        touched.append(rows["participant_id"].tolist())
        return original_fit(self, cohort, out, rows=rows, **inputs)

    def recording_predict(self, frame):  # noqa: ANN001, ANN202
        touched.append(frame["participant_id"].tolist())
        return original_predict(self, frame)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_data, "load_images", recording_load)
        patch.setattr(Trainer, "fit", recording_fit)
        patch.setattr(Trainer, "predict", recording_predict)
        tuning = tune(image_cohort, _options())
    path = tmp_path_factory.mktemp("tuning") / "tuning.json"
    path.write_text(json.dumps(tuning))
    return tuning, touched, path


def test_tuning_reads_development_participants_only(tuned, image_cohort: Path) -> None:  # noqa: ANN001
    tuning, touched, _ = tuned
    participants = pd.read_csv(image_cohort / "participants.csv", dtype=str)
    development = set(participants.loc[participants["cohort"] == "development", "participant_id"])
    assert touched and all(set(ids) <= development for ids in touched)
    assert set().union(*map(set, touched)) == development
    assert tuning["data"] == {"cohorts_read": ["development"], "participants": len(development),
                              "participant_ids": sorted(development)}
    assert [(c["image_size"], c["epochs"]) for c in tuning["candidates"]] == [(32, 1), (32, 2)]
    for candidate in tuning["candidates"]:
        assert len(candidate["fold_aucs"]) == 2 and 0.0 <= candidate["mean_auc"] <= 1.0
        assert all(1 <= run <= candidate["epochs"] for run in candidate["epochs_run"])
    assert tuning["chosen"] in ({"image_size": 32, "epochs": 1}, {"image_size": 32, "epochs": 2})


def test_tuning_does_not_move_when_validation_labels_change_and_repeats_exactly(
        tuned, image_cohort: Path, tmp_path: Path) -> None:  # noqa: ANN001
    flipped = _with_validation_labels_flipped(image_cohort, tmp_path / "flipped")
    assert _stable(tune(flipped, _options())) == _stable(tuned[0])


def test_the_one_standard_error_rule_takes_the_cheapest_close_candidate() -> None:
    scored = [{"image_size": 64, "epochs": 4, "mean_auc": 0.80, "fold_aucs": [0.78, 0.82]},
              {"image_size": 64, "epochs": 8, "mean_auc": 0.815, "fold_aucs": [0.795, 0.835]},
              {"image_size": 96, "epochs": 4, "mean_auc": 0.83, "fold_aucs": [0.81, 0.85]},  # standard error 0.02
              {"image_size": 80, "epochs": 4, "mean_auc": 0.79, "fold_aucs": [0.78, 0.80]}]
    chosen, best = choose(scored, "one-se")
    assert (best["image_size"], best["epochs"]) == (96, 4)
    assert (chosen["image_size"], chosen["epochs"]) == (64, 8)  # 0.815 >= 0.83 - 0.02; 0.80 is not
    assert choose(scored, "best")[0] is best


def test_a_study_with_a_tuning_trains_the_chosen_settings_and_says_so(tuned, image_cohort: Path,  # noqa: ANN001
                                                                       tmp_path: Path) -> None:
    tuning, _, path = tuned
    run = run_study(image_cohort, tmp_path / "run", StudyOptions(seed=1, folds=2, int8=False, tuning=str(path)))
    results = json.loads((run / "results.json").read_text())
    check_results(results)
    made = {entry["choice"]: entry for entry in results["choices"]["made"]}
    image = made["image settings"]
    assert image["kind"] == "tuned" and image["data"] == ["development"]
    assert image["value"].startswith(f"{tuning['chosen']['image_size']} px, {tuning['chosen']['epochs']} epochs")
    assert "SHA-256" in image["how"] and "2-fold cross-validation on 24 development participants" in image["how"]
    training = json.loads((run / "bundles" / "image" / "training.json").read_text())
    assert training["options"]["image_size"] == tuning["chosen"]["image_size"]
    assert all(entry["data"] in ([], ["development"]) for entry in made.values() if entry["kind"] != "check")
    assert results["choices"]["validation_cohorts"] == ["external"]
    assert "Choices and the data they saw" in (run / "report.html").read_text()


def test_a_study_refuses_a_tuning_that_saw_its_validation_participants(tuned, image_cohort: Path,  # noqa: ANN001
                                                                        tmp_path: Path) -> None:
    tuning, _, _ = tuned
    leaked = json.loads(json.dumps(tuning))
    leaked["data"]["participant_ids"].append("P036")  # an external participant
    (tmp_path / "leaked.json").write_text(json.dumps(leaked))
    with pytest.raises(StudyError, match=r"leaked.json: tuned on 1 participant\(s\) of the external cohort "
                                         r"\(e.g. P036\); validation cohorts are touched once"):
        run_study(image_cohort, tmp_path / "a", StudyOptions(folds=2, tuning=str(tmp_path / "leaked.json")))
    other = json.loads(json.dumps(tuning))
    other["cohort"]["development_fingerprint"] = "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(StudyError, match="other.json: tuned on another development cohort"):
        run_study(image_cohort, tmp_path / "b", StudyOptions(folds=2, tuning=str(tmp_path / "other.json")))
    (tmp_path / "broken.json").write_text('{"schema_version": 1, "chosen": {"image_size": "80"}}')
    with pytest.raises(StudyError, match="broken.json: not a tuning file from `sarco tune`: chosen must hold"):
        StudyOptions(tuning=str(tmp_path / "broken.json"))
    with pytest.raises(StudyError, match="--quick and --tuning"):
        StudyOptions(quick=True, tuning=str(tmp_path / "other.json"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_no_study_choice_moves_when_the_validation_labels_are_permuted(tmp_path: Path) -> None:
    """A tables-only quick study twice: the second with every validation label flipped."""
    root = make_cohort(tmp_path / "c", seed=2, n_participants=24, images=False, videos=False).root
    flipped = _with_validation_labels_flipped(root, tmp_path / "flipped")
    first, second = (json.loads((run_study(cohort, tmp_path / name, StudyOptions(seed=1, quick=True))
                                 / "results.json").read_text()) for cohort, name in ((root, "a"), (flipped, "b")))
    assert first["choices"] == second["choices"]
    assert first["selection"] == second["selection"]
    for name, model in first["models"].items():
        assert model["operating_point"] == second["models"][name]["operating_point"]
        assert model["development"] == second["models"][name]["development"]
    # the validation results did see the flip: the check above could have failed
    assert any(model["external"]["auc"] != second["models"][name]["external"]["auc"]
               for name, model in first["models"].items())
    kinds = {entry["choice"]: entry["kind"] for entry in first["choices"]["made"]}
    assert kinds["image settings"] == "pre-specified" and kinds["thresholds"] == "tuned"
    check_results(first)
    leaked = json.loads(json.dumps(first))
    next(e for e in leaked["choices"]["made"] if e["choice"] == "thresholds")["data"] = ["development", "external"]
    with pytest.raises(StudyReportError, match=r"choices.made\[\d\]: a tuned choice must have seen development only"):
        check_results(leaked)


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    application = typer.Typer()
    tune_command.register(application)
    application.command("other")(lambda: None)  # a group: `tune` stays a sub-command
    return application


def test_a_cohort_without_images_has_nothing_to_tune(tmp_path: Path) -> None:
    root = make_cohort(tmp_path / "c", seed=1, n_participants=40, images=False, videos=False).root
    with pytest.raises(StudyError, match="no images or recordings, and `sarco tune` chooses the image model's"):
        tune(root, _options())


@pytest.mark.parametrize(("arguments", "message"), [
    (["--sizes", "64,abc"], "'64,abc': give whole numbers separated by commas"),
    (["--sizes", "60"], "--sizes 60: give image sizes in pixels, multiples of 8 from 32"),
    (["--epochs", "0"], "--epochs 0: give epoch budgets of at least 1"),
    (["--out", "tuning.txt"], "give a .json file, e.g. --out tuning.json"),
])
def test_tune_mistakes_get_one_clear_line(app: typer.Typer, image_cohort: Path, tmp_path: Path,
                                          arguments: list[str], message: str) -> None:
    out = ["--out", str(tmp_path / "tuning.json")] if "--out" not in arguments else []
    result = CliRunner().invoke(app, ["tune", str(image_cohort), *out, *arguments])
    assert result.exit_code in (1, 2), result.output
    assert message in " ".join(result.output.replace("│", " ").split())  # Rich's error box, unwrapped
    assert not (tmp_path / "tuning.json").exists()


def test_the_study_defaults_are_the_committed_tuning_choice() -> None:
    """The defaults cite docs/results/tuning-seed1.json: changing one without the other fails."""
    from model_build.study import choices
    from model_build.study.design import image_options
    from model_build.study.tuning import read_tuning

    tuning = read_tuning(Path(__file__).resolve().parents[3] / "docs" / "results" / "tuning-seed1.json")
    defaults = image_options(False, 0)
    assert (defaults.image_size, defaults.epochs) == (tuning["chosen"]["image_size"], tuning["chosen"]["epochs"])
    assert tuning["data"]["cohorts_read"] == ["development"] and tuning["rule"] == "one-se"
    assert tuning["cohort"]["development_fingerprint"] == choices.DEFAULTS_FINGERPRINT
    assert choices.DEFAULTS_TUNING == "docs/results/tuning-seed1.json"
    assert {key: getattr(defaults, key) for key in tuning["fixed"]} == tuning["fixed"]
