"""The images `sarco measure quantize` calibrates the aponeurosis model on, and those its gate
holds out, drawn from one data folder.

DATA is a folder with an ``index.csv`` (its ``image`` column, like
``../shared/data/dl-track-aponeuroses``; the masks are not needed) or any folder of stills,
searched recursively with ``masks`` folders left out (the committed real subset
``tests/data/real/muscle-us-timtrack``, say). Calibration needs no labels, only images that look
like the field.

- **Layouts.** An image's layout is its size, width x height: on these data, a scanner and its
  export settings. Consecutive images of one layout often come from one recording.
- **Held out, by blocks.** Per layout, the images in name order are cut into
  :data:`HOLDOUT_BLOCKS` runs of consecutive images and one run, drawn from the seed, is held out
  for the gate (25 %). Near-copies (neighbouring frames of one recording) then fall on one side,
  so the gate judges images the quantizer never saw nor saw a twin of; the calibration never
  uses them.
- **Calibration, balanced.** From the rest, images are taken layout by layout in turn (each
  layout's images in an order drawn from the seed) until ``n`` are prepared, so a scanner with
  many images does not set the activation ranges alone; a small layout gives all it has.
- **Prepared as the device prepares a frame.** Each image is read as `sarco measure run` reads a
  still and made ready by :func:`prepare_segmentation_input` with the bundle's recipe (scan
  region, stretch, scaling). An image with no scan region, which the device would not measure,
  or that does not decode, is skipped and listed.

The same folder, ``n`` and seed give the same images in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from model_build.imaging_report import IMAGE_FORMATS
from model_build.measure.data import INDEX, MeasureDataError, read_index
from model_build.measure.run import read_image
from sarco_core.imaging import ScanRegionNotFound
from sarco_core.measure.segmentation import SegmentationInput, SegmentationRecipe, prepare_segmentation_input

HOLDOUT_BLOCKS = 4  # one run of consecutive images in four, per layout, is held out for the gate


@dataclass(frozen=True)
class PreparedImage:
    """One image made ready for the model: its path, layout and the recipe's input."""

    path: Path
    layout: str
    prepared: SegmentationInput


@dataclass(frozen=True)
class ImageSplit:
    """The prepared calibration and held-out images, and how they were drawn (for the record)."""

    calibration: list[PreparedImage]
    held_out: list[PreparedImage]
    layouts: list[dict]  # per layout: images, held out, calibrated
    skipped: list[dict]  # path and why

    @property
    def inputs(self) -> np.ndarray:
        """The calibration inputs, (N, 1, S, S) float32."""
        return np.concatenate([image.prepared.tensor for image in self.calibration]).astype(np.float32)


def image_paths(data: Path) -> list[Path]:
    """The stills of DATA (module docstring), sorted; MeasureDataError naming the folder otherwise."""
    data = Path(data)
    if not data.is_dir():
        raise MeasureDataError(f"{data}: not a folder; fix: give a folder with an index.csv, or a folder of images")
    if (data / INDEX).is_file():
        return sorted(row["image"] for row in read_index(data))
    found = sorted(p for p in data.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_FORMATS
                   and not p.name.startswith(".") and "masks" not in p.relative_to(data).parts)
    if not found:
        raise MeasureDataError(f"{data}: no index.csv and no image ({', '.join(sorted(IMAGE_FORMATS))}) in it; "
                               "fix: give a folder of real scans like ../shared/data/dl-track-aponeuroses")
    return found


def split_images(data: Path, recipe: SegmentationRecipe, n: int, seed: int) -> ImageSplit:
    """Held-out and calibration images of DATA, prepared (module docstring)."""
    skipped: list[dict] = []
    by_layout: dict[str, list[Path]] = {}
    for path in image_paths(data):
        layout = _layout(path)
        if layout is None:
            skipped.append({"path": str(path), "why": "does not decode"})
        else:
            by_layout.setdefault(layout, []).append(path)
    rng = np.random.default_rng(seed)
    held_out_paths: dict[str, list[Path]] = {}
    queues: dict[str, list[Path]] = {}
    for layout in sorted(by_layout):
        blocks = np.array_split(np.arange(len(by_layout[layout])), HOLDOUT_BLOCKS)
        chosen = set(blocks[int(rng.integers(HOLDOUT_BLOCKS))].tolist())
        paths = by_layout[layout]
        held_out_paths[layout] = [p for k, p in enumerate(paths) if k in chosen]
        rest = [p for k, p in enumerate(paths) if k not in chosen]
        queues[layout] = [rest[k] for k in rng.permutation(len(rest))]
    held_out = [image for layout in sorted(held_out_paths) for path in held_out_paths[layout]
                if (image := _prepare(path, layout, recipe, skipped)) is not None]
    calibration = _balanced(queues, n, recipe, skipped)
    layouts = [{"layout": layout, "images": len(paths),
                "held_out": sum(image.layout == layout for image in held_out),
                "calibration": sum(image.layout == layout for image in calibration)}
               for layout, paths in sorted(by_layout.items())]
    return ImageSplit(calibration, held_out, layouts, skipped)


def _balanced(queues: dict[str, list[Path]], n: int, recipe: SegmentationRecipe,
              skipped: list[dict]) -> list[PreparedImage]:
    """Up to ``n`` prepared images, one layout after the other in turn."""
    chosen: list[PreparedImage] = []
    position = 0
    while len(chosen) < n and any(position < len(queue) for queue in queues.values()):
        for layout in sorted(queues):
            if position < len(queues[layout]) and len(chosen) < n:
                image = _prepare(queues[layout][position], layout, recipe, skipped)
                if image is not None:
                    chosen.append(image)
        position += 1
    return chosen


def _layout(path: Path) -> str | None:
    """``WIDTHxHEIGHT`` from the file's header (nothing decoded), or None when unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError):
        return None
    return f"{width}x{height}"


def _prepare(path: Path, layout: str, recipe: SegmentationRecipe, skipped: list[dict]) -> PreparedImage | None:
    pixels = read_image(path)
    if pixels is None:
        skipped.append({"path": str(path), "why": "OpenCV cannot read it"})
        return None
    try:
        return PreparedImage(path, layout, prepare_segmentation_input(pixels, recipe))
    except ValueError as error:  # ScanRegionNotFound, or a region too small to measure
        skipped.append({"path": str(path), "why": "no scan region" if isinstance(error, ScanRegionNotFound)
                        else str(error)})
        return None
