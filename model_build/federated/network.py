"""The study's network, built from JSON-able arguments.

FLARE's PyTorch persistor builds the server's copy of the model from a job config entry
``{"path": "<class>", "args": {...}}`` (``nvflare.app_opt.pt.job_config.model.PTModel``; the key
is ``path``, though FedAvgRecipe's docstring says ``class_path``), so its
constructor may take only plain values, not a :class:`NetworkConfig`. With the same seed and
options it draws the same initial weights as :meth:`Trainer._build_network` (the image encoder's
ImageNet weights come from the installed package, never a download), so round 1 starts every
site from the model that ``sarco train`` would have started from.
"""

from __future__ import annotations

import torch

from model_build.models.fusion import FusionModel, NetworkConfig


class FederatedNetwork(FusionModel):
    """A :class:`FusionModel` from plain arguments: tabular encoders, the image encoder, or both."""

    def __init__(self, modalities: list[str], tabular_inputs: dict[str, int], fusion: str = "evidential",
                 seed: int = 0, backbone: str = "efficientnet-lite0", image_size: int = 128,
                 freeze_blocks: int = 0, pretrained: bool = True) -> None:
        torch.manual_seed(seed)
        super().__init__(NetworkConfig(modalities=list(modalities), fusion=fusion, backbone=backbone,
                                       image_size=image_size, freeze_blocks=freeze_blocks,
                                       tabular_inputs=dict(tabular_inputs)), pretrained)
