"""Named image recipes: sets of training options that `sarco train --recipe NAME` starts from.

A recipe is a partial :class:`~model_build.models.train.TrainOptions` (torch-free, so the CLI's
help and the benchmark can list them without loading PyTorch). Options given on the command line
override the recipe's. Which recipe a cohort gets by default, and why, is :func:`choose_recipe`'s
rule (docs/models.md, "Image recipes"); `benchmarks/bench_recipe.py` scores recipes by
cross-validation by participant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model_build.models.options import TrainOptions
from model_build.models.splits import TrainingError, training_rows
from model_build.stats.selection import one_standard_error_rule

if TYPE_CHECKING:
    from model_build.cohort import Cohort

RECIPES: dict[str, dict] = {
    # The defaults before recipes existed: 128 px, unfrozen, evidential loss, 12 epochs.
    "compact": {},
    # The same with plain cross-entropy on the image head instead of the evidential loss.
    "compact-ce": {"fusion": "late"},
    # Each image scored as the mean of it and its mirror (in the exported graph too).
    "compact-flip": {"flip_average": True},
    # Scanner augmentation (depth-gain ramps, depth crops) and a one-epoch warm-up, with the mirror.
    "compact-scanner": {"flip_average": True, "augmentation": "scanner", "warmup_epochs": 1.0},
    # compact-flip with the one-epoch warm-up alone (what compact-scanner adds besides the augmentation).
    "compact-flip-warmup": {"flip_average": True, "warmup_epochs": 1.0},
    # compact-flip validating and keeping an exponential moving average of the weights (decay 0.95 per step).
    "compact-flip-ema": {"flip_average": True, "weight_average": 0.95},
    # compact trained longer: 20 epochs (cosine over 20), patience 6 (most compact folds ran all 12).
    "compact-long": {"epochs": 20, "patience": 6},
    # compact with the encoder's learning rate doubled (6e-4): as many steps, larger ones.
    "compact-fast": {"backbone_learning_rate": 6e-4},
    # Three compact models on cross-fitted splits, their logits averaged in one graph (ensemble.py).
    "compact-x3": {"ensemble": 3},
    # compact with the stem and first 4 blocks frozen at ImageNet (the study's image recipe's freezing).
    "compact-frozen": {"freeze_blocks": 4},
    # compact with layer-wise rates: each encoder level below the top at 0.9 times the one above.
    "compact-layer-decay": {"layer_decay": 0.9},
    # compact with mixup of participants' images (Beta(0.2, 0.2), the range Zhang et al. found to work).
    "compact-mixup": {"mixup": 0.2},
    # Real still images at a larger input, with the mirror.
    "still-160": {"image_size": 160, "flip_average": True},
    "still-224": {"image_size": 224, "flip_average": True},
}

STILL_DEFAULT = "compact-frozen"
"""Still images' default: :func:`one_standard_error_choice` of the seed-0 cross-validation on
busi-development (real stills; docs/results/recipes-busi.json, docs/models.md "Image recipes")."""

RECORDING_DEFAULT = "compact-frozen"
"""Recorded cohorts' default: :func:`one_standard_error_choice` of the 3-fold cross-validation on
the synthetic paper-size cohort (stills and recordings; docs/results/recipes-paper.json). It is
the still default too: one default serves both."""


def device_cost(settings: dict) -> int:
    """What a recipe's model costs the device per frame: input pixels times encoder passes."""
    options = TrainOptions(**settings)
    return options.image_size ** 2 * (2 if options.flip_average else 1) * options.ensemble


def is_shipped(result: dict) -> bool:
    """Whether a cross-validation result measured a recipe as it is defined now."""
    return RECIPES.get(result["recipe"]) == result["options"]


def simplicity(settings: dict) -> tuple[int, int, int]:
    """The rule's order, simplest first: the device's cost per frame, then the fewest epochs,
    then the most encoder blocks left frozen (the fewest weights fitted to the cohort)."""
    options = TrainOptions(**settings)
    return device_cost(settings), options.epochs, -options.freeze_blocks


