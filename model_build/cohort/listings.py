"""Checks of images.csv and videos.csv rows: ids, paths and the optional acquisition columns.

Only what the rows say is checked here; whether each file exists and decodes is
:mod:`model_build.cohort.media`'s job (slow, optional with ``--no-media``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection

import pandas as pd

from model_build.cohort.findings import CohortFinding, Place
from model_build.cohort.schema import ColumnSpec
from model_build.cohort.values import check_column

REQUIRED = ("participant_id", "path")
# Extension -> decoder. DICOM files often have no extension at all, so "" means DICOM.
IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp", ".tif": "tiff",
                 ".tiff": "tiff", ".dcm": "dicom", ".dicom": "dicom", "": "dicom"}
VIDEO_FORMATS = {".mp4": "video", ".avi": "video", ".mov": "video", ".mkv": "video", ".m4v": "video",
                 ".mpg": "video", ".mpeg": "video", ".wmv": "video", ".dcm": "dicom", ".dicom": "dicom",
                 "": "dicom"}
LISTINGS = {"images.csv": ("image", IMAGE_FORMATS), "videos.csv": ("video", VIDEO_FORMATS)}
MEDIA_COLUMNS = {
    "view": ColumnSpec(name="view", role="other", type="categorical", levels=("longitudinal", "transverse")),
    "side": ColumnSpec(name="side", role="other", type="categorical", levels=("L", "R")),
    "mm_per_pixel": ColumnSpec(name="mm_per_pixel", role="other", type="numeric", unit="mm/pixel",
                               range=(0.005, 1.0)),
    "depth_mm": ColumnSpec(name="depth_mm", role="other", type="numeric", unit="mm", range=(5.0, 300.0)),
}
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")


def media_format(relative: str, file: str) -> str | None:
    """Decoder for a listed path (``png``, ``jpeg``, ``dicom``, ``video``...), ``None`` if unsupported."""
    _, formats = LISTINGS[file]
    return formats.get(posixpath.splitext(relative)[1].lower())


def check_listing(frame: pd.DataFrame, file: str, known_ids: Collection[str] | None) -> list[CohortFinding]:
    """Rows of images.csv or videos.csv; ``known_ids`` is None when participants.csv is unusable."""
    findings = []
    for row, participant, relative in zip(frame.index, frame["participant_id"], frame["path"]):
        place, row = Place(file), int(row)
        if not participant:
            findings.append(place.at(row, "participant_id").error(
                "participant_id is empty", "write the id of the participant this file belongs to"))
        elif known_ids is not None and participant not in known_ids:
            findings.append(place.at(row, "participant_id").error(
                f"participant {participant} is not in participants.csv",
                "add the participant to participants.csv, or correct the id"))
        problem = path_problem(relative, file)
        if problem is not None:
            findings.append(place.at(row, "path").error(*problem))
    for name, spec in MEDIA_COLUMNS.items():
        if name in frame.columns:
            findings += check_column(frame, spec, file)
    return findings


def path_problem(relative: str, file: str) -> tuple[str, str] | None:
    """``(message, hint)`` when a listed path cannot name a file inside the cohort folder."""
    if not relative:
        return "path is empty", "write the file's path relative to the cohort folder"
    if any(ord(character) < 32 for character in relative):
        return f"path {relative!r} contains control characters", "retype the path"
    if "\\" in relative:
        return f"path {relative!r} uses backslashes", f"write {relative.replace(chr(92), '/')!r}"
    if relative.startswith("/") or _WINDOWS_DRIVE.match(relative):
        return (f"path {relative!r} is absolute",
                "copy the file into the cohort folder and write its path relative to the folder")
    normal = posixpath.normpath(relative)
    if normal == ".." or normal.startswith("../"):
        return (f"path {relative!r} leaves the cohort folder",
                "copy the file into the cohort folder and write its path relative to the folder")
    if media_format(relative, file) is None:
        kind, formats = LISTINGS[file]
        suffix = posixpath.splitext(relative)[1]
        supported = ", ".join(sorted(extension for extension in formats if extension))
        return (f"{suffix!r} is not a supported {kind} format",
                f"convert it to one of {supported} (DICOM files may also have no extension)")
    return None
