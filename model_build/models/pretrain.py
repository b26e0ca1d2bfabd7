"""Self-supervised pretraining of the image encoder on unlabelled ultrasound (SimCLR).

Why: the ImageNet encoder has never seen speckle, acoustic shadows or aponeuroses. Real muscle
scans without any label (TimTrack, DL_Track and DeepACSA images in ../shared/data) can still
teach it ultrasound texture: two random views of one scan (crop, rotation, gain, time-gain ramp,
depth crop, speckle, mirror) must map close together and away from every other scan's views
(SimCLR's NT-Xent loss; Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations", ICML). Training continues from ImageNet, at a small learning rate, so the
result is ImageNet adapted to ultrasound rather than a network learnt from 600 images.

Only pixels are read: no mask, measurement or label of the source data sets enters the weights
(issue #21: no labels from ../shared/data may be baked into a default model). The output is a
safetensors file of the encoder that ``sarco train --image-weights`` loads, and a JSON record of
how it was made beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from monai.transforms import RandScaleCrop, Resize
from rich.progress import Progress
from torch import nn

from model_build.cohort.listings import IMAGE_FORMATS
from model_build.models.augment import Augmenter
from model_build.models.data import available_cores
from model_build.models.image import build_image_encoder
from model_build.models.splits import TrainingError
from sarco_core.files import atomic_path
from sarco_core.preprocess import PreprocessError, PreprocessParams, Preprocessor

IMAGE_SUFFIXES = tuple(suffix for suffix, kind in IMAGE_FORMATS.items() if suffix and kind != "dicom")
"""Still-image files a cohort's images.csv may list (DICOM left out: its pixels need the header)."""


@dataclass(frozen=True)
class PretrainOptions:
    image_size: int = 128
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 1e-4         # the encoder, pretrained on ImageNet: adapt, do not overwrite
    head_learning_rate: float = 1e-3    # the projection head, new
    temperature: float = 0.2
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 4:
            raise TrainingError(f"--batch-size {self.batch_size}: contrastive pretraining compares each image with "
                                "the rest of its batch; fix: use 4 or more (64 by default)")


def image_files(folders: list[Path]) -> list[Path]:
    """The images under ``folders``, searched recursively, less every file an ``index.csv`` at any
    depth lists in a ``mask`` column (masks are labels, never pixels to learn from)."""
    found: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            raise TrainingError(f"{folder}: is not a folder; fix: give folders of ultrasound images")
        masks = {mask for index in folder.rglob("index.csv") for mask in _listed_masks(index)}
        found += sorted(p for p in folder.rglob("*")
                        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and p.resolve() not in masks)
    if len(found) < 16:
        raise TrainingError(f"{len(found)} images under {', '.join(map(str, folders))}; fix: pretraining needs at "
                            "least 16 (PNG, JPEG, BMP or TIFF)")
    return found