def one_standard_error_choice(results: list[dict]) -> tuple[dict, dict]:
    """(chosen, best) among cross-validation results of one cohort, folds and seed (as
    `benchmarks/bench_recipe.py` writes them), shipped recipes only: the one-standard-error rule
    (the one `sarco tune` uses for the study) in :func:`simplicity`'s order."""
    shipped = [r for r in results if is_shipped(r)]
    if not shipped:
        raise ValueError("no result of a shipped recipe to choose from")
    return one_standard_error_rule(shipped, lambda r: simplicity(r["options"]))


@dataclass(frozen=True)
class CohortFacts:
    """What the rule reads of a cohort's training participants."""

    participants: int
    stills: int
    recordings: int
    median_short_side: int | None  # of the stills, in pixels; None without stills


@dataclass(frozen=True)
class RecipeChoice:
    name: str
    reason: str
    facts: CohortFacts

    def record(self) -> dict:
        """What the bundle's training.json keeps of the choice."""
        return {"name": self.name, "chosen_by": "rule", "reason": self.reason, "facts": asdict(self.facts),
                "rule": RULE_TEXT}


RULE_TEXT = (f"recordings: {RECORDING_DEFAULT} (the one-standard-error choice of the cross-validation on the "
             f"synthetic paper-size cohort); stills only: {STILL_DEFAULT} (the one-standard-error choice of the "
             "cross-validation on real stills)")


def choose_recipe(facts: CohortFacts) -> RecipeChoice:
    """The default recipe for a cohort (docs/models.md, "Image recipes"). The stills' size and the
    number of participants are recorded with the choice but do not change it: a larger input
    (still-160 or still-224 on 256 px stills) did not score higher, and one real labelled cohort
    cannot say how the choice should move with the cohort's size."""
    if facts.recordings:
        return RecipeChoice(RECORDING_DEFAULT, f"{facts.recordings} recordings: {RECORDING_DEFAULT} is the "
                                               "cross-validated choice for recorded cohorts", facts)
    return RecipeChoice(STILL_DEFAULT, f"{facts.stills} stills and no recordings: {STILL_DEFAULT} is the "
                                       "cross-validated choice for stills", facts)


def describe_cohort(cohort: Cohort, participant_ids: list[str]) -> CohortFacts:
    """Counts of the participants' stills and recordings and the stills' median shorter side,
    read from the files' headers (unreadable files are left to training to report)."""
    wanted = set(map(str, participant_ids))
    stills = [] if cohort.images is None else \
        cohort.images.loc[cohort.images["participant_id"].astype(str).isin(wanted), "path"].astype(str).tolist()
    recordings = 0 if cohort.videos is None else int(cohort.videos["participant_id"].astype(str).isin(wanted).sum())
    sides = [side for side in (_short_side(cohort, path) for path in stills) if side is not None]
    return CohortFacts(participants=len(wanted), stills=len(stills), recordings=recordings,
                       median_short_side=int(np.median(sides)) if sides else None)


def _short_side(cohort: Cohort, relative: str) -> int | None:
    from PIL import Image

    from model_build.cohort.listings import media_format
    from model_build.dicom import read_header

    try:
        path = cohort.media_path(relative)
        if media_format(relative, "images.csv") == "dicom":
            header = read_header(path)[1]
            return min(header.rows, header.columns)
        with Image.open(path) as image:
            return int(min(image.size))
    except Exception:  # noqa: BLE001 - any unreadable file: training reads and reports it
        return None


def how_asked(options: TrainOptions, field: str, flag: str, says: str | None = None) -> str:
    """How the user asked for an option, as refusals name it: the recipe that set it
    (``--recipe compact-mixup (--mixup 0.2)``), else the flag (``--mixup 0.2``)."""
    value = getattr(options, field)
    says = says or f"{flag} {value}"
    recipe = (options.recipe or {}).get("name")
    if recipe is not None and RECIPES.get(recipe, {}).get(field) == value:
        return f"--recipe {recipe} ({says})"
    return f"{flag} {value}"


