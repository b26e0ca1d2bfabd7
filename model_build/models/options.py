"""The options of one training run (torch-free: the CLI, the recipes and calibration read them
without loading PyTorch). Every choice that shapes a model is here, and all of it is stored in the
bundle's training.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from model_build.models.splits import TrainingError
from sarco_core.preprocess import PreprocessParams

AUGMENTATIONS = ("basic", "scanner")
"""Training augmentation profiles (model_build/models/augment.py)."""


@dataclass
class TrainOptions:
    """Every choice that shapes the model; all of it is stored in the bundle's training.json."""

    modalities: list[str] | None = None      # None: every modality the cohort has
    fusion: str = "evidential"
    train_cohort: str = "development"
    epochs: int = 12
    seed: int = 0
    batch_size: int = 16                     # participants per step
    learning_rate: float = 1e-3              # heads and tabular encoders
    backbone_learning_rate: float = 3e-4     # the pretrained image network (its top level, with layer_decay)
    layer_decay: float | None = None         # rate factor per encoder level below the top; None: one rate
    weight_decay: float = 1e-4
    backbone: str = "efficientnet-lite0"
    image_size: int = 128
    freeze_blocks: int = 0
    pretrained: bool = True
    image_weights: str | None = None
    crop_to_scan: bool = True
    field_of_view_mm: float | None = None
    frames_per_video: int = 4
    images_per_step: int | None = None       # random images per participant in a training step; None: all
    ensemble: int = 1                        # image models trained on cross-fitted splits, averaged (ensemble.py)
    weight_average: float | None = None      # EMA decay per step of the weights kept and validated; None: off
    validation_fraction: float = 0.2
    patience: int = 4
    augment: bool = True
    augmentation: str = "basic"              # "scanner" adds depth-gain ramps and depth crops (augment.py)
    warmup_epochs: float = 0.0               # linear learning-rate warm-up before the cosine decay
    flip_average: bool = False               # the image model averages each image and its mirror
    mixup: float | None = None               # Beta(alpha, alpha) of blending participants' images (mixup.py); None: off
    recipe: dict | None = None               # the named recipe these options started from, and why (recipes.py)
    threads: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise TrainingError(f"--augmentation {self.augmentation}; fix: use one of {', '.join(AUGMENTATIONS)}")
        if not self.augment and self.augmentation != "basic":
            raise TrainingError(f"--no-augment with --augmentation {self.augmentation}: no augmentation would run; "
                                "fix: drop one of the two")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise TrainingError(f"--layer-decay {self.layer_decay}; fix: a factor in (0, 1], e.g. 0.9")
        if self.layer_decay is not None and self.backbone != "efficientnet-lite0":
            raise TrainingError(f"--layer-decay with --backbone {self.backbone}: layer-wise rates are defined for "
                                "efficientnet-lite0's blocks only; fix: drop --layer-decay")
        if self.freeze_blocks and self.backbone != "efficientnet-lite0":
            raise TrainingError(f"--freeze-blocks {self.freeze_blocks} with --backbone {self.backbone}: freezing "
                                "counts efficientnet-lite0's blocks only; fix: drop --freeze-blocks")
        if self.mixup is not None and self.mixup <= 0.0:
            raise TrainingError(f"--mixup {self.mixup}; fix: a Beta parameter above 0, e.g. 0.2, or leave it out")
        if not 0.0 <= self.warmup_epochs < self.epochs:
            raise TrainingError(f"--warmup-epochs {self.warmup_epochs} with --epochs {self.epochs}; fix: a warm-up "
                                "of 0 or more epochs, shorter than the training")

    @classmethod
    def quick(cls, **overrides) -> TrainOptions:
        """Seconds, not minutes: 64 px, 2 epochs; for smoke tests and trying a cohort out."""
        return replace(cls(image_size=64, epochs=2, patience=2), **overrides)

    def preprocess_params(self) -> PreprocessParams:
        """The device preprocessing these options train for (saved in the bundle)."""
        return PreprocessParams(size=self.image_size, crop_to_scan=self.crop_to_scan,
                                field_of_view_mm=self.field_of_view_mm)

    def fingerprint(self) -> dict:
        """What must not change between a run and its resumption (threads and device may)."""
        kept = asdict(self)
        kept.pop("threads")
        kept.pop("device")
        kept["recipe"] = None if self.recipe is None else self.recipe["name"]  # the options hold its settings
        return kept
