"""A trained image branch, frozen and shared by the fusion models that contain it.

The study trains the image network once per fold and then fits several fusion models on top
of it (image+clinical, image+lab, image+clinical+lab). Retraining the CNN inside each fusion
model would multiply the most expensive step by four for no gain in what is compared: the
fusion models differ in what they add to the image evidence, so they share the same image
opinion. Frozen, the branch is a fixed function of each participant's images, so its pooled
features are computed once per participant and the fusion model trains on them in seconds.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from model_build.models.data import ImageLibrary
from model_build.models.fusion import ImageScorer
from sarco_core.preprocess import Preprocessor


class FeatureInput(nn.Module):
    """Stands in for the image encoder while its input is already the pooled feature vector."""

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class ImageBranch:
    """A trained encoder and head, frozen, with each participant's pooled features on demand."""

    def __init__(self, scorer: ImageScorer, library: ImageLibrary, preprocessor: Preprocessor,
                 batch_size: int = 64) -> None:
        self.scorer = copy.deepcopy(scorer).cpu().eval()
        for parameter in self.scorer.parameters():
            parameter.requires_grad_(False)
        self.library, self.preprocessor, self.batch_size = library, preprocessor, batch_size
        self._cache: dict[str, np.ndarray | None] = {}
        self._outputs: dict[str, np.ndarray] = {}  # per-image head outputs (n_images, 2)

    @property
    def out_features(self) -> int:
        return self.scorer.encoder.out_features

    def features(self, participant_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(N, F)`` mean encoder output over each participant's images (zeros where none) and
        ``(N,)`` whether the participant has any image."""
        missing = [pid for pid in dict.fromkeys(participant_ids) if pid not in self._cache]
        if missing:
            self._compute(missing)
        width = self.out_features
        rows = [self._cache[pid] for pid in participant_ids]
        present = np.array([row is not None for row in rows], dtype=bool)
        stacked = np.stack([np.zeros(width, np.float32) if row is None else row for row in rows]) \
            if rows else np.zeros((0, width), np.float32)
        return stacked, present

    def image_outputs(self, participant_ids: list[str]) -> list[np.ndarray]:
        """Each participant's outputs image by image, ``(n_images, 2)``: what a device's
        frames give one by one, whose spread the borderline rule reads (their mean is the
        participant's output, the head being linear)."""
        missing = [pid for pid in dict.fromkeys(participant_ids) if pid not in self._cache]
        if missing:
            self._compute(missing)
        return [self._outputs.get(pid, np.zeros((0, 2), np.float32)) for pid in participant_ids]

    def _compute(self, participant_ids: list[str]) -> None:
        images = self.library.subset(participant_ids)
        width = self.out_features
        total = np.zeros((len(participant_ids), width), np.float64)
        count = np.bincount(images.owner, minlength=len(participant_ids))
        outputs = []
        with torch.no_grad():
            for start in range(0, len(images.pixels), self.batch_size):
                pixels = images.pixels[start:start + self.batch_size].astype(np.float32)
                batch = torch.from_numpy(self.preprocessor.normalise(pixels)[:, np.newaxis])
                features = self.scorer.encoder(batch)
                np.add.at(total, images.owner[start:start + self.batch_size],
                          features.numpy().astype(np.float64))
                outputs.append(self.scorer.head(features).numpy())
        per_image = np.concatenate(outputs) if outputs else np.zeros((0, 2), np.float32)
        for row, pid in enumerate(participant_ids):
            self._cache[pid] = (total[row] / count[row]).astype(np.float32) if count[row] else None
            self._outputs[pid] = per_image[images.owner == row]

    def encoder(self) -> nn.Module:
        """A copy of the frozen encoder, to put back into a model before it is exported."""
        return copy.deepcopy(self.scorer.encoder)
