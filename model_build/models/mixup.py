"""Mixup for image models (Zhang et al., ICLR 2018, "mixup: Beyond Empirical Risk Minimization").

Each training participant's images are blended with another participant's of the same batch,
``lam * own + (1 - lam) * partner's`` with ``lam ~ Beta(alpha, alpha)`` drawn once per batch, and
the loss is the same blend of the loss on each one's label. On a few hundred scans it keeps the
network from memorising single images and asks for outputs that change gradually between them.

Participants are paired, not images, because the network pools a participant's images into one
score: the j-th image of a participant meets the (j mod k)-th of its partner's k images.
Participants without images keep themselves as partner, which changes neither image nor loss.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from model_build.models.fusion import ModelBatch


def mix_participants(batch: ModelBatch, alpha: float, rng: np.random.Generator) -> tuple[ModelBatch, np.ndarray, float]:
    """The batch with blended images, each row's partner row, and the weight ``lam`` of a row's
    own images and label (``1 - lam`` goes to the partner's)."""
    rows = batch.present.shape[0]
    partner = np.arange(rows)
    if batch.images is None or batch.images.shape[0] == 0:
        return batch, partner, 1.0
    owner = batch.image_owner.cpu().numpy()
    with_images = np.unique(owner)
    partner[with_images] = rng.permutation(with_images)
    lam = float(rng.beta(alpha, alpha))
    images_of = {row: np.flatnonzero(owner == row) for row in with_images}
    partner_image = np.empty(len(owner), dtype=np.int64)
    for row, own in images_of.items():
        theirs = images_of[partner[row]]
        partner_image[own] = theirs[np.arange(len(own)) % len(theirs)]
    index = torch.from_numpy(partner_image).to(batch.images.device)
    mixed = lam * batch.images + (1.0 - lam) * batch.images.index_select(0, index)
    return replace(batch, images=mixed), partner, lam
