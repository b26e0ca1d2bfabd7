"""The aponeurosis segmentation model's input and output recipe, shared by training and the device.

The model sees one thing and says one thing, and both ends of it are computed here, with numpy
and OpenCV only, so the workstation (training, ``sarco measure run | evaluate``) and the device
prepare a frame and read the answer the same way:

**In** (:func:`prepare_segmentation_input`): the frame -> 8-bit grey (``to_grey_u8``) -> cropped
to the scan region (``find_scan_region``) when the recipe says so, which drops the scanner's
user interface -> resized, *stretched*, to the model's square input (area averaging when
shrinking, bilinear when enlarging; the aspect ratio is not kept: the labels are stretched back,
so nothing is lost and no input pixel is spent on padding) -> scaled to
``(grey / 255 - mean) / std``, as a ``(1, 1, size, size)`` float32 array.

**Out** (:func:`labels_from_logits`): the model's per-class logits ``(3, h, w)`` (any size; the
model's input size in practice) are resized bilinearly to the crop's size, so the aponeuroses'
edges are placed to a fraction of an input pixel, and the most likely class of each pixel is the
label (0 other, 1 superficial, 2 deep: :mod:`sarco_core.measure.labels`). Cleanup, when the
recipe asks for it (:func:`keep_main_bands`): per aponeurosis, the largest connected piece is
kept, with the pieces beside it (an aponeurosis the model saw with a gap) that are at least a
tenth of its area and share at most a tenth of its columns; specks and stray blobs above or below
it go. :func:`frame_labels` places the crop's labels in a label image of the whole frame.

:func:`measure_segmented` is the last step both stages call: logits -> labels -> the
measurements (:func:`sarco_core.measure.measure`) on the grey crop, whose pixels are the frame's
pixels (the crop is not rescaled), so thickness in pixels and mm is the frame's.

The recipe's parameters live in the measurement bundle's ``aponeurosis.json``
(:class:`SegmentationRecipe`, read by :func:`sarco_core.bundle.load_measurement_bundle`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from sarco_core.imaging.pixels import Box, to_grey_u8
from sarco_core.imaging.region import find_scan_region
from sarco_core.imaging.scale import PixelSize
from sarco_core.measure.frame import FrameMeasurement, measure
from sarco_core.measure.labels import DEEP, LABEL_NAMES, SUPERFICIAL

RECIPE_VERSION = 1
CLASSES = len(LABEL_NAMES)  # 0 other, 1 superficial, 2 deep
_PIECE_AREA = 0.10   # a side piece is kept when at least this share of the largest piece's area
_PIECE_SHARED = 0.10  # ... and it shares at most this share of its columns with the pieces kept


class RecipeError(ValueError):
    """Recipe parameters that cannot be used (the bundle loader turns it into a BundleError)."""


@dataclass(frozen=True)
class SegmentationRecipe:
    """Everything that decides the segmentation model's input and how its output is read."""

    size: int = 256                 # square input side, pixels
    crop_to_scan: bool = True       # crop to the detected scan region first
    mean: float = 127.0 / 255.0     # input scaling: (grey/255 - mean) / std (EfficientNet-Lite's)
    std: float = 128.0 / 255.0
    keep_main_bands: bool = True    # cleanup of the labels (module docstring)
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 32 <= self.size <= 2048:
            raise RecipeError(f"size {self.size!r} must be a whole number of pixels in 32-2048")
        if not (isinstance(self.std, (int, float)) and self.std > 0):
            raise RecipeError(f"std {self.std!r} must be a positive number")
        if not isinstance(self.mean, (int, float)):
            raise RecipeError(f"mean {self.mean!r} must be a number")
        if self.version != RECIPE_VERSION:
            raise RecipeError(f"recipe version {self.version!r} is not {RECIPE_VERSION}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> SegmentationRecipe:
        if not isinstance(raw, dict):
            raise RecipeError(f"the recipe must be a JSON object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise RecipeError(f"recipe parameters {unknown} are unknown to this version of sarco")
        return cls(**raw)


@dataclass(frozen=True)
class SegmentationInput:
    """One frame made ready for the model.

    ``grey``: the 8-bit grey crop, in the frame's own pixels (measurements run on it);
    ``box``: where the crop lies in the frame, ``(x0, y0, x1, y1)``, x1/y1 exclusive;
    ``frame_shape``: the frame's (height, width); ``tensor``: the model input, (1, 1, S, S).
    """

    grey: np.ndarray
    box: Box
    frame_shape: tuple[int, int]
    tensor: np.ndarray


def model_input(grey_u8: np.ndarray, recipe: SegmentationRecipe) -> np.ndarray:
    """A 2-D uint8 grey image -> the (size, size) float32 model input (stretched, scaled)."""
    height, width = grey_u8.shape
    size = recipe.size
    shrinking = size <= width and size <= height
    resized = cv2.resize(grey_u8, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    scale = np.float32(1.0 / (255.0 * recipe.std))
    return resized.astype(np.float32) * scale - np.float32(recipe.mean / recipe.std)


def prepare_segmentation_input(pixels: np.ndarray, recipe: SegmentationRecipe,
                               box: Box | None = None) -> SegmentationInput:
    """The frame (grey or BGR, any depth OpenCV or pydicom gives) made ready for the model.

    ``box``: the scan region when the caller knows it (a DICOM region, a tracked region);
    otherwise it is found when the recipe crops to the scan, which raises
    :class:`~sarco_core.imaging.region.ScanRegionNotFound` on a frame with no B-mode area.
    """
    grey = to_grey_u8(pixels)
    height, width = grey.shape
    if box is None:
        box = find_scan_region(pixels) if recipe.crop_to_scan else (0, 0, width, height)
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise ValueError(f"scan region {box} of a {width}x{height} frame is too small to measure")
    crop = np.ascontiguousarray(grey[y0:y1, x0:x1])
    return SegmentationInput(crop, (x0, y0, x1, y1), (height, width), model_input(crop, recipe)[None, None])


def labels_from_logits(logits: np.ndarray, shape: tuple[int, int], keep_main: bool = True) -> np.ndarray:
    """Per-class logits ``(3, h, w)`` -> uint8 labels of ``shape`` (height, width).

    The logits are resized bilinearly to ``shape`` before the per-pixel maximum, so the label
    edges fall between the model's pixels where its scores cross.
    """
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim == 4 and logits.shape[0] == 1:
        logits = logits[0]
    if logits.ndim != 3 or logits.shape[0] != CLASSES:
        raise ValueError(f"logits must be ({CLASSES}, h, w), got {logits.shape}")
    height, width = int(shape[0]), int(shape[1])
    if logits.shape[1:] != (height, width):
        logits = [cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR) for plane in logits]
    other, superficial, deep = logits
    # the first largest score wins, as numpy.argmax decides: other, then superficial, then deep
    labels = np.zeros((height, width), np.uint8)
    labels[(superficial > other) & (superficial >= deep)] = SUPERFICIAL
    labels[(deep > other) & (deep > superficial)] = DEEP
    return keep_main_bands(labels) if keep_main else labels


def keep_main_bands(labels: np.ndarray) -> np.ndarray:
    """Per aponeurosis: the largest 8-connected piece, and the pieces beside it (module docstring)."""
    cleaned = labels.copy()
    for label in (SUPERFICIAL, DEEP):
        rows = np.flatnonzero((labels == label).any(axis=1))
        if rows.size == 0:
            continue
        # only the rows that hold the label: an aponeurosis is a thin band, and the pieces
        # (and every statistic used below) are the same in that strip as in the whole image
        top, bottom = int(rows[0]), int(rows[-1]) + 1
        present = labels[top:bottom] == label
        count, pieces, stats, _ = cv2.connectedComponentsWithStats(present.view(np.uint8), connectivity=8)
        if count <= 2:
            continue
        order = 1 + np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable")
        largest_area = stats[order[0], cv2.CC_STAT_AREA]
        kept = [order[0]]
        spans = [(stats[order[0], cv2.CC_STAT_LEFT], stats[order[0], cv2.CC_STAT_LEFT] + stats[order[0], cv2.CC_STAT_WIDTH])]
        for piece in order[1:]:
            if stats[piece, cv2.CC_STAT_AREA] < _PIECE_AREA * largest_area:
                break
            left, width = stats[piece, cv2.CC_STAT_LEFT], stats[piece, cv2.CC_STAT_WIDTH]
            shared = sum(max(0, min(left + width, b) - max(left, a)) for a, b in spans)
            if shared <= _PIECE_SHARED * width:
                kept.append(piece)
                spans.append((left, left + width))
        keep = np.zeros(count, bool)
        keep[kept] = True
        cleaned[top:bottom][present & ~keep[pieces]] = 0
    return cleaned


def frame_labels(crop_labels: np.ndarray, box: Box, frame_shape: tuple[int, int]) -> np.ndarray:
    """The crop's labels placed in a label image of the whole frame (0 outside the crop)."""
    labels = np.zeros(frame_shape, np.uint8)
    x0, y0, x1, y1 = box
    labels[y0:y1, x0:x1] = crop_labels
    return labels


def measure_segmented(prepared: SegmentationInput, logits: np.ndarray, recipe: SegmentationRecipe,
                      mm_per_pixel: float | PixelSize | None = None) -> tuple[FrameMeasurement, np.ndarray]:
    """The model's logits for ``prepared`` -> (the frame's measurements, the crop's labels)."""
    labels = labels_from_logits(logits, prepared.grey.shape, recipe.keep_main_bands)
    return measure(prepared.grey, labels, mm_per_pixel), labels
