"""Shared by several test modules (moved from test_dicom.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UltrasoundImageStorage, UltrasoundMultiFrameImageStorage, generate_uid


def speckle(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Rayleigh speckle, blurred a little like a B-mode, as uint8."""
    rng = np.random.default_rng(seed)
    field = rng.rayleigh(40.0, size=shape).astype(np.float32)
    return np.clip(cv2.GaussianBlur(field, (3, 3), 0.8), 0, 255).astype(np.uint8)


def new_dataset(rows: int, columns: int, frames: int = 1) -> Dataset:
    """An ultrasound image header with identifying attributes filled in (for de-id tests too)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = UltrasoundMultiFrameImageStorage if frames > 1 else UltrasoundImageStorage
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "US"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "H1234567", "19450302", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20240115", "101500", "ACC998877"
    ds.InstitutionName, ds.ReferringPhysicianName = "Example General Hospital", "Smith^John"
    ds.Rows, ds.Columns = rows, columns
    if frames > 1:
        ds.NumberOfFrames, ds.FrameTime = frames, 33.3
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def region(box: tuple[int, int, int, int], data_type: int = 1, delta_cm: float = 0.01, units: int = 3) -> Dataset:
    item = Dataset()
    item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = 1, data_type, 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = box[0], box[1]
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = box[2] - 1, box[3] - 1  # inclusive in DICOM
    item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = units
    item.PhysicalDeltaX, item.PhysicalDeltaY = delta_cm, delta_cm * 1.5
    return item
