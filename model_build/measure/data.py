"""Training and evaluation data of the aponeurosis model: image/mask pairs, read once, augmented
per step.

A data folder holds an ``index.csv`` with (at least) the columns ``image`` and ``mask``: paths
relative to the folder, like ``../shared/data/dl-track-aponeuroses``. A mask marks aponeuroses
as non-zero pixels, DL_Track's way, and becomes the label convention (0 other, 1 superficial,
2 deep) through :func:`sarco_core.measure.labels_from_bands`. A mask that is already a label
image (values 0, 1 and 2 only, as the synthetic frames write it) is taken as it is.

Each pair is cropped the way the model will see the image on the device: to the scan region
(:func:`sarco_core.imaging.find_scan_region`) when the recipe crops. If the detected region
misses part of the mask (a dark band can split a scan in two: 1 of the 298 DL_Track images),
the crop is widened to hold the whole mask, so the model still learns the whole image.

Augmentation (:func:`augment`) stands for what differs between scanners, operators and sessions,
each with its own seeded random numbers (``(seed, epoch, image)``), so a run is reproducible:

- geometry: left-right flip (probe orientation), lateral crop to 60-100 % of the width (a
  narrower probe or zoom), for a quarter of the images the top cut off just above (or into) the
  superficial aponeurosis (exports cropped there, as one DL_Track scanner's are), depth (the bottom cut by up to 25 % or extended by up to 30 % with
  dark tissue: the depth setting; the stretch to the square input then also changes the vertical
  scale), a tilt of up to 4 degrees (probe angle);
- scanner user interface: flat panels with tick marks on the sides or top, as an imperfect
  scan-region crop leaves them (30 % of the images);
- grey levels: gain (x0.6-1.5), brightness (-25..+25), gamma (0.7-1.4: the dynamic range and
  grey map), speckle (multiplicative, Rayleigh-like, partly smoothed), blur (30 %).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sarco_core.errors import SarcoError
from sarco_core.imaging import ScanRegionNotFound, find_scan_region, to_grey_u8
from sarco_core.measure import labels_from_bands
from sarco_core.measure.segmentation import SegmentationRecipe, model_input

INDEX = "index.csv"
CLASSES = 3
KEEP_SIDE = 2.0  # a crop is kept at most this many times the model input side (augmenting costs less)
TOP_CROP = 0.25  # share of training images whose top is cut off just above the superficial aponeurosis


class MeasureDataError(SarcoError, ValueError):
    """A data folder or one of its rows cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class Pair:
    """One image with its labels, cropped to the scan region and shrunk for training.

    ``grey``: uint8 crop (shrunk to at most ``KEEP_SIDE`` times the input side);
    ``onehot``: uint8 (H, W, 3), 255 where a class is (labels resized as soft one-hot);
    ``labels``: the full-resolution labels of the whole frame (evaluation's truth);
    ``box``: the crop in the frame; ``source``: data folder name; ``name``: the image path.
    """

    name: str
    source: str
    grey: np.ndarray
    onehot: np.ndarray
    labels: np.ndarray
    box: tuple[int, int, int, int]
    frame_shape: tuple[int, int]


