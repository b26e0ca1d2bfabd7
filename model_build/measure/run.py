"""``sarco measure run``: muscle measurements of images, DICOMs and videos, one CSV row per frame.

Inputs: stills (PNG, JPEG, BMP, TIFF), DICOM (a single image, or a cine: a recording), videos
(MP4, AVI, MOV, MKV...), or folders of them (searched recursively; a file is taken by its suffix,
``.dcm``/``.dicom`` or none for DICOM). A still or a single-frame DICOM gives one row with an empty
``frame``. A recording gives a row per sampled frame (``frame`` = its index in the file; up to
``frames`` of them, evenly spread from the first to the last) and one row with ``frame`` =
``session``: per quantity, the median over the frames where it was measured and its spread
(interquartile range) in the ``*_spread`` columns (:func:`sarco_core.measure.aggregate_measurements`).

Every frame goes through the device's path: the scan region (the DICOM's ultrasound region when
it has one, else :func:`~sarco_core.imaging.find_scan_region`, which drops a screenshot's scanner
UI), the model, the labels, the measurements. Thickness in mm needs the pixel size, the first
known of (``sarco_core.imaging.first_known``): the DICOM's regions or PixelSpacing, ``--mm-per-pixel``,
``--depth-mm`` over the scan region's height, or the depth ruler's ticks beside the scan with
``--major-tick-mm`` (their spacing in mm). Without any of them ``muscle_thickness_mm`` is empty.

``status`` is ``ok`` or why not: the measurement statuses (``no_scan_region``, ``no_aponeuroses``,
``one_aponeurosis_missing``, ``no_overlap``, ``no_muscle_band``, ``no_fascicle_orientation``), or
``unreadable`` (the file does not decode; ``detail`` says why). A session row's status is ``ok`` or
``no_frames_measured``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model_build.dicom import DicomError, iter_frames, read_header
from model_build.imaging_report import IMAGE_FORMATS, VIDEO_SUFFIXES
from model_build.measure.infer import AponeurosisModel
from sarco_core.errors import SarcoError
from sarco_core.files import atomic_path
from sarco_core.imaging import (Box, PixelSize, ScanRegionNotFound, find_depth_ticks, find_scan_region, first_known,
                                pixel_size_from_depth)
from sarco_core.measure import NO_SCAN_REGION, FrameMeasurement, aggregate_measurements

DICOM_SUFFIXES = {".dcm", ".dicom", ""}
QUANTITIES = ("muscle_thickness_px", "muscle_thickness_mm", "pennation_deg", "echo_intensity")
COLUMNS = ("path", "frame", *QUANTITIES, "status", *(f"{q}_spread" for q in QUANTITIES), "frames_measured",
           "frames_total", "mm_per_pixel", "pixel_size_source", "scan_box", "model", "detail")
UNREADABLE = "unreadable"
SESSION = "session"


class MeasureRunError(SarcoError, ValueError):
    """The inputs of `sarco measure run` cannot be used; the message names them and the fix."""


@dataclass(frozen=True)
class ScaleOptions:
    """Pixel size sources the user gives (each None when not given)."""

    mm_per_pixel: float | None = None
    depth_mm: float | None = None
    major_tick_mm: float | None = None


def collect_inputs(paths: list[Path]) -> list[Path]:
    """The files to measure: files as given, folders searched recursively by suffix."""
    files: list[Path] = []
    known = set(IMAGE_FORMATS) | VIDEO_SUFFIXES | (DICOM_SUFFIXES - {""})
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise MeasureRunError(f"{path}: no such file or folder; fix: check the path")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in known
                           and not p.name.startswith("."))
            if not found:
                raise MeasureRunError(f"{path}: no image, DICOM or video in this folder (suffixes: "
                                      f"{', '.join(sorted(known))}); fix: give files or another folder")
            files += found
        else:
            files.append(path)
    return files


def _row(path: Path, frame: str, measurement: FrameMeasurement | None, model: str, **extra) -> dict:
    row = {column: "" for column in COLUMNS}
    row.update(path=str(path), frame=frame, model=model)
    if measurement is not None:
        row.update({k: "" if v is None else v for k, v in measurement.to_dict().items()})
    row.update({k: "" if v is None else v for k, v in extra.items()})
    return row


def _format_box(box: Box | None) -> str:
    return "" if box is None else " ".join(str(int(v)) for v in box)


class FrameMeasurer:
    """Scan region, pixel size and model for one frame at a time."""

    def __init__(self, model: AponeurosisModel, scale: ScaleOptions) -> None:
        self.model = model
        self.scale = scale
        self.name = model.bundle.model_name

    def pixel_size(self, frame: np.ndarray, box: Box, known: PixelSize | None) -> PixelSize | None:
        ticks = None
        if known is None and self.scale.major_tick_mm and self.scale.mm_per_pixel is None and not self.scale.depth_mm:
            found = find_depth_ticks(frame, box)
            ticks = None if found is None else found.pixel_size(self.scale.major_tick_mm)
        return first_known(
            known,
            PixelSize.isotropic(self.scale.mm_per_pixel, "listing") if self.scale.mm_per_pixel else None,
            pixel_size_from_depth(self.scale.depth_mm, box) if self.scale.depth_mm else None,
            ticks,
        )

    def __call__(self, path: Path, frame_name: str, frame: np.ndarray, box: Box | None,
                 known: PixelSize | None) -> tuple[dict, FrameMeasurement]:
        if box is None:
            try:
                box = find_scan_region(frame)
            except ScanRegionNotFound as error:
                measurement = FrameMeasurement.not_measured(NO_SCAN_REGION)
                return _row(path, frame_name, measurement, self.name, detail=str(error)), measurement
        size = self.pixel_size(frame, box, known)
        result = self.model.measure(frame, size, box)
        extra = {"scan_box": _format_box(result.prepared.box if result.prepared else box)}
        if size is not None:
            extra.update(mm_per_pixel=f"{size.mm_per_pixel_x:.6g} {size.mm_per_pixel_y:.6g}",
                         pixel_size_source=size.source)
        return _row(path, frame_name, result.measurement, self.name, **extra), result.measurement


def _session_row(path: Path, measurements: list[FrameMeasurement], model: str) -> dict:
    session = aggregate_measurements(measurements)
    row = _row(path, SESSION, None, model, status=session.status, frames_measured=session.frames_measured,
               frames_total=session.frames_total)
    for quantity in QUANTITIES:
        value, spread = getattr(session, quantity), session.spread.get(quantity)
        row[quantity] = "" if value is None else value
        row[f"{quantity}_spread"] = "" if spread is None else spread
    return row


def sampled(count: int, wanted: int) -> list[int]:
    """Up to ``wanted`` frame indices spread evenly from the first to the last of ``count``."""
    if count <= 0:
        return []
    return sorted(set(np.linspace(0, count - 1, min(count, wanted)).round().astype(int).tolist()))


def measure_file(path: Path, measurer: FrameMeasurer, frames: int) -> list[dict]:
    """The rows of one file (module docstring)."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_FORMATS:
        pixels = read_image(path)
        if pixels is None:
            return [_row(path, "", None, measurer.name, status=UNREADABLE,
                         detail=f"OpenCV cannot read it as {suffix.lstrip('.').upper()}; convert it to PNG")]
        return [measurer(path, "", pixels, None, None)[0]]
    if suffix in VIDEO_SUFFIXES:
        return _video_rows(path, measurer, frames)
    return _dicom_rows(path, measurer, frames)


