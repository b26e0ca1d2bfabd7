"""Running a model over participants: batches, no gradients, and the predictions table.

Shared by training (the inner validation), ``sarco evaluate`` and ``sarco predict``, so the
numbers a bundle reports about itself are computed exactly as its users will compute them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from model_build.cohort import Cohort
from model_build.cohort.listings import IMAGE_FORMATS, VIDEO_FORMATS
from model_build.models import CLASSES, InputError
from model_build.models.bundle import Bundle
from model_build.models.data import Arrays, ImageSet, build_arrays, presence, read_frames
from model_build.models.evidential import evidence_from_logits
from model_build.models.fusion import FusionModel, FusionOutput, ModelBatch, Outputs, Stacker, fuse_outputs
from model_build.models.report import modality_probabilities
from model_build.models.tabular import TabularEncoder, TabularInputError, column_numbers
from sarco_core.preprocess import PreprocessError, Preprocessor

CHUNK_PARTICIPANTS = 256  # bounds memory when a cohort has thousands of participants


def make_batch(arrays: Arrays, rows: np.ndarray, preprocessor: Preprocessor,
               augment: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
               sample: tuple[int, np.random.Generator] | None = None) -> ModelBatch:
    """The participants ``rows`` of ``arrays`` as tensors; ``augment(pixels, image_indices)``
    is applied to the prepared images before normalisation (training only); ``sample = (k,
    rng)`` keeps at most k random images per participant (training only)."""
    chosen, owner = arrays.images_of(rows)
    if sample is not None and len(chosen):
        chosen, owner = _sample_images(chosen, owner, *sample)
    images = None
    if arrays.images is not None:
        pixels = arrays.images.pixels[chosen].astype(np.float32)
        if augment is not None:
            pixels = augment(pixels, chosen)
        images = torch.from_numpy(preprocessor.normalise(pixels)[:, np.newaxis])
    return ModelBatch(present=torch.from_numpy(arrays.present[rows]), images=images,
                 image_owner=torch.from_numpy(owner),
                 tables={m: torch.from_numpy(t[rows]) for m, t in arrays.tables.items()})


def _sample_images(chosen: np.ndarray, owner: np.ndarray, k: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """At most ``k`` of each owner's images, drawn at random, in their original order."""
    order = np.lexsort((rng.random(len(chosen)), owner))
    first_of_owner = np.searchsorted(owner[order], owner[order], side="left")
    kept = np.sort(order[np.arange(len(order)) - first_of_owner < k])
    return chosen[kept], owner[kept]


def autocast_for(device: torch.device):
    """bfloat16 mixed precision on a GPU (no loss scaling needed); full precision on a CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def infer(model: FusionModel, arrays: Arrays, preprocessor: Preprocessor, device: torch.device,
          batch_size: int = 32) -> Outputs:
    """Network outputs for every participant of ``arrays``, on the CPU, in float32."""
    model.eval()
    logits, fused = [], []
    with torch.no_grad():
        for start in range(0, len(arrays), batch_size):
            rows = np.arange(start, min(start + batch_size, len(arrays)))
            with autocast_for(device):
                outputs = model(make_batch(arrays, rows, preprocessor).to(device))
            logits.append(outputs.logits.float().cpu())
            if outputs.fused_logits is not None:
                fused.append(outputs.fused_logits.float().cpu())
    return Outputs(torch.cat(logits), torch.cat(fused) if fused else None)


def predictions_table(ids: list[str], fused: FusionOutput, modalities: list[str], threshold: float,
                      labels: np.ndarray | None = None) -> pd.DataFrame:
    """One row per participant: label, probability, uncertainty, each modality's contribution.

    ``contribution_<modality>`` is the modality's share of the evidence for the participant's
    true class when the label is known (so its mean over the positives is the study's
    "contribution to sarcopenia"), else for the class predicted at ``threshold``.
    """
    labels = np.full(len(ids), -1) if labels is None else labels
    known = labels >= 0
    frame = pd.DataFrame({"participant_id": ids, "label": pd.Series(labels, dtype="Int64").mask(~known)})
    frame["probability"] = fused.probability
    frame["uncertainty"] = fused.uncertainty
    klass = np.where(known, labels, (fused.probability >= threshold).astype(int))
    rows = np.arange(len(ids))
    for view, modality in enumerate(modalities):
        frame[f"contribution_{modality}"] = fused.contributions[rows, view, klass]
    return frame


def predict_cohort(model: FusionModel, fusion: str, stacker: Stacker | None, threshold: float,
                   cohort: Cohort, frame: pd.DataFrame, encoders: dict, preprocessor: Preprocessor,
                   frames_per_video: int, device: torch.device,
                   on_progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Predictions of every participant in ``frame``, read and run in chunks; ``probability_<m>``
    columns add each modality's own opinion (NaN where the participant lacks it)."""
    modalities = model.config.modalities
    parts = []
    for start in range(0, len(frame), CHUNK_PARTICIPANTS):
        chunk = frame.iloc[start:start + CHUNK_PARTICIPANTS]
        arrays = build_arrays(cohort, chunk, modalities, encoders, preprocessor, frames_per_video, on_progress)
        parts.append(predict_arrays(model, fusion, stacker, threshold, arrays, preprocessor, device))
    return pd.concat(parts, ignore_index=True)