def check_out(out: Path) -> None:
    """``--out`` must be new or an empty folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MeasureDataError(f"{out}: exists and is not an empty folder; fix: give a new --out folder "
                               "(a model is never overwritten)")


def read_index(folder: Path) -> list[dict]:
    """The rows of ``folder/index.csv`` with ``image`` and ``mask`` resolved; MeasureDataError naming
    the file, row and fix otherwise."""
    folder = Path(folder)
    index = folder / INDEX
    if not index.is_file():
        raise MeasureDataError(f"{index}: not found; fix: give a folder with an index.csv of image,mask pairs "
                               "(like ../shared/data/dl-track-aponeuroses)")
    with index.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("image", "mask") if c not in (reader.fieldnames or [])]
        if missing:
            raise MeasureDataError(f"{index}: no column {', '.join(missing)} (columns: {reader.fieldnames}); "
                                   "fix: the header must name image and mask")
        rows = []
        for number, row in enumerate(reader, start=2):
            for column in ("image", "mask"):
                relative = (row.get(column) or "").strip()
                if not relative:
                    raise MeasureDataError(f"{index}: row {number}: {column} is empty; fix: give a path relative "
                                           "to the folder")
                if not (folder / relative).is_file():
                    raise MeasureDataError(f"{index}: row {number}: {column} {relative}: file not found; fix: "
                                           "correct the path or remove the row")
            rows.append({"row": number, "image": folder / row["image"].strip(), "mask": folder / row["mask"].strip(),
                         "name": row["image"].strip()})
    if not rows:
        raise MeasureDataError(f"{index}: no rows; fix: list at least one image,mask pair")
    return rows


def read_pair_arrays(row: dict) -> tuple[np.ndarray, np.ndarray]:
    """(the image as decoded, its labels 0/1/2) for one index row."""
    image = cv2.imread(str(row["image"]), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise MeasureDataError(f"{row['image']}: OpenCV cannot read it (row {row['row']} of index.csv); fix: "
                               "convert it to PNG")
    mask = cv2.imread(str(row["mask"]), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise MeasureDataError(f"{row['mask']}: OpenCV cannot read it (row {row['row']} of index.csv); fix: "
                               "convert it to PNG")
    if mask.shape[:2] != image.shape[:2]:
        raise MeasureDataError(f"{row['mask']}: {mask.shape[1]}x{mask.shape[0]} pixels, its image "
                               f"{image.shape[1]}x{image.shape[0]} (row {row['row']} of index.csv); fix: the mask "
                               "must have the image's size")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    values = np.unique(mask)
    labels = mask.astype(np.uint8) if set(values.tolist()) <= {0, 1, 2} and 2 in values else labels_from_bands(mask)
    return image, labels


def crop_box(image: np.ndarray, labels: np.ndarray, recipe: SegmentationRecipe) -> tuple[int, int, int, int]:
    """The scan region (whole frame when the recipe does not crop or none is found), widened to hold
    every labelled pixel."""
    height, width = labels.shape
    if not recipe.crop_to_scan:
        return 0, 0, width, height
    try:
        x0, y0, x1, y1 = find_scan_region(image)
    except ScanRegionNotFound:
        return 0, 0, width, height
    rows, columns = np.nonzero(labels)
    if rows.size:
        x0, y0 = min(x0, int(columns.min())), min(y0, int(rows.min()))
        x1, y1 = max(x1, int(columns.max()) + 1), max(y1, int(rows.max()) + 1)
    return x0, y0, x1, y1


def load_pairs(folders: list[Path], recipe: SegmentationRecipe, progress=None) -> list[Pair]:
    """Every pair of every folder, cropped and shrunk (``progress(done, total)`` after each)."""
    rows = [(Path(folder), row) for folder in folders for row in read_index(folder)]
    pairs = []
    for done, (folder, row) in enumerate(rows, start=1):
        pairs.append(make_pair(row, folder.name, recipe))
        if progress is not None:
            progress(done, len(rows))
    return pairs


def make_pair(row: dict, source: str, recipe: SegmentationRecipe) -> Pair:
    image, labels = read_pair_arrays(row)
    box = crop_box(image, labels, recipe)
    x0, y0, x1, y1 = box
    grey = to_grey_u8(image)[y0:y1, x0:x1]
    crop_labels = labels[y0:y1, x0:x1]
    onehot = np.stack([(crop_labels == k) for k in range(CLASSES)], axis=2).astype(np.uint8) * np.uint8(255)
    limit = int(KEEP_SIDE * recipe.size)
    height, width = grey.shape
    size = (min(width, limit), min(height, limit))
    if size != (width, height):
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        onehot = cv2.resize(onehot, size, interpolation=cv2.INTER_AREA)
    return Pair(row["name"], source, np.ascontiguousarray(grey), np.ascontiguousarray(onehot), labels, box,
                labels.shape)


def targets(onehot: np.ndarray, size: int) -> np.ndarray:
    """Soft one-hot (H, W, 3) -> class index per pixel at the model's input size."""
    resized = cv2.resize(onehot, (size, size), interpolation=cv2.INTER_AREA)
    return np.argmax(resized, axis=2).astype(np.int64)


def plain_example(pair: Pair, recipe: SegmentationRecipe) -> tuple[np.ndarray, np.ndarray]:
    """Model input (S, S) float32 and targets (S, S) int64 with no augmentation."""
    return model_input(pair.grey, recipe), targets(pair.onehot, recipe.size)


