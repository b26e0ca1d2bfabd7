"""What `sarco validate` reports about one image or video: format, size, frames, whether the scan
region was found, whether the physical pixel size is known (and from where), and whether there
is burned-in text.

One function, :func:`describe_media`, returns a plain dict so the validator can turn each
entry into findings (and ``--json`` can print it as it is).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_app.imaging import (PixelSize, ScannerProfile, ScanRegionNotFound, find_depth_ticks, find_scan_region,
                              find_text, first_known, pixel_size_from_depth)
from model_build.dicom import DicomError, iter_frames, read_header

IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp", ".tif": "tiff", ".tiff": "tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv"}
VIDEO_PROBE_FRAMES = 5  # a video's region is sought on up to this many frames spread over it


class MediaError(ValueError):
    """A file that cannot be read as an image, video or DICOM (message names it, with a fix)."""


def describe_media(path: Path, mm_per_pixel: float | None = None, depth_mm: float | None = None,
                   scanner: ScannerProfile | None = None) -> dict:
    """Summary of one media file.

    ``mm_per_pixel`` and ``depth_mm`` are the listing's columns for this file (None when
    empty), ``scanner`` the edge config's profile for its scanner, if known. Keys:

    ``format`` (png, jpeg, bmp, tiff, dicom, video), ``width``, ``height``, ``frames``,
    ``scan_box`` ([x0, y0, x1, y1], x1/y1 exclusive, or None) and ``scan_box_source``
    (``dicom_region``, ``detected`` or None), ``mm_per_pixel`` ([x, y] or None) and
    ``pixel_size_source`` (``dicom``, ``listing``, ``depth``, ``scanner``, ``depth_scale`` or
    None), ``burned_in_text`` (bool: text found in the pixels, or DICOM BurnedInAnnotation
    YES), ``burned_in_annotation_flag`` (the DICOM flag: True, False or None).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    flag = None
    if suffix in IMAGE_FORMATS:
        kind, frame, count, dicom_box, header_size = IMAGE_FORMATS[suffix], _read_image(path), 1, None, None
        frames = [frame]
    elif suffix in VIDEO_SUFFIXES:
        kind, dicom_box, header_size = "video", None, None
        frames, count = _probe_video(path)
    else:
        kind = "dicom"
        try:
            _, header = read_header(path)
            frames = [next(iter_frames(path))]
        except DicomError as error:
            raise MediaError(str(error)) from error
        count, flag, header_size = header.frames, header.burned_in_annotation, header.pixel_size
        dicom_box = header.scan_region.box if header.scan_region is not None else None
    height, width = frames[0].shape[:2]
    box, box_source = (dicom_box, "dicom_region") if dicom_box is not None else (_detect(frames), "detected")
    if box is None:
        box_source = None
    probe = frames[0]
    pixel_size = first_known(
        header_size,
        PixelSize.isotropic(mm_per_pixel, "listing") if mm_per_pixel else None,
        pixel_size_from_depth(depth_mm, box) if depth_mm and box is not None else None,
        scanner.pixel_size() if scanner is not None else None,
        _from_ticks(probe, box, scanner),
    )
    text_found = find_text(probe, box).found
    return {
        "path": str(path), "format": kind, "width": int(width), "height": int(height), "frames": int(count),
        "scan_box": list(box) if box is not None else None, "scan_box_source": box_source,
        "mm_per_pixel": None if pixel_size is None else [pixel_size.mm_per_pixel_x, pixel_size.mm_per_pixel_y],
        "pixel_size_source": None if pixel_size is None else pixel_size.source,
        "burned_in_text": bool(text_found or flag), "burned_in_annotation_flag": flag,
    }


def _read_image(path: Path) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise MediaError(f"{path}: OpenCV cannot read it as an image (corrupt, or not really "
                         f"{path.suffix.lstrip('.').upper()}); export it again or convert it to PNG")
    return pixels


def _probe_video(path: Path) -> tuple[list[np.ndarray], int]:
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise MediaError(f"{path}: cannot be opened as a video; export it again as MP4 or AVI")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        wanted = set(np.linspace(0, max(count - 1, 0), VIDEO_PROBE_FRAMES).astype(int).tolist())
        frames, index = [], 0
        while len(frames) < len(wanted) and capture.grab():
            if index in wanted:
                frames.append(capture.retrieve()[1])
            index += 1
    finally:
        capture.release()
    if not frames:
        raise MediaError(f"{path}: the video has no decodable frame; export it again")
    return frames, count if count > 0 else index


def _detect(frames: list[np.ndarray]) -> tuple[int, int, int, int] | None:
    for frame in frames:  # a blank first frame is common at the start of a recording
        try:
            return find_scan_region(frame)
        except ScanRegionNotFound:
            continue
    return None


def _from_ticks(frame: np.ndarray, box, scanner: ScannerProfile | None) -> PixelSize | None:
    if box is None or scanner is None or scanner.major_tick_mm is None:
        return None
    ticks = find_depth_ticks(frame, box)
    return None if ticks is None else ticks.pixel_size(scanner.major_tick_mm)
