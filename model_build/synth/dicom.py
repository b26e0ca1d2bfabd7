"""Synthetic stills as ultrasound DICOM (US Image Storage), the way PACS exports arrive.

The file carries what a reader needs to measure in millimetres without guessing: a
``SequenceOfUltrasoundRegions`` item for the B-mode area with its physical pixel size in cm
(DICOM's unit for PhysicalUnits code 3). Identity is pseudonymous: ``PatientID`` is the
screening id, and the type-2 name and birth date are present but empty. UIDs are derived from
the caller's random generator, so a cohort regenerated with the same seed is byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from model_build.synth.screen import RenderedImage
from sarco_core.files import atomic_path

_CENTIMETRES = 3  # PhysicalUnitsX/YDirection code for cm
_TISSUE = 1  # RegionDataType: tissue
_TWO_D = 1  # RegionSpatialFormat: 2D


def _uid(rng: np.random.Generator) -> str:
    return generate_uid(entropy_srcs=[str(int(rng.integers(0, 2**63)))])


def _ultrasound_region(image: RenderedImage) -> Dataset:
    """The B-mode region; DICOM's MaxX1/MaxY1 are inclusive, the scan box's x1/y1 are not."""
    x0, y0, x1, y1 = image.scan_box
    region = Dataset()
    region.RegionSpatialFormat = _TWO_D
    region.RegionDataType = _TISSUE
    region.RegionFlags = 0
    region.RegionLocationMinX0 = x0
    region.RegionLocationMinY0 = y0
    region.RegionLocationMaxX1 = x1 - 1
    region.RegionLocationMaxY1 = y1 - 1
    region.PhysicalUnitsXDirection = _CENTIMETRES
    region.PhysicalUnitsYDirection = _CENTIMETRES
    region.PhysicalDeltaX = image.mm_per_pixel / 10.0
    region.PhysicalDeltaY = image.mm_per_pixel / 10.0
    return region


def write_us_dicom(path: Path, image: RenderedImage, screening_id: str, rng: np.random.Generator) -> None:
    """Write ``image`` as a US Image Storage DICOM file at ``path``, atomically.

    Grey images become MONOCHROME2, colour ones RGB (converted from OpenCV's BGR).
    ``BurnedInAnnotation`` is "YES" when there are pixels outside the scan box (the UI, which
    always carries text on these scanners).
    """
    path = Path(path)
    if not screening_id or not screening_id.isprintable():
        raise ValueError(f"{path}: screening id {screening_id!r} must be a non-empty printable pseudonym")
    study_uid, series_uid, instance_uid = _uid(rng), _uid(rng), _uid(rng)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = instance_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "US"
    ds.PatientID = screening_id
    ds.PatientName = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "sarco synthetic"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    height, width = image.pixels.shape[:2]
    ds.BurnedInAnnotation = "NO" if image.scan_box == (0, 0, width, height) else "YES"
    ds.SequenceOfUltrasoundRegions = [_ultrasound_region(image)]
    if image.pixels.ndim == 2:
        ds.set_pixel_data(image.pixels, "MONOCHROME2", 8, generate_instance_uid=False)
    else:
        ds.set_pixel_data(cv2.cvtColor(image.pixels, cv2.COLOR_BGR2RGB), "RGB", 8, generate_instance_uid=False)
    with atomic_path(path) as temporary:
        ds.save_as(temporary, enforce_file_format=True)