def augment(grey: np.ndarray, onehot: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A randomly changed copy of one crop and its soft labels (the module docstring)."""
    grey = grey.astype(np.float32)
    onehot = onehot.astype(np.float32)
    height, width = grey.shape
    if rng.random() < 0.5:
        grey, onehot = grey[:, ::-1], onehot[:, ::-1]
    keep = rng.uniform(0.6, 1.0)
    new_width = max(16, int(round(width * keep)))
    left = int(rng.integers(0, width - new_width + 1))
    grey, onehot = grey[:, left:left + new_width], onehot[:, left:left + new_width]
    if rng.random() < TOP_CROP:  # an export cropped at the superficial aponeurosis (no skin, no fat above)
        rows = np.flatnonzero(onehot[..., 1].max(axis=1) > 127)
        top = 0 if rows.size == 0 else int(rows[0]) + int(rng.uniform(-0.03, 0.005) * height)
        if 0 < top < height // 2:
            grey, onehot = grey[top:], onehot[top:]
            height = grey.shape[0]
    depth = rng.uniform(0.75, 1.3)
    new_height = max(16, int(round(height * depth)))
    if new_height <= height:
        grey, onehot = grey[:new_height], onehot[:new_height]
    else:
        extra = new_height - height
        floor = float(np.percentile(grey[-max(4, height // 10):], 30))
        tissue = rng.uniform(0.3, 1.0) * floor * rng.rayleigh(0.8, (extra, new_width)).astype(np.float32)
        background = np.zeros((extra, new_width, CLASSES), np.float32)
        background[..., 0] = 255.0
        grey = np.vstack([grey, tissue])
        onehot = np.vstack([onehot, background])
    grey, onehot = np.ascontiguousarray(grey), np.ascontiguousarray(onehot)
    if rng.random() < 0.5:
        angle = rng.uniform(-4.0, 4.0)
        h, w = grey.shape
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        grey = cv2.warpAffine(grey, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        onehot = cv2.warpAffine(onehot, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.3:
        grey, onehot = _ui_border(grey, onehot, rng)
    grey = _grey_levels(grey, rng)
    return grey, onehot


def _ui_border(grey: np.ndarray, onehot: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flat panels (with tick marks) left, right and/or on top: what a loose scan-region crop keeps."""
    h, w = grey.shape
    left, right = (int(rng.uniform(0, 0.08) * w) if rng.random() < 0.6 else 0 for _ in range(2))
    top = int(rng.uniform(0, 0.06) * h) if rng.random() < 0.4 else 0
    level = float(rng.choice([0.0, rng.uniform(10, 80)]))
    canvas = np.full((h + top, w + left + right), level, np.float32)
    canvas[top:, left:left + w] = grey
    labels = np.zeros((h + top, w + left + right, CLASSES), np.float32)
    labels[..., 0] = 255.0
    labels[top:, left:left + w] = onehot
    for x0, x1 in ((0, left), (left + w, left + w + right)):
        if x1 - x0 >= 3 and rng.random() < 0.7:
            step = int(rng.integers(12, 40))
            column = int(rng.integers(x0, x1 - 2))
            canvas[top::step, column:column + 3] = rng.uniform(150, 255)
    return canvas, labels


def _grey_levels(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.6:  # speckle: multiplicative, Rayleigh-like, a little smoothed
        noise = rng.rayleigh(1.0 / np.sqrt(np.pi / 2.0), grey.shape).astype(np.float32)
        if rng.random() < 0.5:
            noise = cv2.GaussianBlur(noise, (0, 0), rng.uniform(0.5, 1.2))
            noise /= max(float(noise.mean()), 1e-3)
        strength = rng.uniform(0.1, 0.5)
        grey = grey * (1.0 - strength + strength * noise)
    if rng.random() < 0.3:
        grey = cv2.GaussianBlur(grey, (0, 0), rng.uniform(0.5, 1.5))
    grey = grey * rng.uniform(0.6, 1.5) + rng.uniform(-25.0, 25.0)
    grey = 255.0 * (np.clip(grey, 0.0, 255.0) / 255.0) ** rng.uniform(0.7, 1.4)
    return np.clip(grey, 0.0, 255.0)


def augmented_example(pair: Pair, recipe: SegmentationRecipe, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Model input (S, S) float32 and targets (S, S) int64 of a randomly augmented copy."""
    grey, onehot = augment(pair.grey, pair.onehot, rng)
    grey = np.rint(grey).astype(np.uint8)  # 8-bit, as the device's frames are
    return model_input(grey, recipe), targets(onehot, recipe.size)
