"""Read ultrasound DICOM into display-ready numpy frames plus what the header says about them.

Hospital archives hold ultrasound in every photometric form (MONOCHROME1/2, RGB, YBR_FULL,
YBR_FULL_422, PALETTE COLOR), natively or compressed (JPEG, JPEG 2000, JPEG-LS, RLE; pydicom
decodes them with pylibjpeg), as single images or multi-frame cine. Everything downstream wants
8-bit frames as a screen would show them, so this module does the conversion once:

- MONOCHROME2 as is, MONOCHROME1 inverted; a modality LUT, then a VOI window or the stored
  bit depth, bring more than 8 bits down to 8;
- RGB and YBR as RGB (pydicom converts YBR with ``convert_color_space``); PALETTE COLOR through
  its lookup table (``apply_color_lut``).

Frames come back as ``(frames, rows, columns)`` grey or ``(frames, rows, columns, 3)`` RGB
uint8. The physical pixel size comes from the largest 2-D tissue region of
SequenceOfUltrasoundRegions (PhysicalDeltaX/Y in cm), else from PixelSpacing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, iter_pixels

from sarco_core.errors import SarcoError
from sarco_core.imaging.pixels import Box
from sarco_core.imaging.scale import PixelSize

# SequenceOfUltrasoundRegions codes (DICOM PS3.3 C.8.5.5.1)
SPATIAL_FORMAT_2D = 1
DATA_TYPE_TISSUE = 1
UNITS_CM = 3
_GREY = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR")


class DicomError(SarcoError, ValueError):
    """A DICOM file that cannot be used, with the file named and a fix hint in the message."""


@dataclass(frozen=True)
class UltrasoundRegion:
    """One item of SequenceOfUltrasoundRegions, box in pixel coordinates (x1, y1 exclusive)."""

    box: Box
    spatial_format: int
    data_type: int
    mm_per_pixel_x: float | None
    mm_per_pixel_y: float | None

    @property
    def is_2d_tissue(self) -> bool:
        return self.spatial_format == SPATIAL_FORMAT_2D and self.data_type == DATA_TYPE_TISSUE

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


@dataclass(frozen=True)
class DicomHeader:
    """What the header says about an image, read without decoding any pixels."""

    path: Path
    photometric: str
    rows: int
    columns: int
    frames: int
    transfer_syntax: str
    regions: tuple[UltrasoundRegion, ...]
    pixel_size: PixelSize | None
    burned_in_annotation: bool | None
    frame_time_ms: float | None

    @property
    def scan_region(self) -> UltrasoundRegion | None:
        """The largest 2-D tissue region: the B-mode (Doppler and spectral strips are not)."""
        tissue = [region for region in self.regions if region.is_2d_tissue]
        return max(tissue, key=lambda region: region.area, default=None)

    @property
    def is_colour(self) -> bool:
        return self.photometric != "MONOCHROME1" and self.photometric != "MONOCHROME2"


@dataclass(frozen=True)
class DicomImage:
    """Decoded frames (uint8 grey, or RGB in that channel order; first axis = frame) and the
    header they came with."""

    header: DicomHeader
    frames: np.ndarray


def read_header(path: Path) -> tuple[Dataset, DicomHeader]:
    """Parse a DICOM file (pixel data left undecoded) and summarise its image header."""
    path = Path(path)
    try:
        dataset = pydicom.dcmread(path)
    except InvalidDicomError as error:
        raise DicomError(f"{path}: not a DICOM file ({error}); export it from the scanner or PACS "
                         "as DICOM Part 10, or convert it to PNG") from error
    except OSError as error:
        raise DicomError(f"{path}: cannot be read ({error.strerror}); check the path and permissions") from error
    except Exception as error:  # a damaged header can fail anywhere in the parser
        raise DicomError(f"{path}: cannot be parsed as DICOM ({type(error).__name__}: {error}); "
                         "copy it again from its source") from error
    if "PixelData" not in dataset:
        raise DicomError(f"{path}: has no pixel data (a report or presentation state?); "
                         "use an image object instead")
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
    if photometric not in _GREY + _COLOUR:
        raise DicomError(f"{path}: photometric interpretation {photometric!r} is not supported "
                         f"(supported: {', '.join(_GREY + _COLOUR)}); export the image as RGB or grey")
    regions = tuple(_regions(dataset))
    header = DicomHeader(
        path=path, photometric=photometric, rows=int(dataset.Rows), columns=int(dataset.Columns),
        frames=int(dataset.get("NumberOfFrames", 1) or 1),
        transfer_syntax=str(dataset.file_meta.get("TransferSyntaxUID", "")),
        regions=regions, pixel_size=_pixel_size(dataset, regions),
        burned_in_annotation=_yes_no(dataset.get("BurnedInAnnotation")),
        frame_time_ms=_frame_time(dataset),
    )
    return dataset, header


def read_dicom(path: Path, max_frames: int | None = None) -> DicomImage:
    """Decode a DICOM image or cine into display frames (at most ``max_frames``)."""
    dataset, header = read_header(path)
    count = header.frames if max_frames is None else min(header.frames, max_frames)
    frames = np.stack(list(_frames(dataset, header, range(count))))
    return DicomImage(header=header, frames=frames)


def iter_frames(path: Path) -> Iterator[np.ndarray]:
    """Display frames of a (long) cine one at a time: the video path's frame source for DICOM."""
    dataset, header = read_header(path)
    yield from _frames(dataset, header, range(header.frames))


