"""Image recipes: the rule that picks `sarco train`'s default from the cohort, the options a recipe
sets and the user overrides, and the record of the choice in the bundle (docs/models.md, "Image
recipes"). Accuracy and time of each recipe are benchmarks/bench_recipe.py's, not tests'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from model_build.cohort import load_cohort
from model_build.commands import train
from model_build.models.options import TrainOptions
from model_build.models.recipes import (RECIPES, RECORDING_DEFAULT, STILL_DEFAULT, CohortFacts, choose_recipe,
                                        describe_cohort, device_cost, is_shipped, one_standard_error_choice,
                                        recipe_options)
from model_build.models.splits import TrainingError
from testkit.cohort_factory import FRAME_SIZE, make_cohort
from tests.support.paths import REPO


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 participants: 8 development (two stills each, in every format, DICOM included, and a
    recording each but the last's), 4 external."""
    return make_cohort(tmp_path_factory.mktemp("recipes") / "c", seed=0, n_participants=12).root


def test_every_recipe_is_a_valid_set_of_options() -> None:
    for name, settings in RECIPES.items():
        assert set(settings) <= set(TrainOptions.__dataclass_fields__), name
        TrainOptions(**settings)  # raises on a contradiction (e.g. a warm-up as long as the training)
        weights = settings.get("image_weights")
        assert weights is None or Path(weights).is_file(), f"{name}: {weights} is not in the repository"


def _result(recipe: str, folds: list[float], options: dict | None = None) -> dict:
    return {"recipe": recipe, "options": RECIPES[recipe] if options is None else options, "fold_aucs": folds,
            "mean_auc": float(np.mean(folds))}


def test_the_rule_takes_the_cheapest_on_the_device_then_the_fewest_epochs_within_one_standard_error() -> None:
    results = [_result("still-224", [0.95, 0.94, 0.96]),          # best: 0.95, standard error 0.0058
               _result("compact-flip", [0.945, 0.945, 0.945]),    # within, half still-224's device cost of a pass
               _result("compact-long", [0.944, 0.946, 0.945]),    # within, one pass, 20 epochs
               _result("compact-frozen", [0.944, 0.945, 0.946]),  # within, one pass, 12 epochs
               _result("compact", [0.94, 0.94, 0.94]),            # one pass, 12 epochs, but outside
               _result("compact-ssl", [0.99, 0.99, 0.99], {"image_weights": "x.safetensors"})]  # not shipped
    chosen, best = one_standard_error_choice(results)
    assert (chosen["recipe"], best["recipe"]) == ("compact-frozen", "still-224")
    assert one_standard_error_choice(results[:2])[0]["recipe"] == "compact-flip"
    assert device_cost(RECIPES["still-224"]) == 224 * 224 * 2 and device_cost(RECIPES["compact-x3"]) == 128 * 128 * 3


def test_between_equally_cheap_recipes_within_the_band_the_rule_takes_the_more_frozen_whatever_the_order() -> None:
    tied = [_result("compact", [0.84, 0.85, 0.86]), _result("compact-frozen", [0.845, 0.845, 0.845])]  # floor 0.844
    assert one_standard_error_choice(tied)[0]["recipe"] == "compact-frozen"
    assert one_standard_error_choice(tied[::-1])[0]["recipe"] == "compact-frozen"


def test_the_still_default_is_the_rule_applied_to_the_committed_cross_validation() -> None:
    results = json.loads((REPO / "docs" / "results" / "recipes-busi.json").read_text())
    seed_0 = [r for r in results if r["cohort"] == "busi-development" and r["seed"] == 0 and r["folds"] == 5]
    chosen, _ = one_standard_error_choice(seed_0)
    assert chosen["recipe"] == STILL_DEFAULT
    assert {r["recipe"] for r in seed_0} >= set(RECIPES)  # every shipped recipe was measured


def test_the_recording_default_is_the_rule_applied_to_the_committed_synthetic_cross_validation() -> None:
    results = json.loads((REPO / "docs" / "results" / "recipes-paper.json").read_text())
    chosen, _ = one_standard_error_choice([r for r in results if r["cohort"] == "paper" and r["seed"] == 0])
    assert chosen["recipe"] == RECORDING_DEFAULT
    assert {"compact", RECORDING_DEFAULT} <= {r["recipe"] for r in results if is_shipped(r)}


def test_recordings_get_the_recording_default() -> None:
    choice = choose_recipe(CohortFacts(participants=300, stills=600, recordings=300, median_short_side=480))
    assert choice.name == RECORDING_DEFAULT and "300 recordings" in choice.reason


