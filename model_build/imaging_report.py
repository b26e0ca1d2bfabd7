"""What `sarco validate` reports about one image or video: format, size, frames, whether the scan
region was found, whether the physical pixel size is known (and from where), and whether there
is burned-in text.

Two steps, so that a caller that has already decoded a file does not decode it again:
:func:`read_pixels` decodes what a description looks at (a still's image, a video's probe frames,
a DICOM's first frame and header) into :class:`MediaPixels`, and :func:`describe_pixels` turns
that into a plain dict (the validator makes findings of it, and ``--json`` prints it as it is).
:func:`describe_media` does both for a path. `sarco validate` decodes every file in full to
check it, so it builds :class:`MediaPixels` from that pass (:func:`decode_still`,
:func:`probe_indices`) and only calls :func:`describe_pixels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model_build.dicom import DicomError, DicomHeader, read_dicom
from sarco_core.errors import SarcoError
from sarco_core.imaging import (Box, PixelSize, ScannerProfile, ScanRegionNotFound, find_depth_ticks,
                              find_scan_region, first_known, has_text, pixel_size_from_depth)

IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp", ".tif": "tiff", ".tiff": "tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv"}
VIDEO_PROBE_FRAMES = 5  # a video's region is sought on up to this many frames spread over it


class MediaError(SarcoError, ValueError):
    """A file that cannot be read as an image, video or DICOM (message names it, with a fix)."""


@dataclass(frozen=True)
class MediaPixels:
    """The decoded pixels a description looks at, and what the file says about itself.

    ``frames``: a still's image; a video's probe frames, in file order (see
    :func:`probe_indices`); a DICOM's first frame. ``frame_count``: frames in the file.
    ``dicom``: the DICOM header (scan region, pixel size, BurnedInAnnotation), None otherwise.
    """

    format: str  # png, jpeg, bmp, tiff, dicom, video
    frames: Sequence[np.ndarray]
    frame_count: int = 1
    dicom: DicomHeader | None = None

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError(f"MediaPixels of a {self.format} needs at least one frame")


def describe_media(path: Path, mm_per_pixel: float | None = None, depth_mm: float | None = None,
                   scanner: ScannerProfile | None = None) -> dict:
    """Summary of one media file: :func:`describe_pixels` of :func:`read_pixels`, with its ``path``."""
    return {"path": str(path), **describe_pixels(read_pixels(Path(path)), mm_per_pixel, depth_mm, scanner)}


def describe_pixels(pixels: MediaPixels, mm_per_pixel: float | None = None, depth_mm: float | None = None,
                    scanner: ScannerProfile | None = None) -> dict:
    """Summary of one decoded media file.

    ``mm_per_pixel`` and ``depth_mm`` are the listing's columns for this file (None when
    empty), ``scanner`` the edge config's profile for its scanner, if known. Keys:

    ``format`` (png, jpeg, bmp, tiff, dicom, video), ``width``, ``height``, ``frames``,
    ``scan_box`` ([x0, y0, x1, y1], x1/y1 exclusive, or None) and ``scan_box_source``
    (``dicom_region``, ``detected`` or None), ``mm_per_pixel`` ([x, y] or None) and
    ``pixel_size_source`` (``dicom``, ``listing``, ``depth``, ``scanner``, ``depth_scale`` or
    None), ``burned_in_text`` (bool: text found in the pixels, or DICOM BurnedInAnnotation
    YES), ``burned_in_annotation_flag`` (the DICOM flag: True, False or None).

    Ruler and text are read on the frame the scan box was found on: a recording often starts
    on a blank frame, and what it shows later is what training and de-identification meet.
    """
    header = pixels.dicom
    region = header.scan_region if header is not None else None
    if region is not None:
        box, box_source, probe = region.box, "dicom_region", pixels.frames[0]
    else:
        box, probe = _detect(pixels.frames)
        box_source = None if box is None else "detected"
    height, width = pixels.frames[0].shape[:2]
    pixel_size = first_known(
        header.pixel_size if header is not None else None,
        PixelSize.isotropic(mm_per_pixel, "listing") if mm_per_pixel else None,
        pixel_size_from_depth(depth_mm, box) if depth_mm and box is not None else None,
        scanner.pixel_size() if scanner is not None else None,
        _from_ticks(probe, box, scanner),
    )
    flag = header.burned_in_annotation if header is not None else None
    return {
        "format": pixels.format, "width": int(width), "height": int(height), "frames": int(pixels.frame_count),
        "scan_box": list(box) if box is not None else None, "scan_box_source": box_source,
        "mm_per_pixel": None if pixel_size is None else [pixel_size.mm_per_pixel_x, pixel_size.mm_per_pixel_y],
        "pixel_size_source": None if pixel_size is None else pixel_size.source,
        "burned_in_text": bool(flag or has_text(probe, box)), "burned_in_annotation_flag": flag,
    }


def read_pixels(path: Path) -> MediaPixels:
    """Decode what :func:`describe_pixels` looks at; MediaError (naming the file, with a fix) if
    it cannot be decoded. The format follows the suffix: images, videos, anything else DICOM."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_FORMATS:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise MediaError(f"{path}: cannot be read ({error.strerror}); check the path and permissions") from error
        return decode_still(path, data)
    if suffix in VIDEO_SUFFIXES:
        return _probe_video(path)
    try:
        image = read_dicom(path, max_frames=1)
    except DicomError as error:
        raise MediaError(str(error)) from error
    return MediaPixels("dicom", tuple(image.frames), image.header.frames, image.header)


def decode_still(path: Path, data: bytes) -> MediaPixels:
    """A still image from its bytes (already read by the caller); ``path`` names it and its suffix
    gives the format."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise MediaError(f"{path}: OpenCV cannot read it as an image (corrupt, or not really "
                         f"{path.suffix.lstrip('.').upper()}); export it again or convert it to PNG")
    return MediaPixels(IMAGE_FORMATS[path.suffix.lower()], (pixels,))


def probe_indices(frame_count: int) -> frozenset[int]:
    """Which frames of a video of ``frame_count`` frames (as the container says; 0 when unknown)
    are probed: up to :data:`VIDEO_PROBE_FRAMES`, spread from the first to the last."""
    return frozenset(np.linspace(0, max(frame_count - 1, 0), VIDEO_PROBE_FRAMES).astype(int).tolist())


def _probe_video(path: Path) -> MediaPixels:
    """Decode a video up to its last probe frame (not to its end: that is the integrity check's job)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise MediaError(f"{path}: cannot be opened as a video; export it again as MP4 or AVI")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        wanted = probe_indices(count)
        frames, index = [], 0
        while len(frames) < len(wanted) and capture.grab():
            if index in wanted:
                frames.append(capture.retrieve()[1])
            index += 1
    finally:
        capture.release()
    if not frames:
        raise MediaError(f"{path}: the video has no decodable frame; export it again")
    return MediaPixels("video", tuple(frames), count if count > 0 else index)


def _detect(frames: Sequence[np.ndarray]) -> tuple[Box | None, np.ndarray]:
    """The scan box and the frame it was found on (the first frame when none has one)."""
    for frame in frames:  # a blank first frame is common at the start of a recording
        try:
            return find_scan_region(frame), frame
        except ScanRegionNotFound:
            continue
    return None, frames[0]


def _from_ticks(frame: np.ndarray, box: Box | None, scanner: ScannerProfile | None) -> PixelSize | None:
    if box is None or scanner is None or scanner.major_tick_mm is None:
        return None
    ticks = find_depth_ticks(frame, box)
    return None if ticks is None else ticks.pixel_size(scanner.major_tick_mm)
