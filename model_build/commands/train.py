"""`sarco train COHORT --out MODEL`: train a model and write its bundle (docs/models.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console

from model_build.commands.options import Device, Threads, USER_ERROR
from model_build.models import BACKBONES, FUSIONS, MODALITIES
from model_build.models.options import AUGMENTATIONS
from model_build.models.recipes import RECIPES
from sarco_core.cli import CliConsole, reported_errors
from sarco_core.progress import CommandProgress


def parse_modalities(text: str | None) -> list[str] | None:
    if text is None:
        return None
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [m for m in wanted if m not in MODALITIES]
    if unknown or not wanted:
        raise typer.BadParameter(f"{text!r}: use a comma-separated subset of {','.join(MODALITIES)}")
    return wanted


def register(app: typer.Typer) -> None:
    """Add `sarco train` to the CLI."""

    @app.command("train")
    def train(
        cohort: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Cohort folder.")],
        out: Annotated[Path, typer.Option("--out", help="Bundle folder to write (new, or with --resume).")],
        modalities: Annotated[Optional[str], typer.Option(
            help="Comma-separated subset of image,clinical,lab (default: all the cohort has).")] = None,
        recipe: Annotated[Optional[Literal[tuple(RECIPES)]], typer.Option(
            help="Named image settings (docs/models.md, \"Image recipes\"); default: chosen from the cohort by "
                 "the documented rule. Options given here override the recipe's.")] = None,
        fusion: Annotated[Optional[Literal[FUSIONS]], typer.Option(
            help="How the modalities are combined (docs/models.md; default evidential).")] = None,
        train_cohort: Annotated[str, typer.Option(help="participants.csv `cohort` value to train on.")] = "development",
        epochs: Annotated[Optional[int], typer.Option(
            min=1, help="Maximum epochs (default: the recipe's; 2 with --quick).")] = None,
        seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
        quick: Annotated[bool, typer.Option("--quick", help="64 px, 2 epochs: a smoke run in seconds.")] = False,
        resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
        image_size: Annotated[Optional[int], typer.Option(
            min=32, help="Input side in pixels (default: the recipe's).")] = None,
        backbone: Annotated[Literal[BACKBONES], typer.Option(help="Image encoder.")] = "efficientnet-lite0",
        image_weights: Annotated[Optional[Path], typer.Option(
            exists=True, dir_okay=False, help="Backbone weights (.safetensors or state-dict .pth).")] = None,
        pretrained: Annotated[bool, typer.Option(help="Start EfficientNet-Lite0 from ImageNet.")] = True,
        freeze_blocks: Annotated[Optional[int], typer.Option(
            min=0, max=16,
            help="Freeze the stem and first N EfficientNet-Lite0 blocks (default: the recipe's; 4 in compact-frozen).")
        ] = None,
        crop_to_scan: Annotated[bool, typer.Option(help="Crop each image to its detected scan area.")] = True,
        field_of_view_mm: Annotated[Optional[float], typer.Option(
            help="Resample images to this many mm per input side (needs mm_per_pixel).")] = None,
        frames_per_video: Annotated[int, typer.Option(min=1, help="Frames sampled per recording.")] = 4,
        batch_size: Annotated[int, typer.Option(min=2, help="Participants per step.")] = 16,
        images_per_step: Annotated[Optional[int], typer.Option(
            min=1, help="Random images of each participant per training step (default: all).")] = None,
        weight_average: Annotated[Optional[float], typer.Option(
            min=0.0, max=0.9999, help="Keep an exponential moving average of the weights with this decay per "
                                      "step, e.g. 0.95 (default: the last step's weights).")] = None,
        patience: Annotated[Optional[int], typer.Option(min=1, help="Early-stopping patience (epochs).")] = None,
        augment: Annotated[bool, typer.Option(help="Training-time image augmentation.")] = True,
        augmentation: Annotated[Optional[Literal[AUGMENTATIONS]], typer.Option(
            help="Augmentation profile: basic, or scanner (adds depth-gain ramps and depth crops).")] = None,
        warmup_epochs: Annotated[Optional[float], typer.Option(
            min=0.0, help="Linear learning-rate warm-up, in epochs, before the cosine decay.")] = None,
        flip_average: Annotated[Optional[bool], typer.Option(
            "--flip-average/--no-flip-average",
            help="Score each image as the mean of it and its mirror (in the exported model too).")] = None,
        layer_decay: Annotated[Optional[float], typer.Option(
            min=0.0, max=1.0, help="Layer-wise learning rates: each EfficientNet-Lite0 level below the top learns at "
                                   "this factor of the one above, e.g. 0.9 (default: one rate).")] = None,
        mixup: Annotated[Optional[float], typer.Option(
            min=0.0, help="Blend pairs of participants' images and losses with a Beta(a, a) weight, e.g. 0.2 "
                          "(image models only; default: off).")] = None,
        ensemble: Annotated[Optional[int], typer.Option(
            min=1, help="Train K image models on K cross-fitted folds and average them (docs/models.md; "
                        "default: the recipe's, 1 in most).")] = None,
        threads: Threads = None,
        device: Device = "auto",
    ) -> None:
        """Train on COHORT's training participants and write a model bundle to --out."""
        from model_build.cohort import load_cohort
        from model_build.models.recipes import recipe_options
        from model_build.models.train import train as run_training

        chosen = {"modalities": parse_modalities(modalities), "fusion": fusion, "train_cohort": train_cohort,
                  "seed": seed, "backbone": backbone, "pretrained": pretrained, "freeze_blocks": freeze_blocks,
                  "image_weights": None if image_weights is None else str(image_weights),
                  "crop_to_scan": crop_to_scan, "field_of_view_mm": field_of_view_mm,
                  "frames_per_video": frames_per_video,
                  "batch_size": batch_size, "images_per_step": images_per_step, "weight_average": weight_average,
                  "augment": augment, "augmentation": augmentation, "warmup_epochs": warmup_epochs,
                  "flip_average": flip_average, "layer_decay": layer_decay, "mixup": mixup, "ensemble": ensemble,
                  "threads": threads, "device": device, "epochs": epochs, "image_size": image_size,
                  "patience": patience}
        with reported_errors(exit_code=USER_ERROR), CommandProgress(CliConsole(stderr=True)) as progress:
            options = recipe_options(load_cohort(cohort), recipe, quick, **chosen)
            bundle = run_training(cohort, out, options, resume=resume, progress=progress)
        _summary(bundle, CliConsole())


def _summary(folder: Path, console: Console) -> None:
    import json

    training = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    validation = training["metrics"]["validation"]
    ci = validation["auc_ci"]
    console.print(f"bundle written to {folder}")
    recipe = training["options"].get("recipe")
    if recipe:
        console.print(f"recipe {recipe['name']} ({recipe['chosen_by']}"
                      + (f": {recipe['reason']}" if "reason" in recipe else "") + ")")
    console.print(f"inner validation: AUC {validation['auc']:.3f}"
                  + ("" if ci is None else f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})")
                  + f", n = {validation['n']}; threshold {training['threshold']['value']:.4f} "
                  f"({training['threshold']['rule']}); {training['epochs_run']} epochs, best {training['best_epoch']}; "
                  f"training {training['timings']['train_seconds']:.0f} s on {training['device']} "
                  f"({training['threads']} threads)")
