"""Do the listed images and videos exist, decode completely, and belong to one participant each?
And what does each show: scan box, physical pixel size, burned-in text?

Every file is decoded in full (a truncated file often opens fine and fails only on its last
rows or frames) and hashed, so the same recording filed under two participants is caught even
under two names. Every file that decodes is then described by
:func:`model_build.imaging_report.describe_pixels` (one row of the media table), because training
needs the scan box and the pixel size of each file and a cohort must not leave the hospital with
names burned into its pixels. The description reuses what the check has read: a video's probe
frames are kept while it is decoded to the end (a video is decoded once), a still is decoded by
OpenCV from the bytes already read (Pillow's decode is the integrity check); only a DICOM is
parsed again, for its first frame. Work runs in a thread pool: Pillow, OpenCV and hashlib
release the GIL.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from model_build.cohort.findings import CohortFinding, Place
from model_build.cohort.listings import LISTINGS, MEDIA_COLUMNS, media_format, path_problem
from model_build.cohort.paths import CohortPathError, cohort_file
from model_build.cohort.values import cell_problem
from sarco_core.files import sha256_file

# FFmpeg prints its own complaints about broken videos to stderr; the findings say it better.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402  (must see the log level above before its first video is opened)
import pydicom  # noqa: E402
from pydicom.errors import InvalidDicomError  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

from model_build.imaging_report import (MediaError, MediaPixels, decode_still, describe_pixels,  # noqa: E402
                                        probe_indices, read_pixels)

PNG_END = b"IEND\xaeB`\x82"
# What Pillow may call each listed format (a JPEG from a camera can be MPO, a BMP a DIB).
PILLOW_FORMATS = {"png": ("PNG",), "jpeg": ("JPEG", "MPO"), "bmp": ("BMP", "DIB"), "tiff": ("TIFF",)}
# Containers that store no frame count get it estimated from duration x rate, which can be
# one frame off; a truncated recording loses far more than that.
FRAME_COUNT_SLACK = 1
# What describe_pixels says about a file, as the media table (and `--json`) carries it.
DESCRIBED = ("format", "width", "height", "frames", "scan_box", "scan_box_source", "mm_per_pixel",
             "pixel_size_source", "burned_in_text", "burned_in_annotation_flag")
ROWS_NAMED = 5  # a summary finding names this many rows; the media table lists them all


@dataclass(frozen=True)
class MediaItem:
    """One listed file: which listing row names it, whose it is, how to decode it, and the
    pixel size facts its row gives (None when the cell is empty or invalid)."""

    file: str
    row: int
    participant_id: str
    relative: str
    format: str
    mm_per_pixel: float | None = None
    depth_mm: float | None = None

    @property
    def place(self) -> Place:
        return Place(self.file, self.row, "path")


@dataclass(frozen=True)
class Problem:
    """What is wrong with one file; the caller adds where (listing, row, path)."""

    message: str
    hint: str
    severity: str = "error"


@dataclass(frozen=True)
class MediaCheck:
    """What inspecting one file found: its content hash (None if unreadable), problems, and
    describe_pixels' summary (None when the file does not decode)."""

    sha256: str | None
    findings: tuple[CohortFinding, ...] = ()
    description: dict | None = None


def media_items(listings: dict[str, pd.DataFrame]) -> list[MediaItem]:
    """The rows whose path is usable (the others already have a finding), in file then row order."""
    items = []
    for file, frame in listings.items():
        sizes = {name: _numbers(frame, name) for name in ("mm_per_pixel", "depth_mm")}
        for row, participant, relative in zip(frame.index, frame["participant_id"], frame["path"]):
            if path_problem(relative, file) is None:
                items.append(MediaItem(file, int(row), participant, relative, media_format(relative, file),
                                       sizes["mm_per_pixel"].get(row), sizes["depth_mm"].get(row)))
    return items


def _numbers(frame: pd.DataFrame, name: str) -> dict[int, float]:
    """The valid cells of an optional numeric column by row (invalid ones already have an error)."""
    if name not in frame.columns:
        return {}
    return {row: float(raw) for row, raw in frame[name].items()
            if raw and cell_problem(raw, MEDIA_COLUMNS[name]) is None}


