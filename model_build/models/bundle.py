"""The model bundle: one folder holding everything needed to use a trained model
(docs/model-bundle.md).

Only data formats that cannot execute code: safetensors for weights, ONNX for the device
graph, JSON for parameters, Markdown for the card, and a SHA-256 manifest over all of them.
Loading checks the manifest first, so a truncated copy, an edited threshold or a swapped
weights file is refused with the file's name instead of silently changing predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from model_build.models import CLASSES
from model_build.models.fusion import FusionModel, NetworkConfig, Stacker
from model_build.models.tabular import TabularEncoder
from sarco_core.bundle import (CONFIG, FORMAT_VERSION, INPUT_SCHEMA, MODEL_CARD, PREPROCESSING, TABULAR,
                               TRAINING, WEIGHTS, BundleError, read_json_object, verify_manifest)
from sarco_core.files import atomic_path, atomic_write, write_json
from sarco_core.preprocess import PreprocessParams, Preprocessor


@dataclass
class Bundle:
    """A trained model and everything that decides its predictions."""

    model: FusionModel
    config: NetworkConfig
    preprocess: PreprocessParams
    encoders: dict[str, TabularEncoder]
    threshold: float
    input_schema: dict
    training: dict
    stacker: Stacker | None = None
    frames_per_video: int = 4
    path: Path | None = None
    operating_point: dict | None = None  # how a study chose the threshold (rule, CI, calibration)

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
            **({"operating_point": self.operating_point} if self.operating_point is not None else {}),
        }


def save_weights(model: FusionModel, path: Path) -> None:
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    with atomic_path(path) as temporary:
        save_file(state, str(temporary), metadata={"format": "pt"})


def write_bundle_files(bundle: Bundle, folder: Path, model_card: str) -> None:
    """Everything but the ONNX graph and the manifest (:func:`sarco_core.bundle.write_manifest`)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(bundle.model, folder / WEIGHTS)
    write_json(folder / CONFIG, bundle.config_dict())
    atomic_write(folder / PREPROCESSING, bundle.preprocess.to_json() + "\n")
    write_json(folder / TABULAR, {m: e.to_dict() for m, e in bundle.encoders.items()})
    write_json(folder / INPUT_SCHEMA, bundle.input_schema)
    write_json(folder / TRAINING, bundle.training)
    atomic_write(folder / MODEL_CARD, model_card)


def load_bundle(folder: str | Path, verify: bool = True) -> Bundle:
    """Read a bundle (manifest checked first). Nothing is unpickled."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a folder; fix: give the folder written by `sarco train --out`")
    if verify:
        verify_manifest(folder)
    raw = read_json_object(folder / CONFIG)
    if raw.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{folder / CONFIG}: format_version {raw.get('format_version')!r} is not "
                          f"{FORMAT_VERSION}; fix: use the sarco version that wrote it")
    config = NetworkConfig(**raw["model"])
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
    encoders = {m: TabularEncoder.from_dict(e) for m, e in read_json_object(folder / TABULAR).items()}
    return Bundle(model=model, config=config, preprocess=preprocess, encoders=encoders,
                  threshold=float(raw["decision_threshold"]), input_schema=read_json_object(folder / INPUT_SCHEMA),
                  training=read_json_object(folder / TRAINING), stacker=None if stacker is None else Stacker(**stacker),
                  frames_per_video=int(raw.get("frames_per_video", 4)), path=folder,
                  operating_point=raw.get("operating_point"))

