"""The model bundle: its file names, format version, SHA-256 manifest, INT8 record and gate
status, and the light reader every stage uses (format: docs/model-bundle.md).

This module is the bundle's one owner. Training writes a bundle through it (``sarco train`` /
``sarco export``: model_build.models.bundle adds the weights and calls :func:`write_manifest`),
calibration adds an INT8 record and the gate's verdict (:func:`write_int8_record`,
:func:`record_gate`), ``sarco sign`` reads and re-seals it, and the device loads it
(:func:`load_device_bundle`).

The device needs only the ONNX graph, the preprocessing parameters, the decision threshold and
how outputs become probabilities; it reads them from JSON after checking the SHA-256 manifest,
so a truncated copy or an edited threshold is refused with the file's name. No torch, no
unpickling: the workstation's reader (model_build.models.bundle) also rebuilds the PyTorch
model, which the device never needs.

The muscle-measurement model (the aponeurosis segmentation, docs/measurements.md) is a bundle
of its own, sealed by the same manifest: ``aponeurosis.onnx`` and ``aponeurosis.json`` (the
segmentation recipe, labels, how it was trained and how well it measures), read by
:func:`load_measurement_bundle`; :func:`default_measurement_bundle` finds the one the
repository ships (``models/aponeurosis``). Its INT8 form (``sarco measure quantize``) is the same
bundle with ``aponeurosis.onnx`` quantized and QUANTIZATION added; the same gate rule applies.

A bundle that carries an INT8 model is used only when `sarco-calibrate verify` accepted it
(:func:`check_int8_gate`): INT8 can silently lose accuracy, and the gate's verdict is recorded in
a file the manifest covers, so it cannot be edited by hand.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sarco_core.errors import SarcoError
from sarco_core.files import atomic_write, read_json, sha256_file, write_json
from sarco_core.measure.labels import LABEL_NAMES
from sarco_core.measure.segmentation import RecipeError, SegmentationRecipe
from sarco_core.preprocess import PreprocessError, PreprocessParams
from sarco_core.readout import READOUTS

FORMAT_VERSION = 1
MANIFEST = "MANIFEST.sha256"
CONFIG = "config.json"
PREPROCESSING = "preprocessing.json"
ONNX = "model.onnx"
WEIGHTS = "weights.safetensors"
TABULAR = "tabular.json"
INPUT_SCHEMA = "input_schema.json"
TRAINING = "training.json"
MODEL_CARD = "MODEL_CARD.md"
# INT8: an INT8 bundle (`sarco-calibrate quantize`; its model.onnx is quantized) records where it
# came from and the accuracy gate's verdict in QUANTIZATION; a signed float bundle that carries
# an INT8 graph or cache for TensorRT (`sarco sign --int8`) keeps that record as INT8_RECORD
QUANTIZATION = "quantization.json"
INT8_RECORD = "int8-quantization.json"
QDQ_ONNX = "model.qdq.onnx"  # explicit INT8 (Q/DQ) graph: the INT8 bundle's model.onnx
CALIBRATION_CACHE = "calibration.cache"  # TensorRT 8.x calibration cache (target tensorrt-cache)
GATE_PENDING, GATE_ACCEPTED, GATE_REJECTED = "pending", "accepted", "rejected"
GATE_MISSING = "missing"  # INT8 content without a readable gate status
QUANTIZATION_VERSION = 1
# The measurement model's bundle (its own folder; the manifest and BundleError are shared)
APONEUROSIS_ONNX = "aponeurosis.onnx"
APONEUROSIS_CONFIG = "aponeurosis.json"
APONEUROSIS_README = "README.md"
APONEUROSIS_KIND = "aponeurosis-segmentation"
APONEUROSIS_FORMAT_VERSION = 1
APONEUROSIS_INPUT = "image"      # (batch, 1, size, size) float32, the recipe's scaled grey
APONEUROSIS_OUTPUT = "logits"    # (batch, 3, size, size): other, superficial, deep
APONEUROSIS_MODEL_ENV = "SARCO_APONEUROSIS_MODEL"  # overrides the shipped model's folder
SHIPPED_APONEUROSIS_MODEL = Path(__file__).resolve().parents[1] / "models" / "aponeurosis"
# An INT8 measurement model (`sarco measure quantize`) is the float bundle with aponeurosis.onnx
# quantized and QUANTIZATION added, whose gate is judged while it is made: accepted or rejected.
MEASUREMENT_INT8_FIX = ("quantize the float model again with `sarco measure quantize MODEL DATA --out MODEL_INT8` "
                        "until its gate accepts, or use the float model")


class BundleError(SarcoError, ValueError):
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


def load_device_bundle(folder: str | Path, *, check_gate: bool = True) -> DeviceBundle:
    """Check the manifest and (unless ``check_gate`` is False: only the workstation tools that
    make and judge INT8 bundles pass it) the INT8 accuracy gate, then read config,
    preprocessing and the ONNX path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"model bundle {folder}: not a folder; give the folder written by "
                          "`sarco train --out` (or `sarco export`)")
    digests = verify_manifest(folder)
    if check_gate:
        check_int8_gate(folder)
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