def check_media(root: Path, items: list[MediaItem],
                on_progress: Callable[[int, int], None] | None = None) -> tuple[list[CohortFinding], list[dict]]:
    """Inspect every file (in parallel); the findings, and the media table (one row per item).

    Beyond each file's own findings: content shared between rows, and per listing one
    summary each of the files whose pixel size is unknown and of those with burned-in text.
    """
    checks: list[MediaCheck | None] = [None] * len(items)
    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(inspect_media_file, root, item): index
                   for index, item in enumerate(items)}
        for done, future in enumerate(as_completed(futures), start=1):
            checks[futures[future]] = future.result()
            if on_progress is not None:
                on_progress(done, len(items))
    findings = [finding for check in checks for finding in check.findings]
    table = [media_row(item, check.description) for item, check in zip(items, checks)]
    return findings + _shared_content(items, checks) + _listing_summaries(table), table


def inspect_media_file(root: Path, item: MediaItem) -> MediaCheck:
    """Check that one listed file exists in the cohort folder ``root``, is complete and
    decodes, then describe it.

    This is the one place that looks inside a media file, and it opens only a regular file
    inside the cohort folder (:func:`~model_build.cohort.paths.cohort_file`). A file that does
    not decode is not described (its error says why); one whose scan box is not found gets a
    warning here, the pixel size and burned-in text are summarised per listing by
    :func:`check_media`.
    """
    try:
        path = cohort_file(root, item.relative)
        if path.stat().st_size == 0:
            return MediaCheck(None, (_finding(item, Problem("file is empty (0 bytes)",
                                                            "copy the file again from its source")),))
        pixels: MediaPixels | None = None
        if item.format == "video":
            digest = sha256_file(path)
            problem, pixels = _video_problem(path)
        else:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            problem = (_dicom_problem(data, item.file == "videos.csv") if item.format == "dicom"
                       else _image_problem(data, item.format))
    except CohortPathError as error:
        return MediaCheck(None, (_finding(item, Problem(error.message, error.hint)),))
    except OSError as error:
        return MediaCheck(None, (_finding(item, Problem(f"cannot be read ({error.strerror})",
                                                        "check that the file is readable")),))
    found = () if problem is None else (_finding(item, problem),)
    if problem is not None and problem.severity == "error":
        return MediaCheck(digest, found)
    try:
        if pixels is None:
            pixels = read_pixels(path) if item.format == "dicom" else decode_still(path, data)
        description = describe_pixels(pixels, item.mm_per_pixel, item.depth_mm)
    except MediaError as error:  # decodes for the check above, yet not for training: say why
        return MediaCheck(digest, (*found, _finding(item, _media_error_problem(error, path))))
    except Exception as error:  # a fault of the image analysis must not stop the other 1,000 files
        return MediaCheck(digest, (*found, _finding(item, Problem(
            f"could not be described ({type(error).__name__}: {error})",
            "the file decodes; this is a fault in sarco's image analysis: report it with the file",
            severity="warning"))))
    if description["scan_box"] is None:
        found += (_finding(item, Problem(
            "no scan box found: no B-mode area among its pixels",
            "check that the file shows a B-mode ultrasound image; if it does, crop it to the B-mode area "
            "or export it as DICOM with ultrasound regions", severity="warning")),)
    return MediaCheck(digest, found, description)


def _media_error_problem(error: MediaError, path: Path) -> Problem:
    """MediaError says ``PATH: what; fix``; the finding names the path itself."""
    text = str(error).removeprefix(f"{path}: ")
    message, separator, hint = text.rpartition("; ")
    return Problem(message, hint) if separator else Problem(text, "export the file again, or convert it to PNG")


def media_row(item: MediaItem, description: dict | None) -> dict:
    """One row of the media table: where the file is listed and what describe_pixels says of it
    (``described`` False, and the listing's format only, when the file does not decode)."""
    row = {"file": item.file, "row": item.row, "participant_id": item.participant_id, "path": item.relative,
           "described": description is not None}
    row.update({key: None if description is None else description[key] for key in DESCRIBED})
    if description is None:
        row["format"] = item.format
    return row


def _listing_summaries(table: list[dict]) -> list[CohortFinding]:
    """Per listing, one finding for all files of unknown pixel size and one for burned-in text:
    both are common to whole exports, so a finding per file would bury everything else."""
    findings = []
    for file in LISTINGS:
        described = [row for row in table if row["file"] == file and row["described"]]
        unknown = [row["row"] for row in described if row["mm_per_pixel"] is None]
        if unknown:
            findings.append(Place(file, None, "mm_per_pixel").warning(
                f"pixel size unknown for {len(unknown)} of {len(described)} files ({_rows(unknown)}): "
                "without it images cannot be brought to one physical scale",
                "add an mm_per_pixel column (or depth_mm, the imaging depth, when the scan box is found), "
                "or use DICOM files with ultrasound regions"))
        text = [row["row"] for row in described if row["burned_in_text"]]
        if text:
            findings.append(Place(file, None, "path").info(
                f"burned-in text or markers in {len(text)} of {len(described)} files ({_rows(text)}; "
                "text found in the pixels, or DICOM BurnedInAnnotation YES)",
                "`sarco deidentify` masks it, and blanks everything outside the scan box, "
                "before the cohort leaves the hospital"))
    return findings


