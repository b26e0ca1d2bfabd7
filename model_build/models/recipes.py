"""Named image recipes: sets of training options that `sarco train --recipe NAME` starts from.

A recipe is a partial :class:`~model_build.models.train.TrainOptions` (torch-free, so the CLI's
help and the benchmark can list them without loading PyTorch). Options given on the command line
override the recipe's. Which recipe a cohort gets by default, and why, is :func:`choose_recipe`'s
rule (docs/models.md, "Image recipes"); `benchmarks/bench_recipe.py` scores every recipe by
cross-validation on real and synthetic cohorts.
"""

from __future__ import annotations

RECIPES: dict[str, dict] = {
    # The defaults before recipes existed: 128 px, unfrozen, evidential loss, 12 epochs.
    "compact": {},
    # The same with plain cross-entropy on the image head instead of the evidential loss.
    "compact-ce": {"fusion": "late"},
    # Each image scored as the mean of it and its mirror (in the exported graph too).
    "compact-flip": {"flip_average": True},
    # Scanner augmentation (depth-gain ramps, depth crops) and a one-epoch warm-up, with the mirror.
    "compact-scanner": {"flip_average": True, "augmentation": "scanner", "warmup_epochs": 1.0},
    # Real still images at a larger input.
    "still-160": {"image_size": 160, "flip_average": True, "augmentation": "scanner", "warmup_epochs": 1.0},
    "still-224": {"image_size": 224, "flip_average": True, "augmentation": "scanner", "warmup_epochs": 1.0},
}
