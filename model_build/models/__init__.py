"""Models: the ultrasound CNN, clinical and lab encoders, evidential and other fusion, the
training loop and the model bundle (docs/models.md, docs/model-bundle.md).

Only constants live here, so that importing the CLI does not import torch.
"""

from sarco_core.errors import SarcoError

MODALITIES = ("image", "clinical", "lab")
FUSIONS = ("evidential", "concat", "late")
BACKBONES = ("efficientnet-lite0", "densenet121", "resnet18")
CLASSES = ("non_sarcopenia", "sarcopenia")


class InputError(SarcoError, ValueError):
    """A command's input cannot be used (no such cohort, a bad KEY=VALUE...); says how to fix it."""