@pytest.mark.parametrize("side", [64, 256, 1024])
def test_stills_of_any_size_get_the_cross_validated_still_recipe(side: int) -> None:
    choice = choose_recipe(CohortFacts(participants=545, stills=545, recordings=0, median_short_side=side))
    assert choice.name == STILL_DEFAULT and "545 stills" in choice.reason
    assert choice.record()["facts"]["median_short_side"] == side and choice.record()["chosen_by"] == "rule"


def test_the_cohort_is_described_from_its_files(cohort: Path) -> None:
    loaded = load_cohort(cohort)
    development = loaded.participants.loc[loaded.participants["cohort"] == "development", "participant_id"].tolist()
    facts = describe_cohort(loaded, development)
    assert (facts.participants, facts.stills, facts.recordings) == (8, 16, 8)
    assert facts.median_short_side == min(FRAME_SIZE)  # PNG, JPEG, BMP, TIFF and DICOM headers all read


def test_large_still_files_are_measured_by_their_header(tmp_path: Path) -> None:
    root = make_cohort(tmp_path / "c", seed=1, n_participants=12, videos=False).root
    loaded = load_cohort(root)
    for relative in loaded.images["path"]:
        path = root / relative
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
            Image.fromarray(np.zeros((300, 400), np.uint8)).save(path)
    facts = describe_cohort(loaded, loaded.participants["participant_id"].tolist())
    assert facts.recordings == 0 and facts.median_short_side == 300


def test_given_options_override_the_recipe(cohort: Path) -> None:
    loaded = load_cohort(cohort)
    options = recipe_options(loaded, "compact-scanner", False, image_size=96, epochs=8, flip_average=False,
                             seed=None)
    assert (options.image_size, options.epochs, options.flip_average) == (96, 8, False)
    assert options.augmentation == "scanner" and options.warmup_epochs == 1.0
    assert options.recipe == {"name": "compact-scanner", "chosen_by": "--recipe"}
    quick = recipe_options(loaded, "compact-scanner", True)
    assert (quick.image_size, quick.epochs, quick.flip_average, quick.warmup_epochs) == (64, 2, True, 0.5)
    short = recipe_options(loaded, "compact-scanner", False, epochs=1)
    assert short.warmup_epochs == 0.25  # a trial epoch of a recipe with a warm-up is not refused
    assert recipe_options(loaded, "compact-scanner", False, epochs=1, warmup_epochs=0.5).warmup_epochs == 0.5
    assert recipe_options(loaded, "still-224", False, epochs=1).warmup_epochs == 0.0
    plain = recipe_options(loaded, "compact-scanner", False, augment=False)
    assert (plain.augment, plain.augmentation) == (False, "basic")
    assert recipe_options(loaded, "compact-x3", False).ensemble == 3  # `sarco train` passes None unless given
    assert recipe_options(loaded, "compact-x3", False, ensemble=1, modalities=["image"]).ensemble == 1
    assert (recipe_options(loaded, "compact-long", False).epochs, recipe_options(loaded, "compact-long", False,
                                                                                  epochs=5).epochs) == (20, 5)


def test_without_a_recipe_the_rule_chooses_and_says_why(cohort: Path) -> None:
    options = recipe_options(load_cohort(cohort), None, False)
    assert options.recipe["name"] == RECORDING_DEFAULT and options.recipe["chosen_by"] == "rule"
    assert options.recipe["facts"]["recordings"] == 8 and "recordings" in options.recipe["reason"]


def test_a_cohort_of_stills_trains_with_the_still_default_settings(tmp_path: Path) -> None:
    stills = make_cohort(tmp_path / "stills", seed=2, n_participants=12, videos=False).root
    options = recipe_options(load_cohort(stills), None, False)
    assert options.recipe["name"] == STILL_DEFAULT and "stills and no recordings" in options.recipe["reason"]
    for key, value in RECIPES[STILL_DEFAULT].items():
        assert getattr(options, key) == value, key


def test_another_backbone_gets_the_rules_choice_without_efficientnet_freezing_and_a_named_recipe_is_refused(
        cohort: Path) -> None:
    loaded = load_cohort(cohort)
    options = recipe_options(loaded, None, False, backbone="resnet18")
    assert (options.recipe["name"], options.freeze_blocks, options.backbone) == (RECORDING_DEFAULT, 0, "resnet18")
    assert options.recipe["reason"].endswith("without its --freeze-blocks 4, which counts efficientnet-lite0's "
                                             "blocks (--backbone resnet18)")
    with pytest.raises(TrainingError, match=r"--recipe compact-layer-decay \(--layer-decay 0.9\) counts "
                                            "efficientnet-lite0's blocks, and --backbone densenet121 has none; fix"):
        recipe_options(loaded, "compact-layer-decay", False, backbone="densenet121")
    assert recipe_options(loaded, "compact-flip", False, backbone="resnet18").flip_average


