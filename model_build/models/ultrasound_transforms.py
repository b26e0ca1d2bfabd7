"""The ultrasound-specific random transforms of training augmentation, on MONAI's
``RandomizableTransform``, and the pipeline of each profile (:data:`AUGMENTATIONS`).

Kept apart from :class:`model_build.models.augment.Augmenter` so that MONAI (about 2.5 s to
import, most of it scipy, pandas and matplotlib pulled in by its package ``__init__``) loads
only in a process that augments images: not in a federated site's statistics job, a
tabular-only training, or a command that only evaluates.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import (Compose, RandAdjustContrast, RandAffine, RandFlip, RandomizableTransform,
                              RandScaleIntensity, RandScaleIntensityFixedMean)


class _RandomImageTransform(RandomizableTransform):
    """A transform that runs with probability ``prob`` on a ``(1, H, W)`` image; :meth:`apply`
    draws its own parameters from ``self.R`` after that coin."""

    def __call__(self, image) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        self.randomize(None)
        return self.apply(image) if self._do_transform else image

    def apply(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RandSpeckleNoise(_RandomImageTransform):
    """Multiplicative noise ``x (1 + s n)``, n standard normal: speckle scales with echo strength."""

    def __init__(self, prob: float = 0.5, max_std: float = 0.1) -> None:
        RandomizableTransform.__init__(self, prob)
        self.max_std = max_std

    def apply(self, image: np.ndarray) -> np.ndarray:
        std = self.R.uniform(0.0, self.max_std)
        return image * (1.0 + std * self.R.standard_normal(image.shape).astype(np.float32))


class RandDepthGainRamp(_RandomImageTransform):
    """Multiplies each row by ``1 + g (y - 1/2)``, y the depth in [0, 1], g uniform in
    [-max_slope, max_slope]: a time-gain-compensation curve set differently."""

    def __init__(self, prob: float = 0.5, max_slope: float = 0.5) -> None:
        RandomizableTransform.__init__(self, prob)
        self.max_slope = max_slope

    def apply(self, image: np.ndarray) -> np.ndarray:
        slope = self.R.uniform(-self.max_slope, self.max_slope)
        depth = np.linspace(0.0, 1.0, image.shape[-2], dtype=np.float32)[:, np.newaxis]
        return image * (1.0 + slope * (depth - 0.5))


class RandDepthCrop(_RandomImageTransform):
    """Keeps the top ``f`` of the rows (f uniform in [min_fraction, 1]) and stretches them back to
    the full size, preserving the aspect ratio by cropping the columns about the centre: the skin
    stays at the top, as it does at any depth setting."""

    def __init__(self, prob: float = 0.3, min_fraction: float = 0.75) -> None:
        RandomizableTransform.__init__(self, prob)
        self.min_fraction = min_fraction

    def apply(self, image: np.ndarray) -> np.ndarray:
        import cv2

        height, width = image.shape[-2:]
        fraction = self.R.uniform(self.min_fraction, 1.0)
        rows, columns = max(2, round(height * fraction)), max(2, round(width * fraction))
        left = (width - columns) // 2
        crop = image[0, :rows, left:left + columns]
        return cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)[np.newaxis]


def augmentation_pipeline(profile: str) -> Compose:
    """The random pipeline of ``profile``: ``basic`` (acquisition) or ``scanner`` (adds the
    scanner's depth and time-gain settings)."""
    scanner = [RandDepthCrop(prob=0.3, min_fraction=0.75), RandDepthGainRamp(prob=0.5, max_slope=0.5)] \
        if profile == "scanner" else []
    return Compose([
        *scanner,
        RandAffine(prob=0.7, rotate_range=np.deg2rad(7.0), translate_range=(6, 6),
                   scale_range=(0.08, 0.08), padding_mode="zeros"),
        RandFlip(prob=0.5, spatial_axis=1),
        RandScaleIntensity(factors=0.2, prob=0.5),            # gain
        RandScaleIntensityFixedMean(factors=0.2, prob=0.5),   # contrast
        RandAdjustContrast(prob=0.3, gamma=(0.7, 1.5)),       # grey-map gamma
        RandSpeckleNoise(prob=0.5, max_std=0.15),
    ])
