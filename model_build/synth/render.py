"""Pixels of the synthetic cohort: B-mode muscle stills, scanner screenshots, US DICOM, videos.

This is the import point; the work is split by concern:

- :mod:`~model_build.synth.tissue`: layer geometry and echo maps from a :class:`MuscleLatent`;
- :mod:`~model_build.synth.bmode`: speckle, PSF, attenuation, log compression;
- :mod:`~model_build.synth.profiles`: the three centers' scanners (:data:`PROFILES`);
- :mod:`~model_build.synth.screen`: the burned-in user interface around the scan;
- :mod:`~model_build.synth.dicom`, :mod:`~model_build.synth.video`: file formats.

docs/synthetic-images.md explains the model and compares it with real images.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model_build.synth.bmode import choose_depth_mm, echo_fields, grey_image
from model_build.synth.dicom import write_us_dicom
from model_build.synth.profiles import PROFILES, SyntheticScanner
from model_build.synth.screen import RenderedImage, max_scan_width, still_screen
from model_build.synth.tissue import MuscleLatent, tissue_maps
from model_build.synth.video import VideoInfo, write_scan_video
from sarco_core.files import atomic_write

__all__ = [
    "PROFILES",
    "MuscleLatent",
    "RenderedImage",
    "SyntheticScanner",
    "VideoInfo",
    "bmode_and_labels",
    "bmode_image",
    "encode_still",
    "exported_pixels",
    "render_still",
    "render_still_with_labels",
    "write_scan_video",
    "write_still",
    "write_us_dicom",
]

_STILL_SUFFIXES = (".png", ".jpg", ".jpeg")


def bmode_image(
    latent: MuscleLatent,
    profile: SyntheticScanner,
    scan_shape: tuple[int, int],
    depth_mm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Grey B-mode image (uint8, ``scan_shape``) of ``latent`` at ``depth_mm``, computed at the
    profile's render scale and upscaled as its software does."""
    return bmode_and_labels(latent, profile, scan_shape, depth_mm, rng)[0]


def bmode_and_labels(
    latent: MuscleLatent,
    profile: SyntheticScanner,
    scan_shape: tuple[int, int],
    depth_mm: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bmode_image` and its exact aponeurosis labels (uint8, ``scan_shape``: 1 superficial,
    2 deep, 0 other; the measurement label convention), from the same random draws."""
    height, width = scan_shape
    inner_height = max(int(round(height * profile.render_scale)), 16)
    inner_width = max(int(round(width * inner_height / height)), 16)
    pixel_mm = depth_mm / inner_height
    maps = tissue_maps(latent, (inner_height, inner_width), pixel_mm, rng)
    grey = grey_image(echo_fields(maps, profile, pixel_mm, rng)[0], profile)
    labels = maps.labels
    if (inner_height, inner_width) != (height, width):
        grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_LINEAR)
        labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    return grey, labels


def render_still(latent: MuscleLatent, profile: SyntheticScanner, rng: np.random.Generator) -> RenderedImage:
    """One exported still of ``latent`` on ``profile``'s scanner (UI frame included).

    The pixels are the screen before any file compression: :func:`write_still` adds the JPEG
    artefacts of a JPEG-exporting scanner (pass ``jpeg_quality=profile.jpeg_quality``).
    """
    return render_still_with_labels(latent, profile, rng)[0]


def render_still_with_labels(latent: MuscleLatent, profile: SyntheticScanner,
                             rng: np.random.Generator) -> tuple[RenderedImage, np.ndarray]:
    """:func:`render_still` and the aponeurosis labels of the whole screen (0 outside the scan)."""
    depth_mm = choose_depth_mm(latent.deep_aponeurosis_bottom_mm, profile, rng)
    height = profile.still_scan_height_px
    mm_per_pixel = depth_mm / height
    width = min(int(round(profile.probe_width_mm / mm_per_pixel)), max_scan_width(profile, still=True))
    screen = still_screen(profile, (height, width), depth_mm, rng)
    grey, scan_labels = bmode_and_labels(latent, profile, (height, width), depth_mm, rng)
    pixels = screen.show(grey)
    labels = np.zeros(pixels.shape[:2], np.uint8)
    x0, y0, x1, y1 = screen.scan_box
    labels[y0:y1, x0:x1] = scan_labels
    image = RenderedImage(pixels=pixels, scan_box=screen.scan_box, mm_per_pixel=mm_per_pixel, depth_mm=depth_mm)
    return image, labels


def encode_still(image: RenderedImage, suffix: str, jpeg_quality: int = 90) -> bytes:
    """The file bytes of ``image`` as PNG (lossless) or JPEG at ``jpeg_quality``."""
    suffix = suffix.lower()
    if suffix not in _STILL_SUFFIXES:
        raise ValueError(f"unsupported image suffix {suffix!r}; use .png, .jpg or .jpeg")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality {jpeg_quality} is outside 1-100")
    options = [cv2.IMWRITE_PNG_COMPRESSION, 3] if suffix == ".png" else [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    ok, encoded = cv2.imencode(suffix, image.pixels, options)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.pixels.shape} {image.pixels.dtype} image as {suffix}")
    return encoded.tobytes()


def exported_pixels(image: RenderedImage, profile: SyntheticScanner) -> np.ndarray:
    """What reading back ``profile``'s own still file gives (its format, its JPEG quality)."""
    data = encode_still(image, profile.still_suffix, profile.jpeg_quality)
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)


def write_still(path: Path, image: RenderedImage, jpeg_quality: int = 90) -> None:
    """Write ``image`` as PNG (lossless) or JPEG at ``jpeg_quality`` (by ``path``'s suffix), atomically.

    A scanner's own JPEG export quality is ``profile.jpeg_quality``.
    """
    path = Path(path)
    try:
        data = encode_still(image, path.suffix, jpeg_quality)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    atomic_write(path, data)
