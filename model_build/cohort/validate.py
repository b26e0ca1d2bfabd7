"""Validating a cohort folder: every check of docs/cohort-format.md, in one place.

:func:`check_cohort` reads the files once and returns both the report and the parsed tables,
so the loader (:mod:`model_build.cohort.loader`) uses exactly what was validated. Every file is
opened through :func:`model_build.cohort.paths.cohort_file` (inside the folder, regular files
only), and participants.csv is checked as it streams by: memory does not grow with its cells.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from model_build.cohort import listings as listing_checks
from model_build.cohort import participants as participant_checks
from model_build.cohort.findings import SEVERITIES, CohortFinding, Place, ValidationReport
from model_build.cohort.media import check_media, media_items
from model_build.cohort.participants import ParticipantsCheck
from model_build.cohort.paths import CohortPathError, cohort_file
from model_build.cohort.schema import Schema, SchemaError, load_schema
from model_build.cohort.tables import TableError, as_frame, open_table, read_table

SCHEMA_FILE = "schema.yaml"
FOLDER = "(cohort folder)"
FILE_ORDER = (FOLDER, SCHEMA_FILE, participant_checks.FILE, *listing_checks.LISTINGS)
_SCHEMA_COLUMN = re.compile(r"columns\.([^\s.:;]+)")


@dataclass
class CohortTables:
    """The parsed files; ``None`` / absent where a file is missing or could not be read.
    ``participants`` is kept only when asked for: validation alone streams the file."""

    schema: Schema | None = None
    participants: pd.DataFrame | None = None
    listings: dict[str, pd.DataFrame] = field(default_factory=dict)


def validate_cohort(path: str | Path, *, media: bool = True,
                    on_progress: Callable[[int, int], None] | None = None) -> ValidationReport:
    """Check a cohort folder; ``media=False`` skips opening the images and videos (fast)."""
    report, _ = check_cohort(path, media=media, on_progress=on_progress)
    return report


def check_cohort(path: str | Path, *, media: bool = True, keep_participants: bool = False,
                 on_progress: Callable[[int, int], None] | None = None) -> tuple[ValidationReport, CohortTables]:
    """The report, and the parsed tables (participants only with ``keep_participants``)."""
    root = Path(path)
    findings: list[CohortFinding] = []
    tables = CohortTables()
    if not root.is_dir():
        findings.append(Place(FOLDER).error(f"{root} is not a folder", "give the path of the cohort folder"))
        return ValidationReport(root, findings, media_checked=media), tables
    tables.schema = _read_schema(root, findings)
    participants, tables.participants = _read_participants(root, tables.schema, findings, keep_participants)
    known_ids = None if participants is None else participants.known_ids
    for file in listing_checks.LISTINGS:
        if (root / file).exists():
            frame = read_table(root, file, listing_checks.REQUIRED, findings)
            if frame is not None:
                findings += listing_checks.check_listing(frame, file, known_ids)
                tables.listings[file] = frame
    media_table = None
    if media:
        media_findings, media_table = check_media(root, media_items(tables.listings), on_progress)
        findings += media_findings
    report = ValidationReport(root, sorted(findings, key=_finding_order),
                              _summary(participants, tables, media_table), media_checked=media,
                              media=media_table or [])
    return report, tables


def _read_schema(root: Path, findings: list[CohortFinding]) -> Schema | None:
    path = root / SCHEMA_FILE
    if path.exists():  # a missing one is load_schema's to explain (what to write)
        try:
            path = cohort_file(root, SCHEMA_FILE, folder_hint=f"replace it with the file {SCHEMA_FILE}")
        except CohortPathError as error:
            findings.append(Place(SCHEMA_FILE).error(error.message, error.hint))
            return None
    try:
        return load_schema(path)
    except SchemaError as error:
        text = str(error).removeprefix(f"{path}: ")
        message, _, hint = text.partition("; fix: ")
        column = _SCHEMA_COLUMN.search(message)
        findings.append(Place(SCHEMA_FILE, None, column.group(1) if column else None).error(
            message, hint or "see docs/cohort-format.md for the schema.yaml format"))
        return None


def _cohorts_inside(root: Path) -> list[str]:
    """Cohort folders one or two levels down: a folder of sites, such as the sites/<center> and
    evaluation of `sarco synth --size consortium`, is not a cohort itself."""
    found = [*root.glob(f"*/{participant_checks.FILE}"), *root.glob(f"*/*/{participant_checks.FILE}")]
    return sorted(path.parent.relative_to(root).as_posix() for path in found)


def _read_participants(root: Path, schema: Schema | None, findings: list[CohortFinding],
                       keep: bool) -> tuple[ParticipantsCheck | None, pd.DataFrame | None]:
    """Check participants.csv row by row as it is read (bounded memory); the check, and the
    rows as a DataFrame when ``keep`` (the loader types them). ``(None, None)`` when unusable."""
    if not (root / participant_checks.FILE).exists():
        inside = _cohorts_inside(root)
        findings.append(Place(participant_checks.FILE).error(
            "participants.csv is missing",
            f"point at one of the cohort folders this folder holds: {', '.join(inside)}" if inside else
            f"write it with one row per participant and columns {', '.join(participant_checks.REQUIRED)}"))
        return None, None
    numbers: list[int] = []
    kept: list[list[str]] = []
    try:
        with open_table(root, participant_checks.FILE, participant_checks.REQUIRED) as table:
            check = ParticipantsCheck(table.header, schema)
            for number, cells in table.rows():
                check.add(number, cells)
                if keep:
                    numbers.append(number)
                    kept.append(cells)
    except TableError as error:
        findings += error.findings
        return None, None
    if check.rows == 0:
        findings.append(Place(participant_checks.FILE, 2).error("participants.csv lists no participant",
                                                                "add one row per participant below the header"))
        return None, None
    findings += table.findings + check.finish(schema)
    return check, as_frame(table.header, numbers, kept) if keep else None


def _finding_order(finding: CohortFinding) -> tuple:
    file_rank = FILE_ORDER.index(finding.file) if finding.file in FILE_ORDER else len(FILE_ORDER)
    return (file_rank, finding.file, SEVERITIES.index(finding.severity),
            finding.row if finding.row is not None else 0, finding.column or "")


def _summary(participants: ParticipantsCheck | None, tables: CohortTables, media_table: list[dict] | None) -> dict:
    """Counts for the closing lines of `sarco validate`: who is in the cohort and what media
    (per listing, when the media were opened: how many files decode and what they show)."""
    summary: dict = {"participants": 0, "labels": {"1": 0, "0": 0, "unknown": 0}, "cohorts": {}}
    if participants is not None:
        summary = participants.summary()
    for file, key in (("images.csv", "images"), ("videos.csv", "videos")):
        summary[key] = len(tables.listings[file]) if file in tables.listings else 0
    if media_table is not None:
        summary["media"] = {file: _media_counts([row for row in media_table if row["file"] == file])
                            for file in tables.listings}
    return summary


def _media_counts(rows: list[dict]) -> dict:
    described = [row for row in rows if row["described"]]
    return {"files": len(rows), "described": len(described),
            "scan_box_found": sum(row["scan_box"] is not None for row in described),
            "pixel_size_known": sum(row["mm_per_pixel"] is not None for row in described),
            "burned_in_text": sum(bool(row["burned_in_text"]) for row in described)}
