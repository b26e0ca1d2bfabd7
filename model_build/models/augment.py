"""Training-only augmentation of prepared images (in [0, 1], before normalisation).

What varies between ultrasound acquisitions of the same muscle: probe placement and pressure
(small rotation, shift, scale), operator gain and dynamic range (gain, contrast, gamma) and
speckle. Left-right flips happen (probe orientation); up-down never does, since the skin is
always at the top of the image, so there is no vertical flip.

Two profiles. ``basic`` is the above. ``scanner`` adds what differs between scanners and
presets rather than between acquisitions: a time-gain-compensation ramp (brightness that grows
or falls with depth) and a depth setting (the near field of a deeper image stretched to the
full height, as a shallower depth preset shows it).

Each image's transform is seeded from ``(seed, epoch, image index)``, so an epoch is
reproducible on its own (a resumed run replays it exactly) and no global RNG is touched.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import (Compose, RandAdjustContrast, RandAffine, RandFlip, RandomizableTransform,
                              RandScaleIntensity, RandScaleIntensityFixedMean)

from model_build.models.options import AUGMENTATIONS


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


class Augmenter:
    """Applies the random pipeline of ``profile`` (:data:`AUGMENTATIONS`) to a batch of ``(S, S)``
    prepared images."""

    def __init__(self, seed: int, profile: str = "basic") -> None:
        if profile not in AUGMENTATIONS:
            raise ValueError(f"augmentation profile {profile!r}; fix: use one of {', '.join(AUGMENTATIONS)}")
        self.seed = seed
        scanner = [RandDepthCrop(prob=0.3, min_fraction=0.75), RandDepthGainRamp(prob=0.5, max_slope=0.5)] \
            if profile == "scanner" else []
        self.pipeline = Compose([
            *scanner,
            RandAffine(prob=0.7, rotate_range=np.deg2rad(7.0), translate_range=(6, 6),
                       scale_range=(0.08, 0.08), padding_mode="zeros"),
            RandFlip(prob=0.5, spatial_axis=1),
            RandScaleIntensity(factors=0.2, prob=0.5),            # gain
            RandScaleIntensityFixedMean(factors=0.2, prob=0.5),   # contrast
            RandAdjustContrast(prob=0.3, gamma=(0.7, 1.5)),       # grey-map gamma
            RandSpeckleNoise(prob=0.5, max_std=0.15),
        ])

    def __call__(self, images: np.ndarray, epoch: int, indices: np.ndarray) -> np.ndarray:
        out = np.empty(images.shape, dtype=np.float32)
        for position, (image, index) in enumerate(zip(images, indices)):
            seed = np.random.default_rng([self.seed, epoch, int(index)]).integers(2**31)
            self.pipeline.set_random_state(seed=int(seed))
            augmented = self.pipeline(image[np.newaxis].astype(np.float32))
            out[position] = np.clip(np.asarray(augmented, dtype=np.float32)[0], 0.0, 1.0)
        return out