def read_image(path: Path) -> np.ndarray | None:
    """A still's pixels as decoded (any depth, grey or BGR; one channel squeezed), as every
    measurement of a still starts; None when OpenCV cannot read it."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is not None and pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    return pixels


def _video_rows(path: Path, measurer: FrameMeasurer, frames: int) -> list[dict]:
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return [_row(path, "", None, measurer.name, status=UNREADABLE,
                         detail="cannot be opened as a video; export it again as MP4 or AVI")]
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        wanted = set(sampled(count, frames)) if count > 0 else None
        rows, measurements, index = [], [], 0
        while capture.grab():
            if wanted is None or index in wanted:
                ok, frame = capture.retrieve()
                if ok:
                    row, measurement = measurer(path, str(index), frame, None, None)
                    rows.append(row)
                    measurements.append(measurement)
            index += 1
            if wanted is not None and index > max(wanted, default=-1):
                break
            if wanted is None and len(rows) >= frames:
                break
    finally:
        capture.release()
    if not rows:
        return [_row(path, "", None, measurer.name, status=UNREADABLE,
                     detail="the video has no decodable frame; export it again")]
    return rows + [_session_row(path, measurements, measurer.name)]


def _dicom_rows(path: Path, measurer: FrameMeasurer, frames: int) -> list[dict]:
    try:
        _, header = read_header(path)
        region = header.scan_region
        box = None if region is None else region.box
        wanted = set(sampled(header.frames, frames))
        rows, measurements = [], []
        for index, frame in enumerate(_dicom_frames(path)):
            if index not in wanted:
                continue
            bgr = frame[..., ::-1].copy() if frame.ndim == 3 else frame  # pydicom gives RGB
            row, measurement = measurer(path, str(index) if header.frames > 1 else "", bgr, box, header.pixel_size)
            rows.append(row)
            measurements.append(measurement)
            if index >= max(wanted):
                break
    except DicomError as error:
        return [_row(path, "", None, measurer.name, status=UNREADABLE, detail=str(error).removeprefix(f"{path}: "))]
    if header.frames > 1:
        rows.append(_session_row(path, measurements, measurer.name))
    return rows


def _dicom_frames(path: Path) -> Iterator[np.ndarray]:
    yield from iter_frames(path)


def run_measurements(model: AponeurosisModel, paths: list[Path], out: Path, scale: ScaleOptions, frames: int = 20,
                     progress: Callable[[int, int, Path], None] | None = None) -> list[dict]:
    """Measure every input and write the CSV atomically; returns the rows."""
    files = collect_inputs(paths)
    measurer = FrameMeasurer(model, scale)
    rows: list[dict] = []
    for done, path in enumerate(files, start=1):
        rows += measure_file(path, measurer, frames)
        if progress is not None:
            progress(done, len(files), path)
    write_csv(out, rows)
    return rows


def write_csv(out: Path, rows: list[dict]) -> None:
    with atomic_path(out) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
