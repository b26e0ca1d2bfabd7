"""Reading the float bundle, writing the INT8 bundle, and recording the gate's verdict in it.

The INT8 bundle is a copy of the float one (same config, preprocessing, threshold, weights, model
card) whose ``model.onnx`` is the quantized graph, plus ``quantization.json``: where it came from
(the float graph's SHA-256, the calibration set, target, method, layers left in float) and the
accuracy gate's status. Everything stays under the SHA-256 manifest, so a device that checks the
manifest also knows the gate's verdict was not edited by hand.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from model_build.calibration import CalibrationError
from sarco_core.bundle import (CONFIG, MANIFEST, MODEL_CARD, ONNX, QUANTIZATION, TRAINING, DeviceBundle,
                               load_device_bundle, read_json_object, write_int8_record, write_manifest)


@dataclass(frozen=True)
class SourceBundle:
    """What calibration needs from a bundle: the device view plus how it was trained."""

    device: DeviceBundle
    frames_per_video: int
    training: dict
    quantization: dict | None  # present when the bundle is itself quantized

    @property
    def path(self) -> Path:
        return self.device.path

    @property
    def onnx_path(self) -> Path:
        return self.device.onnx_path

    @property
    def train_cohort(self) -> str:
        return str(self.training.get("train_cohort", "development"))

    @property
    def data_hash(self) -> str | None:
        return self.training.get("data_hash")


def load_source_bundle(folder: str | Path) -> SourceBundle:
    """Manifest checked (sarco_core.bundle), then config and training metadata read as JSON. The
    INT8 gate is not checked: calibration makes and judges INT8 bundles whatever their status."""
    folder = Path(folder)
    device = load_device_bundle(folder, check_gate=False)
    config = read_json_object(folder / CONFIG)
    training = read_json_object(folder / TRAINING) if (folder / TRAINING).is_file() else {}
    quantization = read_json_object(folder / QUANTIZATION) if (folder / QUANTIZATION).is_file() else None
    return SourceBundle(device=device, frames_per_video=int(config.get("frames_per_video", 4)),
                        training=training, quantization=quantization)


def load_float_bundle(folder: str | Path) -> SourceBundle:
    """A bundle that must not already be quantized (quantizing twice compounds the error)."""
    bundle = load_source_bundle(folder)
    if bundle.quantization is not None:
        raise CalibrationError(f"{bundle.path}: this bundle is already quantized ({QUANTIZATION}); "
                               "fix: give the float bundle written by `sarco train`")
    return bundle


def load_int8_bundle(folder: str | Path, source: SourceBundle) -> SourceBundle:
    """A quantized bundle made from ``source`` (checked by the float graph's SHA-256)."""
    bundle = load_source_bundle(folder)
    if bundle.quantization is None:
        raise CalibrationError(f"{bundle.path}: no {QUANTIZATION}; this is not a bundle written by "
                               "`sarco-calibrate quantize`")
    made_from = bundle.quantization.get("source", {}).get("model_sha256")
    if made_from != source.device.model_sha256:
        raise CalibrationError(f"{bundle.path / QUANTIZATION}: quantized from a model.onnx with SHA-256 "
                               f"{str(made_from)[:12]}..., not from {source.path} "
                               f"({source.device.model_sha256[:12]}...); fix: give the float bundle it was made from")
    return bundle


def new_output_folder(out: Path) -> Path:
    """A hidden working folder beside ``out``, renamed to ``out`` by :func:`publish_folder`."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CalibrationError(f"{out}: already exists and is not empty; fix: choose a new --out folder "
                               "or delete the old one")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))


def publish_folder(partial: Path, out: Path) -> None:
    """Rename the finished working folder to ``out``: a folder, so not sarco_core.files'
    atomic_path (which replaces one file); the rename is atomic all the same."""
    if out.is_dir():
        out.rmdir()  # empty (checked by new_output_folder)
    os.replace(partial, out)


def write_int8_bundle(source: SourceBundle, quantized_onnx: Path, metadata: dict, out: Path,
                      extra_files: dict[str, Path] | None = None, replace_graph: bool = True) -> Path:
    """Copy ``source`` to ``out`` with ``quantized_onnx`` as model.onnx (unless ``replace_graph``
    is False: the TensorRT-cache target ships the float graph plus a cache), add
    quantization.json and ``extra_files`` (name -> path), append to the model card, re-sign."""
    files = {**({ONNX: quantized_onnx} if replace_graph else {}), **(extra_files or {})}
    return write_int8_folder(source.path, out, metadata, files, (MODEL_CARD, _card_section(metadata)))


def write_int8_folder(source: Path, out: Path, metadata: dict, files: dict[str, Path],
                      card: tuple[str, str] | None = None, gate: dict | None = None) -> Path:
    """Any bundle made INT8 (the classifier's, the aponeurosis model's): the folder ``source``
    copied to ``out`` with ``files`` (name -> path) added or replacing theirs, the INT8 record
    (``metadata`` and ``gate``, else pending), the section ``card = (file, text)`` appended to
    that file when the bundle has it, and the manifest re-sealed; published atomically."""
    partial = new_output_folder(out)
    try:
        for item in sorted(source.iterdir()):
            if item.is_file() and not item.name.startswith(".") and item.name != MANIFEST:
                shutil.copy2(item, partial / item.name)
        for name, path in files.items():
            shutil.copy2(path, partial / name)
        write_int8_record(partial, metadata, gate)
        if card is not None and (partial / card[0]).is_file():
            page = partial / card[0]
            page.write_text(page.read_text(encoding="utf-8").rstrip() + "\n\n" + card[1], encoding="utf-8")
        write_manifest(partial)
        publish_folder(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def _card_section(payload: dict) -> str:
    calibration = payload["calibration"]
    excluded = payload.get("excluded_nodes") or []
    return "\n".join([
        "## INT8 quantization",
        f"- Target `{payload['target']}`, calibration method `{payload['method']}`, layers not quantized "
        f"kept in {payload.get('high_precision', 'fp32')}",
        f"- Calibration set: {calibration['n']} frames from cohort `{calibration['cohort']}` "
        f"(SHA-256 of inputs.npy `{calibration['inputs_sha256'][:16]}...`)",
        f"- Layers left in float by the sensitivity analysis: {', '.join(excluded) if excluded else 'none'}",
        "- Accuracy gate: see `quantization.json` -> `gate` (`sarco-calibrate verify`); a device must not "
        "use this bundle unless the status is `accepted`.", ""])