def predict_arrays(model: FusionModel, fusion: str, stacker: Stacker | None, threshold: float, arrays: Arrays,
                   preprocessor: Preprocessor, device: torch.device) -> pd.DataFrame:
    """The predictions table of participants already in memory (see :func:`predict_cohort`).

    Evidential fusion adds ``evidence_<modality>_<class>`` (0 where the modality is missing: the
    vacuous opinion), from which any subset's fused opinion can be recomputed
    (:mod:`model_build.models.attribution`)."""
    modalities = model.config.modalities
    outputs = infer(model, arrays, preprocessor, device)
    present = torch.from_numpy(arrays.present)
    fused = fuse_outputs(outputs, present, fusion, stacker)
    table = predictions_table(arrays.ids, fused, modalities, threshold, arrays.labels)
    alone = modality_probabilities(outputs, fusion)
    for view, modality in enumerate(modalities):
        table[f"probability_{modality}"] = np.where(arrays.present[:, view], alone[:, view], np.nan)
    if fusion == "evidential":
        evidence = evidence_from_logits(outputs.logits.float()) * present.unsqueeze(-1)
        for (view, modality), (k, klass) in product(enumerate(modalities), enumerate(CLASSES)):
            table[evidence_column(modality, klass)] = evidence[:, view, k].numpy()
    return table


def evidence_column(modality: str, klass: str) -> str:
    return f"evidence_{modality}_{klass}"