@dataclass(frozen=True)
class MeasurementBundle:
    """What the workstation and the device take from a measurement model bundle."""

    path: Path
    onnx_path: Path
    recipe: SegmentationRecipe
    model_sha256: str  # of aponeurosis.onnx: names the model in every measurement
    config: dict       # aponeurosis.json as written (training data, licence, command, metrics)

    @property
    def model_name(self) -> str:
        return f"aponeurosis-{self.model_sha256[:12]}"


def default_measurement_bundle() -> Path:
    """The measurement model used when none is named: ``$SARCO_APONEUROSIS_MODEL`` when set,
    else the one shipped with the repository (``models/aponeurosis``)."""
    chosen = os.environ.get(APONEUROSIS_MODEL_ENV)
    folder = Path(chosen) if chosen else SHIPPED_APONEUROSIS_MODEL
    if not folder.is_dir():
        where = f"${APONEUROSIS_MODEL_ENV}={chosen}" if chosen else "the repository's models/aponeurosis"
        raise BundleError(f"{folder}: no measurement model there ({where}); fix: name a model folder written "
                          "by `sarco measure train --out MODEL`, or restore models/aponeurosis from git")
    return folder


def load_measurement_bundle(folder: str | Path) -> MeasurementBundle:
    """Check the manifest and, for an INT8 model, its accuracy gate (:func:`check_int8_gate`),
    then read ``aponeurosis.json`` (kind, format version, labels, recipe) and find
    ``aponeurosis.onnx``; BundleError naming the file and the fix otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"measurement model {folder}: not a folder; give the folder written by "
                          "`sarco measure train --out MODEL` (or leave MODEL out for the shipped one)")
    digests = verify_manifest(folder)
    check_int8_gate(folder, MEASUREMENT_INT8_FIX)
    for name in (APONEUROSIS_CONFIG, APONEUROSIS_ONNX):
        if name not in digests:
            raise BundleError(f"{folder / name}: not in the bundle; this folder is not a measurement model "
                              "(a classifier bundle holds model.onnx); fix: `sarco measure train` one")
    config = read_json_object(folder / APONEUROSIS_CONFIG)
    if config.get("kind") != APONEUROSIS_KIND:
        raise BundleError(f"{folder / APONEUROSIS_CONFIG}: kind {config.get('kind')!r} is not "
                          f"{APONEUROSIS_KIND!r}; fix: give a folder written by `sarco measure train`")
    if config.get("format_version") != APONEUROSIS_FORMAT_VERSION:
        raise BundleError(f"{folder / APONEUROSIS_CONFIG}: format_version {config.get('format_version')!r} "
                          f"is not {APONEUROSIS_FORMAT_VERSION}; fix: update sarco, or retrain the model")
    labels = config.get("labels")
    expected = {str(k): v for k, v in LABEL_NAMES.items()}
    if labels != expected:
        raise BundleError(f"{folder / APONEUROSIS_CONFIG}: labels {labels!r} are not {expected}; the "
                          "measurements read label 1 as superficial and 2 as deep; fix: retrain the model")
    try:
        recipe = SegmentationRecipe.from_dict(config.get("recipe"))
    except (RecipeError, TypeError) as error:
        raise BundleError(f"{folder / APONEUROSIS_CONFIG}: recipe: {error}; fix: retrain the model with "
                          "this version of sarco") from None
    return MeasurementBundle(path=folder, onnx_path=folder / APONEUROSIS_ONNX, recipe=recipe,
                             model_sha256=digests[APONEUROSIS_ONNX], config=config)


@dataclass(frozen=True)
class Int8Gate:
    """The accuracy gate's verdict on the INT8 model a bundle carries."""

    record: Path  # the file that holds it (it may be missing: then status is GATE_MISSING)
    status: str  # pending | accepted | rejected, or GATE_MISSING, or whatever else was written

    @property
    def accepted(self) -> bool:
        return self.status == GATE_ACCEPTED


def int8_gate(folder: Path) -> Int8Gate | None:
    """None for a float bundle; else the gate status of its INT8 model: from QUANTIZATION when
    the bundle is itself INT8, from INT8_RECORD when it carries a Q/DQ graph or calibration
    cache beside the float graph."""
    folder = Path(folder)
    if (folder / QUANTIZATION).is_file():
        record = folder / QUANTIZATION
    elif any((folder / name).is_file() for name in (INT8_RECORD, QDQ_ONNX, CALIBRATION_CACHE)):
        record = folder / INT8_RECORD
    else:
        return None
    if not record.is_file():
        return Int8Gate(record, GATE_MISSING)
    gate = read_json_object(record).get("gate")
    status = gate.get("status") if isinstance(gate, dict) else None
    return Int8Gate(record, status if isinstance(status, str) and status else GATE_MISSING)


