"""Training-only augmentation of prepared images (in [0, 1], before normalisation).

What varies between ultrasound acquisitions of the same muscle: probe placement and pressure
(small rotation, shift, scale), operator gain and dynamic range (gain, contrast, gamma) and
speckle. Left-right flips happen (probe orientation); up-down never does, since the skin is
always at the top of the image, so there is no vertical flip.

Each image's transform is seeded from ``(seed, epoch, image index)``, so an epoch is
reproducible on its own (a resumed run replays it exactly) and no global RNG is touched.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import (Compose, RandAdjustContrast, RandAffine, RandFlip, RandomizableTransform,
                              RandScaleIntensity, RandScaleIntensityFixedMean)


class RandSpeckleNoise(RandomizableTransform):
    """Multiplicative noise ``x (1 + s n)``, n standard normal: speckle scales with echo strength."""

    def __init__(self, prob: float = 0.5, max_std: float = 0.1) -> None:
        RandomizableTransform.__init__(self, prob)
        self.max_std = max_std

    def __call__(self, image) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        self.randomize(None)
        if not self._do_transform:
            return image
        std = self.R.uniform(0.0, self.max_std)
        return image * (1.0 + std * self.R.standard_normal(image.shape).astype(np.float32))


class Augmenter:
    """Applies the random pipeline to a batch of ``(S, S)`` prepared images."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.pipeline = Compose([
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