def _rows(rows: list[int]) -> str:
    named = ", ".join(str(row) for row in rows[:ROWS_NAMED])
    more = f" and {len(rows) - ROWS_NAMED} more" if len(rows) > ROWS_NAMED else ""
    return f"row{'s' if len(rows) > 1 else ''} {named}{more}"


def _finding(item: MediaItem, problem: Problem) -> CohortFinding:
    return CohortFinding(problem.severity, item.file, item.row, "path", f"{item.relative}: {problem.message}",
                   problem.hint)


def _image_problem(data: bytes, kind: str) -> Problem | None:
    resend = "copy the file again from its source, or export it again"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            found = image.format
    except UnidentifiedImageError:
        return Problem(f"is not a {kind.upper()} image (its content is not a known image format)", resend)
    except Exception as error:  # decoders raise many types on damaged data; each is a finding
        if "truncated" in str(error):
            return Problem(f"truncated {kind.upper()} image ({error})", resend)
        return Problem(f"corrupt {kind.upper()} image ({type(error).__name__}: {error})", resend)
    if found not in PILLOW_FORMATS[kind]:
        return Problem(f"holds a {found} image, not {kind.upper()}", "rename it with the extension of its format",
                       severity="warning")
    if kind == "png" and not data.endswith(PNG_END):
        # Pillow decodes a PNG whose final chunk is cut off; the missing IEND marker shows it.
        return Problem("truncated PNG image (no end marker)", resend)
    return None


def _dicom_problem(data: bytes, as_video: bool) -> Problem | None:
    resend = "export the file again from the scanner or PACS"
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        return Problem("is not a DICOM file (no DICM header)", f"{resend} as DICOM Part 10, or convert it to PNG")
    except Exception as error:  # a damaged header can fail anywhere in the parser
        return Problem(f"corrupt DICOM ({type(error).__name__}: {error})", resend)
    if "PixelData" not in dataset:
        return Problem("DICOM has no pixel data", "list image objects only (not reports or presentation states)")
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # truncated or undecodable pixel data, unsupported syntax...
        return Problem(f"corrupt DICOM: pixel data cannot be decoded ({type(error).__name__}: {error})", resend)
    if as_video and (pixels.ndim < 3 or int(dataset.get("NumberOfFrames", 1) or 1) < 2):
        return Problem("DICOM holds a single frame, not a cine recording", "list it in images.csv instead")
    return None


def _video_problem(path: Path) -> tuple[Problem | None, MediaPixels | None]:
    """Decode every frame (a truncated recording fails only near its end), keeping the probe
    frames the description looks at: the problem, or None and those frames."""
    resend = "export the recording again (MP4 or AVI)"
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return Problem("cannot be opened as a video (truncated, corrupt or an unknown codec)", resend), None
        expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        wanted = probe_indices(expected)
        probes, decoded = [], 0
        while capture.grab():  # grab decodes the frame without converting it: faster than read
            if decoded in wanted:
                converted, frame = capture.retrieve()
                if converted:
                    probes.append(frame)
            decoded += 1
    finally:
        capture.release()
    if decoded == 0 or not probes:
        return Problem("video has no decodable frame", resend), None
    if expected > 0 and decoded < expected - FRAME_COUNT_SLACK:
        return Problem(f"truncated or corrupt video: {decoded} of {expected} frames decode", resend), None
    return None, MediaPixels("video", tuple(probes), expected if expected > 0 else decoded)


def _shared_content(items: list[MediaItem], checks: list[MediaCheck]) -> list[CohortFinding]:
    """Same bytes under two participants leaks between them; under one it double-weighs."""
    findings = []
    first: dict[str, MediaItem] = {}
    for item, check in zip(items, checks):
        if check.sha256 is None:
            continue
        earlier = first.setdefault(check.sha256, item)
        if earlier is item:
            continue
        same_as = f"{item.relative}: same content as {earlier.file} row {earlier.row} ({earlier.relative})"
        if earlier.participant_id != item.participant_id:
            findings.append(item.place.error(
                f"{same_as}, which belongs to participant {earlier.participant_id}, not {item.participant_id}",
                "a recording belongs to one participant: remove the wrong row or replace the file"))
        else:
            findings.append(item.place.warning(
                f"{same_as} of the same participant",
                "remove one of the rows: a file listed twice counts twice in training"))
    return findings
