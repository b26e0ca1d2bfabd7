"""The model bundle: one folder holding everything needed to use a trained model
(docs/model-bundle.md).

Only data formats that cannot execute code: safetensors for weights, ONNX for the device
graph, JSON for parameters, Markdown for the card, and a SHA-256 manifest over all of them.
Loading checks the manifest first, so a truncated copy, an edited threshold or a swapped
weights file is refused with the file's name instead of silently changing predictions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from edge_app.bundle import BundleError as DeviceBundleError
from edge_app.bundle import sha256_file
from edge_app.bundle import verify_manifest as verify_device_manifest
from edge_app.preprocess import PreprocessParams, Preprocessor
from model_build.models import CLASSES
from model_build.models.fusion import FusionModel, ModelConfig, Stacker
from model_build.models.tabular import TabularEncoder

FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
ONNX = "model.onnx"
CONFIG = "config.json"
PREPROCESSING = "preprocessing.json"
TABULAR = "tabular.json"
INPUT_SCHEMA = "input_schema.json"
TRAINING = "training.json"
MODEL_CARD = "MODEL_CARD.md"
MANIFEST = "MANIFEST.sha256"


class BundleError(ValueError):
    """The folder is not a usable bundle; the message names the file and a fix."""


@dataclass
class Bundle:
    """A trained model and everything that decides its predictions."""

    model: FusionModel
    config: ModelConfig
    preprocess: PreprocessParams
    encoders: dict[str, TabularEncoder]
    threshold: float
    input_schema: dict
    training: dict
    stacker: Stacker | None = None
    frames_per_video: int = 4
    path: Path | None = None

    @property
    def preprocessor(self) -> Preprocessor:
        return Preprocessor(self.preprocess)

    @property
    def image_readout(self) -> str:
        """How the device turns the mean image logits into P(sarcopenia)."""
        return "evidential" if self.config.fusion == "evidential" else "softmax"

    def config_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "model": self.config.to_dict(),
            "decision_threshold": self.threshold,
            "image_readout": self.image_readout,
            "frames_per_video": self.frames_per_video,
            "stacker": None if self.stacker is None else {"coef": self.stacker.coef,
                                                           "intercept": self.stacker.intercept},
            "classes": list(CLASSES),
        }


def write_json(path: Path, payload: dict | list) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_text(path: Path, text: str) -> None:
    """Atomic: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def save_weights(model: FusionModel, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    save_file(state, str(temporary), metadata={"format": "pt"})
    os.replace(temporary, path)


def write_bundle_files(bundle: Bundle, folder: Path, model_card: str) -> None:
    """Everything but the ONNX graph and the manifest (see :func:`write_manifest`)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(bundle.model, folder / WEIGHTS)
    write_json(folder / CONFIG, bundle.config_dict())
    write_text(folder / PREPROCESSING, bundle.preprocess.to_json() + "\n")
    write_json(folder / TABULAR, {m: e.to_dict() for m, e in bundle.encoders.items()})
    write_json(folder / INPUT_SCHEMA, bundle.input_schema)
    write_json(folder / TRAINING, bundle.training)
    write_text(folder / MODEL_CARD, model_card)


def bundle_files(folder: Path) -> list[str]:
    """The files the manifest covers: every visible file except the manifest itself."""
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))


def write_manifest(folder: Path) -> None:
    """``sha256sum`` format, so ``sha256sum -c MANIFEST.sha256`` checks a copy by hand too."""
    lines = [f"{sha256_file(folder / name)}  {name}" for name in bundle_files(folder)]
    write_text(folder / MANIFEST, "\n".join(lines) + "\n")


def verify_manifest(folder: Path) -> None:
    """The device's own check (``edge_app.bundle``), so a bundle accepted here is accepted there."""
    try:
        verify_device_manifest(folder)
    except DeviceBundleError as error:
        raise BundleError(str(error)) from None


def _read_json(folder: Path, name: str) -> dict:
    try:
        return json.loads((folder / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{folder / name}: not found; fix: copy the whole bundle folder") from None
    except json.JSONDecodeError as error:
        raise BundleError(f"{folder / name}: not valid JSON ({error})") from None


def load_bundle(folder: str | Path, verify: bool = True) -> Bundle:
    """Read a bundle (manifest checked first). Nothing is unpickled."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a folder; fix: give the folder written by `sarco train --out`")
    if verify:
        verify_manifest(folder)
    raw = _read_json(folder, CONFIG)
    if raw.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{folder / CONFIG}: format_version {raw.get('format_version')!r} is not "
                          f"{FORMAT_VERSION}; fix: use the sarco version that wrote it")
    config = ModelConfig(**raw["model"])
    model = FusionModel(config, pretrained=False)
    try:
        state = load_file(str(folder / WEIGHTS))
    except FileNotFoundError:
        raise BundleError(f"{folder / WEIGHTS}: not found") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise BundleError(f"{folder / WEIGHTS}: does not fit {CONFIG} ({str(error)[:200]})") from None
    model.eval()
    stacker = raw.get("stacker")
    preprocess = PreprocessParams.from_json((folder / PREPROCESSING).read_text(encoding="utf-8"))
    encoders = {m: TabularEncoder.from_dict(e) for m, e in _read_json(folder, TABULAR).items()}
    return Bundle(model=model, config=config, preprocess=preprocess, encoders=encoders,
                  threshold=float(raw["decision_threshold"]), input_schema=_read_json(folder, INPUT_SCHEMA),
                  training=_read_json(folder, TRAINING), stacker=None if stacker is None else Stacker(**stacker),
                  frames_per_video=int(raw.get("frames_per_video", 4)), path=folder)

