"""Training augmentation: reproducible per (seed, epoch, image), and never turns the image upside
down (the skin is always at the top of an ultrasound image)."""

from __future__ import annotations

import numpy as np

from model_build.models.augment import Augmenter
from model_build.models.ultrasound_transforms import RandDepthCrop, RandDepthGainRamp


def _skin_on_top(size: int = 64) -> np.ndarray:
    """Bright top third (skin and fat), dark rest, with some texture."""
    image = np.random.default_rng(0).uniform(0.0, 0.2, (size, size)).astype(np.float32)
    image[: size // 3] += 0.7
    return image


def test_the_same_seed_epoch_and_image_give_the_same_augmentation() -> None:
    images = np.stack([_skin_on_top()] * 3)
    first = Augmenter(seed=3)(images, epoch=1, indices=np.array([0, 1, 2]))
    again = Augmenter(seed=3)(images, epoch=1, indices=np.array([0, 1, 2]))
    other_epoch = Augmenter(seed=3)(images, epoch=2, indices=np.array([0, 1, 2]))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other_epoch)
    assert not np.array_equal(first[0], first[1])  # each image draws its own transform
    assert first.min() >= 0.0 and first.max() <= 1.0


def test_the_skin_stays_at_the_top() -> None:
    images = np.stack([_skin_on_top()] * 40)
    augmented = Augmenter(seed=0)(images, epoch=0, indices=np.arange(40))
    top = augmented[:, 4:16].mean(axis=(1, 2))
    bottom = augmented[:, -16:-4].mean(axis=(1, 2))
    assert np.all(top > bottom + 0.2)


def test_the_scanner_profile_is_reproducible_and_keeps_the_skin_on_top() -> None:
    images = np.stack([_skin_on_top()] * 40)
    first = Augmenter(seed=5, profile="scanner")(images, epoch=0, indices=np.arange(40))
    again = Augmenter(seed=5, profile="scanner")(images, epoch=0, indices=np.arange(40))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, Augmenter(seed=5)(images, epoch=0, indices=np.arange(40)))
    assert np.all(first[:, 4:16].mean(axis=(1, 2)) > first[:, -16:-4].mean(axis=(1, 2)) + 0.2)


def test_a_depth_gain_ramp_changes_brightness_with_depth_only() -> None:
    ramp = RandDepthGainRamp(prob=1.0, max_slope=0.5)
    ramp.set_random_state(seed=0)
    flat = np.full((1, 32, 32), 0.5, np.float32)
    out = ramp(flat)[0]
    assert np.allclose(out, out[:, :1])  # every row is one value
    rows = out[:, 0]
    assert abs(rows[-1] - rows[0]) > 0.01 and np.all(np.sign(np.diff(rows)) == np.sign(rows[-1] - rows[0]))


def test_a_depth_crop_stretches_the_near_field_to_the_full_height() -> None:
    crop = RandDepthCrop(prob=1.0, min_fraction=0.5)
    crop.set_random_state(seed=1)
    image = np.zeros((1, 40, 40), np.float32)
    image[0, :10] = 1.0   # skin and fat in the top quarter
    out = crop(image)[0]
    assert out.shape == (40, 40)
    assert (out[:, 20] > 0.5).sum() > 10  # the near field now fills more rows
    assert out[0].min() > 0.5 and out[-1].max() == 0.0  # the skin still on top
