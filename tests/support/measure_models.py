"""Measurement-model folders for tests: a scripted model whose answer is known, and data folders
of the committed real DL_Track pairs.

The scripted model ignores its input and always answers the same logits: horizontal aponeurosis
bands at fixed fractions of the crop's height. Exported through the real ONNX export and sealed
by the real manifest, it makes `sarco measure run`'s rows predictable (thickness = the gap
between the bands times the crop's height), so the CSV contract is tested without training.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from model_build.measure.export import export_segmentation
from sarco_core.bundle import (APONEUROSIS_CONFIG, APONEUROSIS_FORMAT_VERSION, APONEUROSIS_KIND, APONEUROSIS_ONNX,
                               write_manifest)
from sarco_core.files import write_json
from sarco_core.measure import LABEL_NAMES
from sarco_core.measure.segmentation import SegmentationRecipe
from tests.support.real_data import real_file

REAL_PAIRS = ("img_00001.png", "img_00002.png", "img_00003.png", "img_00036.png")


class ScriptedBands(nn.Module):
    """``(N, 1, S, S)`` -> the same ``(N, 3, S, S)`` logits for every input."""

    def __init__(self, size: int, bands: dict[int, tuple[float, float]]) -> None:
        super().__init__()
        logits = torch.zeros(3, size, size)
        logits[0] = 1.0
        for label, (top, bottom) in bands.items():
            logits[label, round(top * size):round(bottom * size)] = 6.0
        self.register_buffer("answer", logits[None])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.answer + 0.0 * images


def scripted_model(folder: Path, bands: dict[int, tuple[float, float]] | None = None, size: int = 64) -> Path:
    """A measurement bundle answering ``bands`` (label -> (top, bottom) fractions of the height);
    default: superficial 0.20-0.25, deep 0.70-0.75, so thickness is about 45 % of the crop."""
    bands = {1: (0.20, 0.25), 2: (0.70, 0.75)} if bands is None else bands
    folder.mkdir(parents=True)
    recipe = SegmentationRecipe(size=size)
    export_segmentation(ScriptedBands(size, bands), size, folder / APONEUROSIS_ONNX)
    write_json(folder / APONEUROSIS_CONFIG, {
        "kind": APONEUROSIS_KIND, "format_version": APONEUROSIS_FORMAT_VERSION,
        "labels": {str(k): v for k, v in LABEL_NAMES.items()}, "recipe": recipe.to_dict(),
        "training": {"command": "scripted for tests"}})
    write_manifest(folder)
    return folder


def real_pairs_folder(folder: Path, names: tuple[str, ...] = REAL_PAIRS) -> Path:
    """A data folder (images/, masks/, index.csv) of committed real DL_Track pairs."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    lines = ["image,mask"]
    for name in names:
        shutil.copy(real_file(f"dl-track-aponeuroses/images/{name}"), folder / "images" / name)
        shutil.copy(real_file(f"dl-track-aponeuroses/masks/{name}"), folder / "masks" / name)
        lines.append(f"images/{name},masks/{name}")
    shutil.copy(real_file("dl-track-aponeuroses/LICENSE"), folder / "LICENSE")
    (folder / "index.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
