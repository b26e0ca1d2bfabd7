"""Light model-bundle reader for the device (format: docs/model-bundle.md).

The device needs only the ONNX graph, the preprocessing parameters, the decision threshold and
how outputs become probabilities; it reads them from JSON after checking the SHA-256 manifest,
so a truncated copy or an edited threshold is refused with the file's name. No torch, no
unpickling: the workstation's reader (model_build.models.bundle) also rebuilds the PyTorch
model, which the device never needs.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from edge_app.preprocess import PreprocessError, PreprocessParams
from edge_app.session import READOUTS

FORMAT_VERSION = 1
MANIFEST = "MANIFEST.sha256"
CONFIG = "config.json"
PREPROCESSING = "preprocessing.json"
ONNX = "model.onnx"


class BundleError(ValueError):
    """The folder is not a usable bundle; the message names the file and a fix."""


@dataclass(frozen=True)
class DeviceBundle:
    """What the device takes from a bundle."""

    path: Path
    onnx_path: Path
    preprocess: PreprocessParams
    threshold: float  # on P(sarcopenia)
    readout: str  # softmax | evidential
    model_sha256: str  # of model.onnx: names the model in every result
    model_name: str


def load_device_bundle(folder: str | Path) -> DeviceBundle:
    """Check the manifest, then read config, preprocessing and the ONNX path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"model bundle {folder}: not a folder; give the folder written by "
                          "`sarco train --out` (or `sarco export`)")
    digests = verify_manifest(folder)
    if ONNX not in digests:
        raise BundleError(f"{folder / ONNX}: the bundle has no ONNX graph, which the device "
                          "runs; fix: `sarco export` it (a model trained without images cannot "
                          "run on the device)")
    config = read_json_object(folder / CONFIG)
    if config.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{folder / CONFIG}: format_version {config.get('format_version')!r} "
                          f"is not {FORMAT_VERSION}; fix: update the device software")
    threshold = config.get("decision_threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not 0.0 < threshold < 1.0:
        raise BundleError(f"{folder / CONFIG}: decision_threshold {threshold!r} must be a "
                          "probability in (0, 1)")
    readout = config.get("image_readout", "softmax")
    if readout not in READOUTS:
        raise BundleError(f"{folder / CONFIG}: image_readout {readout!r} is not one of "
                          f"{', '.join(READOUTS)}")
    try:
        preprocess = PreprocessParams.from_json(
            (folder / PREPROCESSING).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{folder / PREPROCESSING}: not found; copy the whole bundle") from None
    except (PreprocessError, ValueError, TypeError) as exc:
        raise BundleError(f"{folder / PREPROCESSING}: {exc}") from None
    return DeviceBundle(
        path=folder, onnx_path=folder / ONNX, preprocess=preprocess, threshold=float(threshold),
        readout=readout, model_sha256=digests[ONNX], model_name=_model_name(config, folder),
    )


def verify_manifest(folder: Path) -> dict[str, str]:
    """Every visible file listed with its SHA-256 (``sha256sum`` format) and nothing else;
    returns name -> digest."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"{manifest}: not found; the bundle is incomplete; fix: copy the "
                          "whole folder again or re-run `sarco export`")
    listed: dict[str, str] = {}
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        digest, _, name = line.partition("  ")
        if not re.fullmatch(r"[0-9a-f]{64}", digest) or not name:
            raise BundleError(f"{manifest}: line {number} is not '<sha256>  <file>'")
        listed[name] = digest
    present = {p.name for p in folder.iterdir()
               if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")}
    for name in sorted(set(listed) - present):
        raise BundleError(f"{folder / name}: listed in {MANIFEST} but missing; fix: copy the "
                          "whole folder")
    for name in sorted(present - set(listed)):
        raise BundleError(f"{folder / name}: not in {MANIFEST}; fix: remove it (keep a TensorRT "
                          "engine outside the bundle, see docs/edge.md)")
    for name, digest in listed.items():
        if _sha256(folder / name) != digest:
            raise BundleError(f"{folder / name}: content differs from {MANIFEST} (changed or "
                              "damaged); fix: copy the bundle again from its source")
    return listed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: not found; copy the whole bundle folder") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return data


def _model_name(config: dict, folder: Path) -> str:
    """A short label for displays and payloads: backbone and fusion when the config has them."""
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    parts = [str(model[key]) for key in ("backbone", "fusion") if model.get(key)]
    name = "-".join(parts) or folder.name
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64] or "model"