def display_frame(dataset: Dataset, raw: np.ndarray) -> np.ndarray:
    """One decoded frame (as pydicom gives it, YBR already RGB) to uint8 grey or RGB."""
    photometric = str(dataset.PhotometricInterpretation).strip()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(raw, dataset)
        return rgb if rgb.dtype == np.uint8 else (rgb // 257).astype(np.uint8)  # 16-bit LUT entries
    low, high = _stored_range(dataset)
    if photometric not in _GREY:
        return _rescale(raw, low, high)
    values = raw
    if "RescaleSlope" in dataset or "ModalityLUTSequence" in dataset:
        values = apply_modality_lut(values, dataset)
        low, high = (float(v) for v in apply_modality_lut(np.array([low, high]), dataset))
    if "WindowCenter" in dataset or "VOILUTSequence" in dataset:
        values = apply_voi_lut(values, dataset)  # maps the window onto the stored range
        low, high = _stored_range(dataset)
    grey = _rescale(values, low, high)
    return 255 - grey if photometric == "MONOCHROME1" else grey


def _stored_range(dataset: Dataset) -> tuple[float, float]:
    bits = int(dataset.get("BitsStored", 8))
    if int(dataset.get("PixelRepresentation", 0)) == 1:
        return -float(2 ** (bits - 1)), float(2 ** (bits - 1) - 1)
    return 0.0, float(2 ** bits - 1)


def _rescale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low..high`` onto 0..255 (8-bit data passes through untouched)."""
    if values.dtype == np.uint8 and (low, high) == (0.0, 255.0):
        return values
    scaled = (np.clip(values.astype(np.float64), low, high) - low) * (255.0 / max(high - low, 1e-9))
    return np.rint(scaled).astype(np.uint8)


def _frames(dataset: Dataset, header: DicomHeader, indices: range) -> Iterator[np.ndarray]:
    try:
        for raw in iter_pixels(dataset, indices=indices):
            yield display_frame(dataset, raw)
    except Exception as error:  # truncated data and each decoder's own exception types
        raise DicomError(
            f"{header.path}: pixel data cannot be decoded ({type(error).__name__}: {error}); the file may "
            f"be truncated, or its transfer syntax {header.transfer_syntax} needs a decoder that is not "
            "installed (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg)") from error


def _regions(dataset: Dataset) -> Iterator[UltrasoundRegion]:
    for item in dataset.get("SequenceOfUltrasoundRegions", []):
        try:
            box = (int(item.RegionLocationMinX0), int(item.RegionLocationMinY0),
                   int(item.RegionLocationMaxX1) + 1, int(item.RegionLocationMaxY1) + 1)
        except AttributeError:
            continue  # an item without a location cannot be used
        yield UltrasoundRegion(
            box=box,
            spatial_format=int(item.get("RegionSpatialFormat", 0) or 0),
            data_type=int(item.get("RegionDataType", 0) or 0),
            mm_per_pixel_x=_mm(item, "PhysicalUnitsXDirection", "PhysicalDeltaX"),
            mm_per_pixel_y=_mm(item, "PhysicalUnitsYDirection", "PhysicalDeltaY"),
        )


def _mm(item: Dataset, units_keyword: str, delta_keyword: str) -> float | None:
    """PhysicalDelta in mm when its units are centimetres (other units are not a length)."""
    if int(item.get(units_keyword, 0) or 0) != UNITS_CM or delta_keyword not in item:
        return None
    delta = abs(float(item.get(delta_keyword)))
    return 10.0 * delta if delta > 0 else None


def _pixel_size(dataset: Dataset, regions: tuple[UltrasoundRegion, ...]) -> PixelSize | None:
    tissue = [region for region in regions if region.is_2d_tissue]
    if tissue:
        largest = max(tissue, key=lambda region: region.area)
        if largest.mm_per_pixel_x is not None and largest.mm_per_pixel_y is not None:
            return PixelSize(largest.mm_per_pixel_x, largest.mm_per_pixel_y, "dicom")
    spacing = dataset.get("PixelSpacing")  # (row spacing = y, column spacing = x), in mm
    if spacing is not None and len(spacing) == 2 and min(float(v) for v in spacing) > 0:
        return PixelSize(float(spacing[1]), float(spacing[0]), "dicom")
    return None


def _yes_no(value: object) -> bool | None:
    text = str(value or "").strip().upper()
    return {"YES": True, "NO": False}.get(text)


def _frame_time(dataset: Dataset) -> float | None:
    if "FrameTime" in dataset:
        return float(dataset.FrameTime)
    if "RecommendedDisplayFrameRate" in dataset and float(dataset.RecommendedDisplayFrameRate) > 0:
        return 1000.0 / float(dataset.RecommendedDisplayFrameRate)
    return None
