"""Small, valid cohort folders for tests, with real media files.

Images are real PNG, JPEG, BMP, TIFF (Pillow) and DICOM (pydicom) files; videos are real MP4
and AVI files written by cv2.VideoWriter, so the validator's decoders run on genuine data.
Everything is drawn from a numpy Generator seeded by the caller.

    cohort = make_cohort(tmp_path / "cohort", seed=0)
    edit_cell(cohort.root / "participants.csv", row=3, column="albumin", value="abc")
    code, report = validate_json(cohort.root)
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import typer
import yaml
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)
from typer.testing import CliRunner

from model_build.commands import validate

IMAGE_SUFFIXES = (".png", ".jpg", ".bmp", ".tif", ".dcm")
VIDEO_SUFFIXES = (".mp4", ".avi")
FRAME_SIZE = (48, 64)  # rows, columns: small keeps the tests fast
SCHEMA = {
    "format_version": 1,
    "label": {"definition": "given"},
    "columns": {
        "age": {"role": "clinical", "type": "integer", "unit": "years", "range": [40, 110]},
        "sex": {"role": "clinical", "type": "categorical", "levels": ["M", "F"]},
        "albumin": {"role": "lab", "type": "numeric", "unit": "g/L", "range": [20, 55]},
        "creatinine": {"role": "lab", "type": "numeric", "unit": "umol/L", "range": [20, 500]},
        "grip_kg": {"role": "reference", "measure": "grip", "type": "numeric", "unit": "kg", "range": [0, 90]},
        "gait_speed": {"role": "reference", "measure": "gait_speed", "type": "numeric", "unit": "m/s",
                       "range": [0.1, 3.0]},
    },
}


@dataclass
class FactoryCohort:
    """A cohort written to disk, with its media in listing order (absolute paths)."""

    root: Path
    participant_ids: list[str]
    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)


def make_cohort(root: Path, *, seed: int = 0, n_participants: int = 6, images: bool = True,
                videos: bool = True) -> FactoryCohort:
    """A usable cohort: development (first two thirds) and external, both classes in each.

    Every participant has two images (formats cycling through PNG, JPEG, BMP, TIFF, DICOM)
    and one video (MP4/AVI) except the last, who has no video and no lab values: a missing
    modality is data, not an error.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"P{number:03d}" for number in range(1, n_participants + 1)]
    n_development = max(2, (2 * n_participants) // 3)
    rows = []
    for index, participant in enumerate(ids):
        last = index == n_participants - 1
        rows.append({
            "participant_id": participant,
            "cohort": "development" if index < n_development else "external",
            "label": str(index % 2),
            "center": "A" if index % 3 else "B",
            "sex": "MF"[index % 2],
            "age": str(int(rng.integers(55, 90))),
            "albumin": "" if last else f"{rng.uniform(30, 50):.1f}",
            "creatinine": "" if last else f"{rng.uniform(50, 120):.0f}",
            "grip_kg": f"{rng.uniform(15, 45):.1f}",
            "gait_speed": f"{rng.uniform(0.5, 1.5):.2f}",
        })
    write_csv(root / "participants.csv", rows)
    (root / "schema.yaml").write_text(yaml.safe_dump(SCHEMA, sort_keys=False), encoding="utf-8")
    cohort = FactoryCohort(root=root, participant_ids=ids)
    if images:
        listing = []
        for index, participant in enumerate(ids):
            for view_index, view in enumerate(("longitudinal", "transverse")):
                suffix = IMAGE_SUFFIXES[(2 * index + view_index) % len(IMAGE_SUFFIXES)]
                relative = f"images/{participant}_{view[:4]}{suffix}"
                write_image(root / relative, rng)
                cohort.images.append(root / relative)
                listing.append({"participant_id": participant, "path": relative, "muscle": "rectus_femoris",
                                "view": view, "side": "R", "scanner": "factory", "mm_per_pixel": "0.1"})
        write_csv(root / "images.csv", listing)
    if videos:
        listing = []
        for index, participant in enumerate(ids[:-1]):
            relative = f"videos/{participant}{VIDEO_SUFFIXES[index % len(VIDEO_SUFFIXES)]}"
            write_video(root / relative, rng)
            cohort.videos.append(root / relative)
            listing.append({"participant_id": participant, "path": relative, "muscle": "rectus_femoris",
                            "view": "transverse", "side": "R", "mm_per_pixel": "0.1"})
        write_csv(root / "videos.csv", listing)
    return cohort


def speckle(rng: np.random.Generator, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A grey frame with a bright band (an aponeurosis-like stripe) and speckle noise."""
    rows, columns = size
    frame = rng.gamma(2.0, 30.0, size=size)
    band = int(rng.integers(rows // 4, rows // 2))
    frame[band:band + 3, :] += 120
    return np.clip(frame + np.linspace(40, 0, rows)[:, None], 0, 255).astype(np.uint8)


def write_image(path: Path, rng: np.random.Generator) -> None:
    """A real image file in the format its suffix names (``.dcm`` -> DICOM)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = speckle(rng)
    if path.suffix.lower() in (".dcm", ""):
        write_dicom(path, pixels)
    else:
        Image.fromarray(pixels).save(path)


def write_dicom(path: Path, pixels: np.ndarray) -> None:
    """Uncompressed 8-bit ultrasound DICOM; a 3-D array (frames, rows, columns) is a cine loop."""
    path.parent.mkdir(parents=True, exist_ok=True)
    multi_frame = pixels.ndim == 3
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage if multi_frame else UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "US"
    dataset.Rows, dataset.Columns = pixels.shape[-2:]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    dataset.PixelRepresentation = 0
    if multi_frame:
        dataset.NumberOfFrames = pixels.shape[0]
    dataset.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    dataset.save_as(path, enforce_file_format=True)


def write_video(path: Path, rng: np.random.Generator, n_frames: int = 12, fps: float = 10.0) -> None:
    """A real grey cine clip: MP4 (mp4v) or AVI (MJPG) by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, columns = FRAME_SIZE
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (columns, rows), isColor=False)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path.suffix} videos here")
    for _ in range(n_frames):
        writer.write(speckle(rng))
    writer.release()


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> None:
    header = header or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def edit_cell(path: Path, row: int, column: str, value: str) -> None:
    """Set one cell, ``row`` numbered as a spreadsheet shows it (header = row 1)."""
    rows = read_rows(path)
    header = list(rows[0])
    if column not in header:
        header.append(column)
        for entry in rows:
            entry.setdefault(column, "")
    rows[row - 2][column] = value
    write_csv(path, rows, header)


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to a fraction of its bytes, as an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def validate_json(root: Path, *args: str) -> tuple[int, dict | None]:
    """Run `sarco validate ROOT --json`; (exit code, parsed report or None when stdout is empty).

    Fails the calling test on any exception other than the command's own exit: a traceback
    from bad input is a bug.
    """
    result = CliRunner().invoke(validate_app(), ["validate", str(root), "--json", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"sarco validate crashed: {result.exception!r}\n{result.output}") from result.exception
    report = json.loads(result.stdout) if result.stdout.strip() else None
    return result.exit_code, report


def validate_app() -> typer.Typer:
    """A CLI with `validate` alone, so these tests do not depend on other commands importing."""
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(lambda: None)  # a group, so the command keeps its name as in `sarco validate`
    validate.register(app)
    return app


def findings_at(report: dict, *, severity: str | None = None, file: str | None = None, row: int | None = None,
                column: str | None = None) -> list[dict]:
    """The report's findings matching every criterion given."""
    wanted = {"severity": severity, "file": file, "row": row, "column": column}
    return [finding for finding in report["findings"]
            if all(value is None or finding[key] == value for key, value in wanted.items())]