def recipe_options(cohort: Cohort, recipe: str | None, quick: bool, **chosen) -> TrainOptions:
    """`sarco train`'s options: ``recipe`` (or, for an image model without one, the rule's choice)
    under the options the user gave (``chosen``; None means "not given"). ``--quick`` keeps its
    64 px, 2-epoch smoke settings and names no recipe unless one is asked for. With fewer epochs
    than the recipe's, its warm-up is held to a quarter of them (a 1-epoch trial run of a recipe
    with a 1-epoch warm-up would otherwise be refused)."""
    given = {key: value for key, value in chosen.items() if value is not None}
    plain = (lambda: TrainOptions.quick(**given) if quick else TrainOptions(**given))
    modalities = given.get("modalities")
    if modalities is not None and "image" not in modalities:
        if recipe is not None:
            raise TrainingError(f"--recipe {recipe} sets image options, and --modalities {','.join(modalities)} "
                                "trains no image model; fix: drop --recipe, or add image to --modalities")
        return plain()
    if recipe is None and quick:
        return plain()
    if recipe is not None:
        record = {"name": recipe, "chosen_by": "--recipe"}
    else:
        rows = training_rows(cohort, given.get("train_cohort", "development"))
        facts = describe_cohort(cohort, rows["participant_id"].tolist())
        if not facts.stills and not facts.recordings:
            return plain()  # no image model to set up
        choice = choose_recipe(facts)
        recipe, record = choice.name, choice.record()
    settings = {**RECIPES[recipe], "recipe": record}
    _fit_backbone(settings, given.get("backbone", TrainOptions.backbone))
    weights = settings.get("image_weights")
    if weights is not None and "image_weights" not in given and not Path(weights).is_file():
        raise TrainingError(f"recipe {recipe} starts from {weights}, which is missing; fix: rebuild it with the "
                            "command in docs/models.md (\"Image recipes\"), or choose another --recipe")
    if given.get("augment") is False:  # --no-augment turns the recipe's augmentation off with the rest
        settings.pop("augmentation", None)
    if quick:
        smoke = TrainOptions.quick()
        settings.update(image_size=smoke.image_size, epochs=smoke.epochs, patience=smoke.patience)
    if "epochs" in given or quick:  # a shortened run keeps its warm-up to a quarter of it
        epochs = given.get("epochs", settings.get("epochs"))
        settings["warmup_epochs"] = min(settings.get("warmup_epochs", 0.0), epochs / 4)
    return TrainOptions(**{**settings, **given})


EFFICIENTNET_ONLY = {"freeze_blocks": "--freeze-blocks", "layer_decay": "--layer-decay"}
"""Recipe options that count EfficientNet-Lite0's blocks, and their flags."""


def _fit_backbone(settings: dict, backbone: str) -> None:
    """A recipe on another backbone: the rule's choice leaves its EfficientNet-only options out and
    says so in its reason (the rule was measured on efficientnet-lite0); a recipe asked for by
    name is refused, as a flag would be."""
    tied = {key: settings[key] for key in EFFICIENTNET_ONLY if key in settings}
    if backbone == "efficientnet-lite0" or not tied:
        return
    record, what = settings["recipe"], ", ".join(f"{EFFICIENTNET_ONLY[k]} {v}" for k, v in tied.items())
    if record["chosen_by"] != "rule":
        raise TrainingError(f"--recipe {record['name']} ({what}) counts efficientnet-lite0's blocks, and --backbone "
                            f"{backbone} has none; fix: drop --backbone, or choose a recipe without it (e.g. compact)")
    for key in tied:
        del settings[key]
    record["reason"] += f"; without its {what}, which counts efficientnet-lite0's blocks (--backbone {backbone})"
