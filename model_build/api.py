"""The Python API for what people script around sarco: load a trained bundle and predict one
participant from images, recordings and clinical or lab values. (The statistics are
``model_build.stats``: ``roc_auc``, ``auc_ci``, ``compare_auc``...)

    from model_build import load_model
    model = load_model("runs/image/bundle")
    result = model.predict(["scan.png", "scan.mp4"], clinical={"age": 81, "sex": "F"})
    print(result["decision"], result["probability"], result["uncertainty"])

``predict`` returns what ``sarco predict --json`` prints; both run the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model_build.models.bundle import Bundle, load_bundle
from model_build.models.predict import check_values, predict_participant
from model_build.models.train import choose_device


@dataclass(frozen=True)
class Model:
    """A verified bundle, ready to predict (``load_model`` makes one)."""

    bundle: Bundle
    device: torch.device

    def predict(self, files: Iterable[str | Path] = (), *,
                clinical: Mapping[str, object] | None = None,
                lab: Mapping[str, object] | None = None,
                mm_per_pixel: float | None = None, depth_mm: float | None = None) -> dict[str, Any]:
        """One participant: its probability of sarcopenia, decision at the bundle's threshold,
        uncertainty, frames used and each input's share. Values are checked against the bundle
        as ``sarco predict --clinical/--lab`` checks them (InputError naming the value)."""
        values = {name: check_values({str(k): str(v) for k, v in (given or {}).items()},
                                     name, self.bundle.encoders.get(name))
                  for name, given in (("clinical", clinical), ("lab", lab))}
        return predict_participant(self.bundle, [Path(f) for f in files], values["clinical"],
                                   values["lab"], mm_per_pixel, depth_mm, self.device)


def load_model(folder: str | Path, device: str = "auto") -> Model:
    """The bundle in ``folder`` (its manifest verified), on ``device`` (auto, cpu or cuda)."""
    return Model(load_bundle(folder), choose_device(device))
