"""Pixel arrays in, pixel arrays out: grey conversion and cropping.

Frames arrive as OpenCV gives them (2-D grey, or HxWx3 BGR, sometimes HxWx4 with alpha) and
images from the workstation as 8- or 16-bit arrays. Every later step (scan-region detection,
resampling, the model) wants one thing: a 2-D grey array. Converting in one place keeps
training and the device identical.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` in pixels of the full image; ``x1`` and ``y1`` are exclusive."""

_CHANNEL_ORDERS = ("bgr", "rgb")


def check_pixels(pixels: np.ndarray) -> np.ndarray:
    """The array itself when it is an image we can handle, else a ValueError saying why."""
    if not isinstance(pixels, np.ndarray):
        raise ValueError(f"expected a numpy array of pixels, got {type(pixels).__name__}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ValueError(f"expected a 2-D grey or HxWx3 / HxWx4 colour image, got shape {pixels.shape}")
    if pixels.shape[0] < 8 or pixels.shape[1] < 8:
        raise ValueError(f"image of {pixels.shape[1]}x{pixels.shape[0]} pixels is too small to hold a scan")
    if pixels.dtype not in (np.uint8, np.uint16) and not np.issubdtype(pixels.dtype, np.floating):
        raise ValueError(f"unsupported pixel type {pixels.dtype}; use uint8, uint16 or float in [0, 1]")
    return pixels


def to_grey_u8(pixels: np.ndarray, channel_order: str = "bgr") -> np.ndarray:
    """2-D uint8 grey image (the working form of detection: OpenCV's fast paths are 8-bit).

    16-bit input is scaled by 1/257 (full 16-bit range) and float input is read as [0, 1];
    DICOM with fewer stored bits is scaled by the reader before it gets here.
    """
    pixels = check_pixels(pixels)
    if channel_order not in _CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {_CHANNEL_ORDERS}, got {channel_order!r}")
    if pixels.dtype == np.uint16:
        pixels = (pixels // 257).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    if pixels.ndim == 2:
        return pixels
    colour = pixels[..., :3]
    code = cv2.COLOR_BGR2GRAY if channel_order == "bgr" else cv2.COLOR_RGB2GRAY
    return cv2.cvtColor(np.ascontiguousarray(colour), code)


def to_grey(pixels: np.ndarray, channel_order: str = "bgr") -> np.ndarray:
    """2-D float32 grey image in [0, 1] (the form the model is fed)."""
    pixels = check_pixels(pixels)
    if channel_order not in _CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {_CHANNEL_ORDERS}, got {channel_order!r}")
    full_scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(pixels.dtype, 1.0)
    if pixels.ndim == 3:  # one channel first: a third of the data to convert to float
        code = cv2.COLOR_BGR2GRAY if channel_order == "bgr" else cv2.COLOR_RGB2GRAY
        source = pixels[..., :3] if full_scale > 1.0 else pixels[..., :3].astype(np.float32)
        pixels = cv2.cvtColor(np.ascontiguousarray(source), code)
    grey = pixels.astype(np.float32) * np.float32(1.0 / full_scale)
    return grey if full_scale > 1.0 else np.clip(grey, 0.0, 1.0)


def colour_marks(pixels: np.ndarray) -> np.ndarray | None:
    """Boolean mask of strongly coloured pixels (UI graphics, markers, calipers), None for grey images.

    B-mode is grey or lightly tinted (some scanners add a blue or sepia map with saturation
    around 0.2); annotations are drawn in saturated yellow, green, red or cyan. The test is
    channel-order free.
    """
    pixels = check_pixels(pixels)
    if pixels.ndim == 2:
        return None
    first, second, third = cv2.split(to_u8_colour(pixels))
    high = cv2.max(cv2.max(first, second), third)
    chroma = cv2.subtract(high, cv2.min(cv2.min(first, second), third))
    # saturation = chroma / high above 0.45, and a chroma of more than 60 grey levels
    saturated = cv2.compare(chroma, cv2.multiply(high, 0.45), cv2.CMP_GT)
    return cv2.bitwise_and(saturated, cv2.compare(chroma, 60, cv2.CMP_GT)) > 0


def to_u8_colour(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 view of a colour image (alpha dropped)."""
    colour = pixels[..., :3]
    if colour.dtype == np.uint16:
        return (colour // 257).astype(np.uint8)
    if colour.dtype != np.uint8:
        return np.clip(np.rint(colour * 255.0), 0, 255).astype(np.uint8)
    return colour


def crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    """The part of the image inside ``box`` (a view, no copy)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    height, width = pixels.shape[:2]
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {box} does not lie inside the {width}x{height} image")
    return pixels[y0:y1, x0:x1]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
