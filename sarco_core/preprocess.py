"""The one image preprocessing, shared by training (workstation) and inference (device).

Frame or still -> grey float in [0, 1] -> crop to the scan region (drops the scanner's user
interface) -> fit into a square of ``size`` pixels -> normalise. Two ways to fit:

- ``letterbox`` (default): resize keeping the aspect ratio, pad the rest;
- physical (``field_of_view_mm`` set): resample to ``field_of_view_mm / size`` mm per pixel
  first, so a muscle 20 mm thick spans the same number of pixels whatever the depth setting or
  scanner, then crop or pad to the square (anchored at the skin line, the top).

The parameters are a small dataclass written into the model bundle as JSON; the device builds
its :class:`Preprocessor` from that file, so it computes exactly what the model was trained on.
numpy and OpenCV only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from sarco_core.errors import SarcoError
from sarco_core.imaging import (PixelSize, ScanRegionNotFound, crop, find_scan_region, pixel_size_from_depth,
                              resample_to_mm, to_grey)

PARAMS_VERSION = 1


class PreprocessError(SarcoError, ValueError):
    """A frame cannot be preprocessed; the message says why and what to do."""


@dataclass(frozen=True)
class PreprocessParams:
    """Everything that decides the model input; saved as ``preprocessing.json`` in the bundle."""

    size: int = 128
    crop_to_scan: bool = True
    field_of_view_mm: float | None = None   # None: letterbox; else physical mm per pixel
    mean: float = 127.0 / 255.0             # EfficientNet-Lite ImageNet input scaling
    std: float = 128.0 / 255.0
    pad_value: float = 0.0                  # black, like the background around a scan
    version: int = PARAMS_VERSION

    def __post_init__(self) -> None:
        if self.size < 16:
            raise PreprocessError(f"size {self.size} is too small; fix: use 64 px or more")
        if self.std <= 0:
            raise PreprocessError(f"std {self.std} must be positive")
        if self.field_of_view_mm is not None and self.field_of_view_mm <= 0:
            raise PreprocessError(f"field_of_view_mm {self.field_of_view_mm} must be positive")

    @property
    def mm_per_pixel(self) -> float | None:
        return None if self.field_of_view_mm is None else self.field_of_view_mm / self.size

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreprocessParams:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise PreprocessError(f"preprocessing parameters {unknown} are unknown to this version "
                                  "of sarco; fix: update the device software")
        if raw.get("version", PARAMS_VERSION) != PARAMS_VERSION:
            raise PreprocessError(f"preprocessing version {raw['version']} is not supported; "
                                  f"fix: use a bundle written for version {PARAMS_VERSION}")
        return cls(**raw)


class Preprocessor:
    """``prepare`` gives the geometry in [0, 1] (what training augments); ``__call__`` adds the
    normalisation and the channel axis (what the network sees)."""

    def __init__(self, params: PreprocessParams | None = None) -> None:
        self.params = params or PreprocessParams()

    def prepare(self, pixels: np.ndarray, mm_per_pixel: float | PixelSize | None = None,
                depth_mm: float | None = None) -> np.ndarray:
        """``(size, size)`` float32 in [0, 1] from a decoded frame (grey or BGR, any depth).

        ``mm_per_pixel`` (or else ``depth_mm``, the imaging depth spanning the scan area) is
        needed in physical mode only.
        """
        try:
            grey = to_grey(pixels)
            box = (0, 0, grey.shape[1], grey.shape[0])
            if self.params.crop_to_scan:
                box = find_scan_region(pixels)
                grey = crop(grey, box)
        except ScanRegionNotFound as error:
            raise PreprocessError(f"no ultrasound scan area found ({error}); fix: check that the "
                                  "image is a B-mode scan, or train with --no-crop-to-scan") from None
        except ValueError as error:  # an array that is not an image (shape, dtype, size)
            raise PreprocessError(str(error)) from None
        if self.params.field_of_view_mm is None:
            return self._letterbox(grey)
        if mm_per_pixel is None and depth_mm is not None:
            mm_per_pixel = pixel_size_from_depth(depth_mm, box)
        if mm_per_pixel is None:
            raise PreprocessError(
                "this model resamples to a physical pixel size, but the image's mm per pixel is "
                "unknown; fix: give mm_per_pixel or depth_mm (images.csv columns, or the scanner's "
                "depth setting on the device)")
        return self._fit_physical(resample_to_mm(grey, mm_per_pixel, self.params.mm_per_pixel))

    def normalise(self, prepared: np.ndarray) -> np.ndarray:
        return ((prepared - self.params.mean) / self.params.std).astype(np.float32)

    def __call__(self, pixels: np.ndarray, mm_per_pixel: float | PixelSize | None = None,
                 depth_mm: float | None = None) -> np.ndarray:
        """``(1, size, size)`` float32: the network's input for one frame."""
        return self.normalise(self.prepare(pixels, mm_per_pixel, depth_mm))[np.newaxis]

    def _letterbox(self, grey: np.ndarray) -> np.ndarray:
        size = self.params.size
        height, width = grey.shape
        scale = size / max(height, width)
        new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
        shrinking = scale < 1.0
        resized = cv2.resize(grey, (new_width, new_height),
                             interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        canvas = np.full((size, size), self.params.pad_value, dtype=np.float32)
        top, left = (size - new_height) // 2, (size - new_width) // 2
        canvas[top:top + new_height, left:left + new_width] = resized
        return canvas

    def _fit_physical(self, grey: np.ndarray) -> np.ndarray:
        """Keep the top (skin) and the horizontal centre; crop what is deeper or wider."""
        size = self.params.size
        height, width = grey.shape
        canvas = np.full((size, size), self.params.pad_value, dtype=np.float32)
        keep_height, keep_width = min(height, size), min(width, size)
        source_left = (width - keep_width) // 2
        target_left = (size - keep_width) // 2
        canvas[:keep_height, target_left:target_left + keep_width] = \
            grey[:keep_height, source_left:source_left + keep_width]
        return canvas