def _listed_masks(index: Path) -> set[Path]:
    try:
        table = pd.read_csv(index, dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise TrainingError(f"{index}: cannot be read as CSV ({error}); fix: repair it, or move it out of the "
                            "folders given") from None
    if "mask" not in table.columns:
        return set()
    return {(index.parent / name).resolve() for name in table["mask"].dropna()}


def prepare_images(paths: list[Path], size: int, progress: Progress) -> tuple[np.ndarray, list[str]]:
    """Each image cropped to its scan region and letterboxed to ``size`` (the training recipe's own
    preprocessing), in [0, 1]; files that cannot be read or hold no scan are skipped and named."""
    preprocessor = Preprocessor(PreprocessParams(size=size, crop_to_scan=True))
    prepared, skipped = [], []
    task = progress.add_task("reading images", total=len(paths))
    for path in paths:
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        try:
            if pixels is None:
                raise PreprocessError("OpenCV cannot decode it")
            prepared.append(preprocessor.prepare(pixels))
        except PreprocessError as error:
            skipped.append(f"{path}: {error}")
        progress.advance(task)
    progress.remove_task(task)
    if len(prepared) < 4:
        raise TrainingError(f"{len(prepared)} of {len(paths)} images could be read as scans ({'; '.join(skipped[:3])}"
                            f"{' ...' if len(skipped) > 3 else ''}); fix: give folders of readable ultrasound images")
    return np.stack(prepared), skipped


class Views:
    """Two random views of each image: a crop of 40-100 % of the side resized back, then the
    scanner augmentation (model_build/models/augment.py), each seeded from (seed, epoch, image, view)."""

    def __init__(self, seed: int, size: int) -> None:
        self.crop = RandScaleCrop(roi_scale=0.4, max_roi_scale=1.0, random_size=True)
        self.resize = Resize((size, size))
        self.augment = Augmenter(seed, "scanner")
        self.seed = seed

    def __call__(self, images: np.ndarray, epoch: int, indices: np.ndarray, view: int) -> np.ndarray:
        cropped = np.empty_like(images)
        for position, (image, index) in enumerate(zip(images, indices)):
            seed = np.random.default_rng([self.seed, epoch, int(index), view]).integers(2**31)
            self.crop.set_random_state(seed=int(seed))
            cropped[position] = np.asarray(self.resize(self.crop(image[np.newaxis])))[0]
        return self.augment(cropped, 2 * epoch + view, indices)


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view's positive is the other view of its image, every other view in the
    batch a negative."""
    z = F.normalize(torch.cat([first, second]), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    n = first.shape[0]
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(similarity, positives)


def pretrain(folders: list[Path], out: Path, options: PretrainOptions, progress: Progress | None = None) -> dict:
    """Pretrain, write ``out`` (safetensors) and ``out.json`` (the record); returns the record."""
    from safetensors.torch import save_file

    progress = progress or Progress(disable=True)
    if out.suffix != ".safetensors":
        raise TrainingError(f"{out}: fix: name the weights file *.safetensors")
    torch.set_num_threads(options.threads or available_cores())
    torch.use_deterministic_algorithms(True, warn_only=True)
    paths = image_files(folders)
    images, skipped = prepare_images(paths, options.image_size, progress)
    torch.manual_seed(options.seed)
    encoder = build_image_encoder("efficientnet-lite0", options.image_size, pretrained=True)
    projection = nn.Sequential(nn.Linear(encoder.out_features, 512), nn.ReLU(), nn.Linear(512, 128))
    optimizer = torch.optim.AdamW([{"params": encoder.parameters(), "lr": options.learning_rate},
                                   {"params": projection.parameters(), "lr": options.head_learning_rate}],
                                  weight_decay=1e-4)
    views, normalise = Views(options.seed, options.image_size), Preprocessor().normalise
    batch_size = min(options.batch_size, len(images))  # a last short batch is dropped: never all of them
    history, started = [], time.perf_counter()
    for epoch in range(options.epochs):
        order = np.random.default_rng([options.seed, epoch]).permutation(len(images))
        batches = [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
        task = progress.add_task(f"pretraining epoch {epoch + 1}/{options.epochs}", total=len(batches))
        encoder.train()
        projection.train()
        losses = []
        for rows in batches:
            pair = [torch.from_numpy(normalise(views(images[rows], epoch, rows, view)))[:, None] for view in (0, 1)]
            loss = nt_xent(projection(encoder(pair[0])), projection(encoder(pair[1])), options.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            progress.advance(task)
        progress.remove_task(task)
        history.append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4)})
        progress.console.print(f"pretraining epoch {epoch + 1}: contrastive loss {history[-1]['loss']:.4f}")
    record = {"method": "SimCLR (NT-Xent), from ImageNet EfficientNet-Lite0", "options": asdict(options),
              "sources": [str(folder) for folder in folders], "images": len(images), "skipped": skipped,
              "history": history, "seconds": round(time.perf_counter() - started, 1),
              "labels_used": "none: pixels only (masks listed in index.csv files are skipped)"}
    state = {key: value.detach().contiguous() for key, value in encoder.state_dict().items()}
    with atomic_path(out) as temporary:
        save_file(state, str(temporary), metadata={"record": json.dumps(record)})
    with atomic_path(out.with_suffix(".json")) as temporary:
        temporary.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record
