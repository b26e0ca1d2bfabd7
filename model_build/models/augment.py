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

from model_build.models.options import AUGMENTATIONS


class Augmenter:
    """Applies the random pipeline of ``profile`` (:data:`AUGMENTATIONS`) to a batch of ``(S, S)``
    prepared images."""

    def __init__(self, seed: int, profile: str = "basic") -> None:
        if profile not in AUGMENTATIONS:
            raise ValueError(f"augmentation profile {profile!r}; fix: use one of {', '.join(AUGMENTATIONS)}")
        from model_build.models.ultrasound_transforms import augmentation_pipeline  # MONAI: training only

        self.seed = seed
        self.pipeline = augmentation_pipeline(profile)

    def __call__(self, images: np.ndarray, epoch: int, indices: np.ndarray) -> np.ndarray:
        out = np.empty(images.shape, dtype=np.float32)
        for position, (image, index) in enumerate(zip(images, indices)):
            seed = np.random.default_rng([self.seed, epoch, int(index)]).integers(2**31)
            self.pipeline.set_random_state(seed=int(seed))
            augmented = self.pipeline(image[np.newaxis].astype(np.float32))
            out[position] = np.clip(np.asarray(augmented, dtype=np.float32)[0], 0.0, 1.0)
        return out
