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
    # Real still images at the resolution ImageNet encoders were trained at.
    "still-224": {"fusion": "late", "image_size": 224},
}
