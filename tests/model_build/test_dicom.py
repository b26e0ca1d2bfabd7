"""DICOM in all its forms: every file here is built with pydicom (and OpenCV for JPEG bytes),
saved as Part 10 and read back through model_build.dicom."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from model_build.dicom import DicomError, iter_frames, read_dicom, read_header
from tests.support.dicom import new_dataset, region, save, speckle


def grey_file(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 8) -> Path:
    ds = new_dataset(*pixels.shape[-2:], frames=pixels.shape[0] if pixels.ndim == 3 else 1)
    ds.set_pixel_data(pixels, photometric, bits)
    return save(ds, path)


def jpeg_ybr_file(path: Path, rgb: np.ndarray) -> Path:
    """JPEG Baseline, YBR_FULL_422, as scanners store colour ultrasound (bytes from OpenCV)."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95,
                                cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422])
    assert ok
    ds = new_dataset(*rgb.shape[:2])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([encoded.tobytes()])
    ds["PixelData"].VR = "OB"
    return save(ds, path)


def test_monochrome2_reads_back_exactly(tmp_path):
    pixels = speckle((40, 60))
    image = read_dicom(grey_file(tmp_path / "m2.dcm", pixels))
    assert image.frames.shape == (1, 40, 60) and image.frames.dtype == np.uint8
    assert np.array_equal(image.frames[0], pixels)
    assert not image.header.is_colour


def test_monochrome1_is_inverted(tmp_path):
    pixels = speckle((40, 60))
    image = read_dicom(grey_file(tmp_path / "m1.dcm", pixels, "MONOCHROME1"))
    assert np.array_equal(image.frames[0], 255 - pixels)


def test_twelve_bit_grey_is_scaled_to_eight_bits(tmp_path):
    pixels = np.array([[0, 2047, 4095, 1000]] * 8, dtype=np.uint16)
    image = read_dicom(grey_file(tmp_path / "m12.dcm", pixels, bits=12))
    expected = np.rint(pixels / 4095 * 255).astype(np.uint8)
    assert np.array_equal(image.frames[0], expected)


def test_voi_window_maps_onto_eight_bits(tmp_path):
    pixels = np.array([[0, 768, 1024, 1280, 4095]] * 4, dtype=np.uint16)
    ds = new_dataset(4, 5)
    ds.set_pixel_data(pixels, "MONOCHROME2", 12)
    ds.WindowCenter, ds.WindowWidth = 1024, 512
    frame = read_dicom(save(ds, tmp_path / "window.dcm")).frames[0]
    assert frame[0, 0] == frame[0, 1] == 0 and frame[0, 3] == frame[0, 4] == 255
    assert abs(int(frame[0, 2]) - 128) <= 1


def test_rgb_reads_back_exactly(tmp_path):
    rgb = np.stack([speckle((30, 50), seed) for seed in range(3)], axis=-1)
    ds = new_dataset(30, 50)
    ds.set_pixel_data(rgb, "RGB", 8)
    image = read_dicom(save(ds, tmp_path / "rgb.dcm"))
    assert image.frames.shape == (1, 30, 50, 3)
    assert np.array_equal(image.frames[0], rgb)


def test_ybr_full_is_converted_to_rgb(tmp_path):
    rgb = np.stack([speckle((30, 50), seed) for seed in range(3)], axis=-1)
    ds = new_dataset(30, 50)
    ds.set_pixel_data(convert_color_space(rgb, "RGB", "YBR_FULL"), "YBR_FULL", 8)
    image = read_dicom(save(ds, tmp_path / "ybr.dcm"))
    assert np.abs(image.frames[0].astype(int) - rgb).max() <= 2  # rounding of two conversions


def test_jpeg_baseline_ybr_full_422_is_decoded_to_rgb(tmp_path):
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0], rgb[:24, :, 1], rgb[:, 32:, 2] = 180, 120, 60  # flat blocks: JPEG keeps them
    image = read_dicom(jpeg_ybr_file(tmp_path / "jpeg.dcm", rgb))
    assert image.header.photometric == "YBR_FULL_422"
    assert image.frames.shape == (1, 48, 64, 3)
    assert np.abs(image.frames[0, 4:20, 4:28].astype(int) - rgb[4:20, 4:28]).max() <= 6