def check_int8_gate(folder: Path, fix: str | None = None) -> None:
    """Refuse a bundle whose INT8 model the accuracy gate has not accepted (pending: never
    verified; rejected: it disagrees with the float model; missing: no verdict at all).
    ``fix``: what to do instead, when the bundle is not a classifier's (whose fix is
    `sarco-calibrate verify`)."""
    gate = int8_gate(folder)
    if gate is None or gate.accepted:
        return
    why = {GATE_PENDING: "never verified",
           GATE_REJECTED: "the gate found it disagrees with the float model",
           GATE_MISSING: "no verdict recorded"}.get(gate.status, "only 'accepted' is used")
    where = f"in {gate.record.name}: {why}" if gate.record.is_file() else f"no {gate.record.name}"
    if fix is not None:
        raise BundleError(f"{folder}: INT8 model with accuracy gate status {gate.status!r} ({where}); an INT8 "
                          f"model is used only once its accuracy gate accepted it; fix: {fix}")
    verify = "`sarco-calibrate verify FLOAT_BUNDLE INT8_BUNDLE COHORT`"
    fix = (f"quantize again from a representative calibration set (`sarco-calibrate select`, "
           f"`quantize`) and run {verify} until it accepts" if gate.status == GATE_REJECTED
           else f"run {verify} on the workstation")
    if gate.record.name == INT8_RECORD:
        fix += (", then `sarco sign FLOAT_BUNDLE --int8 INT8_BUNDLE` again (or sign without "
                "--int8 to ship the float model alone)")
    else:
        fix += "; or deploy the float bundle"
    raise BundleError(f"{folder}: INT8 model with accuracy gate status {gate.status!r} ({where}); "
                      "the device uses an INT8 model only once `sarco-calibrate verify` accepted "
                      f"it; fix: {fix}")


def bundle_files(folder: Path) -> list[str]:
    """The files the manifest covers: every visible file except the manifest itself."""
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))


def write_manifest(folder: Path) -> None:
    """``MANIFEST.sha256`` over every file of :func:`bundle_files`, in ``sha256sum`` format (so
    ``sha256sum -c MANIFEST.sha256`` checks a copy by hand too). The one manifest writer: training,
    calibration and signing all seal a bundle through it."""
    folder = Path(folder)
    atomic_write(folder / MANIFEST, "".join(f"{sha256_file(folder / name)}  {name}\n"
                                            for name in bundle_files(folder)))


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
    present = set(bundle_files(folder))
    for name in sorted(set(listed) - present):
        raise BundleError(f"{folder / name}: listed in {MANIFEST} but missing; fix: copy the "
                          "whole folder")
    for name in sorted(present - set(listed)):
        raise BundleError(f"{folder / name}: not in {MANIFEST}; fix: remove it (keep a TensorRT "
                          "engine outside the bundle, see docs/edge.md)")
    for name, digest in listed.items():
        if sha256_file(folder / name) != digest:
            raise BundleError(f"{folder / name}: content differs from {MANIFEST} (changed or "
                              "damaged); fix: copy the bundle again from its source")
    return listed


def read_json_object(path: Path) -> dict:
    """A JSON object of the bundle; BundleError naming the file when it is missing or broken."""
    return read_json(path, BundleError, missing="copy the whole bundle folder")


def write_int8_record(folder: Path, metadata: dict, gate: dict | None = None) -> None:
    """Write QUANTIZATION into an INT8 bundle being made: ``metadata`` (where the INT8 model came
    from) and ``gate``, the accuracy gate's verdict when it was judged while being made (`sarco
    measure quantize`), else the status ``pending``. The caller rewrites the manifest afterwards."""
    write_json(Path(folder) / QUANTIZATION, {"format_version": QUANTIZATION_VERSION, **metadata,
                                             "gate": gate or {"status": GATE_PENDING}})


def record_gate(folder: Path, gate: dict) -> None:
    """Write the accuracy gate's verdict into an INT8 bundle's QUANTIZATION and re-seal the
    manifest (checked first, so nothing changed by hand gets sealed along)."""
    folder = Path(folder)
    verify_manifest(folder)
    payload = read_json_object(folder / QUANTIZATION)
    payload["gate"] = gate
    write_json(folder / QUANTIZATION, payload)
    write_manifest(folder)


def _model_name(config: dict, folder: Path) -> str:
    """A short label for displays and payloads: backbone and fusion when the config has them."""
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    parts = [str(model[key]) for key in ("backbone", "fusion") if model.get(key)]
    name = "-".join(parts) or folder.name
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64] or "model"