def test_quick_runs_and_tabular_models_name_no_recipe(cohort: Path) -> None:
    loaded = load_cohort(cohort)
    assert recipe_options(loaded, None, True).recipe is None
    assert recipe_options(loaded, None, False, modalities=["clinical", "lab"]).recipe is None
    with pytest.raises(TrainingError, match="trains no image model; fix: drop --recipe"):
        recipe_options(loaded, "compact", False, modalities=["clinical", "lab"])


def test_a_recipe_whose_weights_are_missing_is_refused_with_a_fix(cohort: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setitem(RECIPES, "from-file", {"image_weights": str(tmp_path / "gone.safetensors")})
    with pytest.raises(TrainingError, match="gone.safetensors, which is missing; fix: rebuild it"):
        recipe_options(load_cohort(cohort), "from-file", False)


@pytest.mark.parametrize(("settings", "message"), [
    ({"augmentation": "strong"}, "--augmentation strong"),
    ({"warmup_epochs": 2.0, "epochs": 2}, "--warmup-epochs 2.0 with --epochs 2"),
    ({"augment": False, "augmentation": "scanner"}, "--no-augment with --augmentation scanner"),
])
def test_contradictory_options_are_refused_with_a_fix(settings: dict, message: str) -> None:
    with pytest.raises(TrainingError, match=message) as raised:
        TrainOptions(**settings)
    assert "fix:" in str(raised.value)


def test_the_command_records_the_recipe_in_the_bundle(cohort: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    train.register(app)
    out = tmp_path / "bundle"
    result = CliRunner().invoke(app, [str(cohort), "--out", str(out), "--modalities", "image",
                                      "--recipe", "compact-scanner", "--image-size", "64", "--epochs", "2",
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "recipe compact-scanner (--recipe)" in result.output
    options = json.loads((out / "training.json").read_text())["options"]
    assert options["recipe"]["name"] == "compact-scanner" and options["flip_average"] is True
    assert (options["image_size"], options["augmentation"]) == (64, "scanner")
    config = json.loads((out / "config.json").read_text())["model"]
    assert config["flip_average"] is True


def test_an_unknown_recipe_is_refused_with_the_names(cohort: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    train.register(app)
    result = CliRunner().invoke(app, [str(cohort), "--out", str(tmp_path / "b"), "--recipe", "big"])
    assert result.exit_code == 2
    assert "still-224" in result.output


def test_the_warm_up_ramps_the_rate_per_step_to_its_full_value() -> None:
    from model_build.models.train import _warmup_factor

    ramp = [_warmup_factor(epoch, step, 4, 1.5) for epoch in range(3) for step in range(4)]
    assert ramp[0] == pytest.approx(1 / 6) and ramp[5] == 1.0 and ramp[4] == pytest.approx(5 / 6)
    assert all(a < b for a, b in zip(ramp[:5], ramp[1:6]))
    assert _warmup_factor(0, 0, 4, 0.0) == 1.0


def test_the_command_leaves_the_ensemble_to_the_recipe_unless_given(cohort: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    train.register(app)
    result = CliRunner().invoke(app, [str(cohort), "--out", str(tmp_path / "b"), "--modalities", "image",
                                      "--recipe", "compact-x3", "--threads", "1"])
    assert result.exit_code != 0, result.output
    assert "--recipe compact-x3 (an ensemble of 3) needs at least 6 participants of each class" in result.output
    given = CliRunner().invoke(app, [str(cohort), "--out", str(tmp_path / "c"), "--modalities", "image",
                                     "--recipe", "compact-x3", "--ensemble", "4", "--threads", "1"])
    assert given.exit_code != 0 and "--ensemble 4 needs at least 8" in given.output, given.output
    # On this cohort's clinical and lab data too: the message names the recipe the user typed.
    fused = CliRunner().invoke(app, [str(cohort), "--out", str(tmp_path / "d"), "--recipe", "compact-x3"])
    assert fused.exit_code != 0, fused.output
    assert "--recipe compact-x3 (an ensemble of 3) trains image models only" in fused.output
    assert "--ensemble 1" in fused.output