def parse_key_values(pairs: list[str], modality: str, encoder: TabularEncoder | None) -> dict[str, str]:
    """``KEY=VALUE`` pairs given with ``--clinical`` / ``--lab``, checked against the bundle."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            example = f"{encoder.columns[0]}=..." if encoder is not None else "KEY=VALUE"
            raise InputError(f"--{modality} {pair!r}: expected KEY=VALUE, e.g. --{modality} {example}")
        values[key.strip()] = value.strip()
    return check_values(values, modality, encoder)


def check_values(values: dict[str, str], modality: str, encoder: TabularEncoder | None) -> dict[str, str]:
    """Values of one tabular input checked against the bundle (known keys, numbers that parse,
    categories it knows); the same checks for ``sarco predict`` and the Python API."""
    if values and encoder is None:
        raise InputError(f"--{modality}: this model has no {modality} input; fix: leave --{modality} out")
    for key in values:
        if key not in encoder.columns:
            raise InputError(f"--{modality} {key}: not a {modality} input of this model; fix: use one of "
                             f"{', '.join(encoder.columns)}")
    for column in encoder.numeric if encoder else []:
        if column.name in values:
            try:
                column_numbers(pd.Series([values[column.name]]), column.name, column.type)
            except TabularInputError:
                raise InputError(f"--{modality} {column.name}={values[column.name]}: not a number; "
                                 "fix: write a plain number in the unit of the model card") from None
    for column in encoder.categorical if encoder else []:
        if column.name in values and values[column.name] not in column.levels:
            raise InputError(f"--{modality} {column.name}={values[column.name]}: fix: use one of "
                             f"{', '.join(column.levels)}")
    return values


def read_files(files: list[Path], preprocessor: Preprocessor, frames_per_video: int,
               mm_per_pixel: float | None, depth_mm: float | None = None) -> ImageSet:
    """Images or recordings named on the command line, prepared as in training."""
    pixels = []
    for path in files:
        suffix = path.suffix.lower()
        kind = "video" if VIDEO_FORMATS.get(suffix) == "video" else IMAGE_FORMATS.get(suffix)
        if kind is None:
            raise InputError(f"{path}: unsupported file type {suffix!r}; fix: give PNG, JPEG, BMP, TIFF, "
                             "DICOM or a video (MP4, AVI)")
        try:
            frames, _ = read_frames(path, kind, frames_per_video)
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: cannot be read ({error})") from None
        try:
            pixels += [preprocessor.prepare(frame, mm_per_pixel, depth_mm) for frame in frames]
        except PreprocessError as error:
            raise InputError(f"{path}: {error}") from None
    size = preprocessor.params.size
    stacked = np.stack(pixels).astype(np.float16) if pixels else np.zeros((0, size, size), np.float16)
    return ImageSet(stacked, np.zeros(len(pixels), np.int64))


def predict_participant(bundle: Bundle, files: list[Path], clinical: dict[str, str], lab: dict[str, str],
                        mm_per_pixel: float | None, depth_mm: float | None, device: torch.device) -> dict:
    """One participant's result as a JSON-ready dict."""
    config = bundle.config
    if config.modalities == ["image"] and not files:
        raise InputError("this is an image model: give at least one image or recording")
    if files and "image" not in config.modalities:
        raise InputError("this model takes no images; fix: give only --clinical / --lab values")
    given = {**clinical, **lab}
    columns = [c for e in bundle.encoders.values() for c in e.columns]
    frame = pd.DataFrame({c: [given.get(c, pd.NA)] for c in columns} | {"participant_id": ["participant"]})
    images = read_files(files, bundle.preprocessor, bundle.frames_per_video, mm_per_pixel, depth_mm) \
        if "image" in config.modalities else None
    counts = None if images is None else np.array([len(images.pixels)])
    arrays = Arrays(["participant"], np.array([-1]), presence(frame, config.modalities, bundle.encoders, counts),
                    {m: bundle.encoders[m].transform(frame) for m in config.modalities if m != "image"}, images)
    outputs = infer(bundle.model.to(device), arrays, bundle.preprocessor, device)
    fused = fuse_outputs(outputs, torch.from_numpy(arrays.present), config.fusion, bundle.stacker)
    alone = modality_probabilities(outputs, config.fusion)[0]
    probability = float(fused.probability[0])
    result = {
        "probability": probability,
        "decision": "sarcopenia" if probability >= bundle.threshold else "no sarcopenia",
        "threshold": bundle.threshold,
        "uncertainty": None if np.isnan(fused.uncertainty[0]) else float(fused.uncertainty[0]),
        "frames": 0 if images is None else int(len(images.pixels)),
        "modalities": {},
    }
    for view, modality in enumerate(config.modalities):
        present = bool(arrays.present[0, view])
        entry: dict = {"present": present, "probability": float(alone[view]) if present else None}
        if config.fusion == "evidential":
            entry["contribution"] = {name: float(fused.contributions[0, view, k])
                                     for k, name in enumerate(CLASSES)}
        result["modalities"][modality] = entry
    return result