def test_palette_colour_goes_through_its_lookup_table(tmp_path):
    indices = np.tile(np.arange(64, dtype=np.uint8), (16, 1))
    ds = new_dataset(16, 64)
    ds.set_pixel_data(indices, "PALETTE COLOR", 8)
    entries = np.arange(256)
    red, green, blue = entries * 257, (255 - entries) * 257, np.full(256, 128 * 257)
    for colour, values in (("Red", red), ("Green", green), ("Blue", blue)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", values.astype("<u2").tobytes())
    image = read_dicom(save(ds, tmp_path / "palette.dcm"))
    frame = image.frames[0]
    assert frame.dtype == np.uint8 and frame.shape == (16, 64, 3)
    assert np.array_equal(frame[0, :, 0], np.arange(64)) and np.array_equal(frame[0, :, 1], 255 - np.arange(64))
    assert np.all(frame[..., 2] == 128)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_multiframe_cine(tmp_path, syntax):
    cine = np.stack([speckle((32, 48), seed) for seed in range(6)])
    ds = new_dataset(32, 48, frames=6)
    ds.set_pixel_data(cine, "MONOCHROME2", 8)
    ds.compress(syntax)
    path = save(ds, tmp_path / "cine.dcm")
    image = read_dicom(path)
    assert image.header.frames == 6 and image.header.frame_time_ms == pytest.approx(33.3)
    assert np.array_equal(image.frames, cine)
    streamed = list(iter_frames(path))
    assert len(streamed) == 6 and np.array_equal(streamed[3], cine[3])
    assert read_dicom(path, max_frames=2).frames.shape == (2, 32, 48)


def test_largest_2d_tissue_region_gives_box_and_mm_per_pixel(tmp_path):
    ds = new_dataset(120, 160)
    ds.set_pixel_data(speckle((120, 160)), "MONOCHROME2", 8)
    ds.SequenceOfUltrasoundRegions = Sequence([
        region((5, 5, 40, 30)),                          # small tissue region (a thumbnail)
        region((0, 70, 160, 120), data_type=3, units=4),  # spectral Doppler strip: larger, not tissue
        region((20, 10, 140, 100), delta_cm=0.008),      # the B-mode
    ])
    header = read_dicom(save(ds, tmp_path / "regions.dcm")).header
    assert header.scan_region.box == (20, 10, 140, 100)
    assert header.pixel_size.source == "dicom"
    assert header.pixel_size.mm_per_pixel_x == pytest.approx(0.08)
    assert header.pixel_size.mm_per_pixel_y == pytest.approx(0.12)


def test_region_in_other_units_gives_no_pixel_size(tmp_path):
    ds = new_dataset(60, 80)
    ds.set_pixel_data(speckle((60, 80)), "MONOCHROME2", 8)
    ds.SequenceOfUltrasoundRegions = Sequence([region((0, 0, 80, 60), units=0)])
    _, header = read_header(save(ds, tmp_path / "nounits.dcm"))
    assert header.scan_region is not None and header.pixel_size is None


def test_burned_in_annotation_flag(tmp_path):
    ds = new_dataset(20, 20)
    ds.set_pixel_data(speckle((20, 20)), "MONOCHROME2", 8)
    ds.BurnedInAnnotation = "YES"
    _, header = read_header(save(ds, tmp_path / "burned.dcm"))
    assert header.burned_in_annotation is True
    ds.BurnedInAnnotation = "NO"
    _, header = read_header(save(ds, tmp_path / "clean.dcm"))
    assert header.burned_in_annotation is False


def test_not_dicom_names_the_file(tmp_path):
    path = tmp_path / "photo.dcm"
    cv2.imwrite(str(tmp_path / "photo.png"), speckle((20, 20)))
    path.write_bytes((tmp_path / "photo.png").read_bytes())
    with pytest.raises(DicomError, match="photo.dcm: not a DICOM file"):
        read_dicom(path)


def test_no_pixel_data_is_refused(tmp_path):
    ds = new_dataset(10, 10)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    path = save(ds, tmp_path / "report.dcm")
    with pytest.raises(DicomError, match="has no pixel data"):
        read_dicom(path)


def test_truncated_pixel_data_is_a_clear_error(tmp_path):
    path = grey_file(tmp_path / "cut.dcm", np.stack([speckle((64, 64), s) for s in range(4)]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 64 * 64 * 2])
    with pytest.raises(DicomError, match="cut.dcm"):
        read_dicom(path)
