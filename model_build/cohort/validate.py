"""Validating a cohort folder: every check of docs/cohort-format.md, in one place.

:func:`check_cohort` reads the files once and returns both the report and the parsed tables,
so the loader (:mod:`model_build.cohort.loader`) uses exactly what was validated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from model_build.cohort import listings as listing_checks
from model_build.cohort import participants as participant_checks
from model_build.cohort.findings import SEVERITIES, Finding, Place, ValidationReport
from model_build.cohort.media import check_media, media_items
from model_build.cohort.schema import Schema, SchemaError, load_schema
from model_build.cohort.tables import read_table

SCHEMA_FILE = "schema.yaml"
FOLDER = "(cohort folder)"
FILE_ORDER = (FOLDER, SCHEMA_FILE, participant_checks.FILE, *listing_checks.LISTINGS)
_SCHEMA_COLUMN = re.compile(r"columns\.([^\s.:;]+)")


@dataclass
class CohortTables:
    """The parsed files; ``None`` / absent where a file is missing or could not be read."""

    schema: Schema | None = None
    participants: pd.DataFrame | None = None
    listings: dict[str, pd.DataFrame] = field(default_factory=dict)


def validate_cohort(path: str | Path, *, media: bool = True,
                    on_progress: Callable[[int, int], None] | None = None) -> ValidationReport:
    """Check a cohort folder; ``media=False`` skips opening the images and videos (fast)."""
    report, _ = check_cohort(path, media=media, on_progress=on_progress)
    return report


def check_cohort(path: str | Path, *, media: bool = True,
                 on_progress: Callable[[int, int], None] | None = None) -> tuple[ValidationReport, CohortTables]:
    root = Path(path)
    findings: list[Finding] = []
    tables = CohortTables()
    if not root.is_dir():
        findings.append(Place(FOLDER).error(f"{root} is not a folder", "give the path of the cohort folder"))
        return ValidationReport(root, findings, media_checked=media), tables
    tables.schema = _read_schema(root / SCHEMA_FILE, findings)
    tables.participants = _read_participants(root, tables.schema, findings)
    known_ids = None if tables.participants is None else set(tables.participants["participant_id"]) - {""}
    for file in listing_checks.LISTINGS:
        if (root / file).exists():
            frame = read_table(root / file, listing_checks.REQUIRED, findings)
            if frame is not None:
                findings += listing_checks.check_listing(frame, file, known_ids)
                tables.listings[file] = frame
    media_table = None
    if media:
        media_findings, media_table = check_media(root, media_items(tables.listings), on_progress)
        findings += media_findings
    report = ValidationReport(root, sorted(findings, key=_finding_order), _summary(tables, media_table),
                              media_checked=media, media=media_table or [])
    return report, tables


def _read_schema(path: Path, findings: list[Finding]) -> Schema | None:
    try:
        return load_schema(path)
    except SchemaError as error:
        text = str(error).removeprefix(f"{path}: ")
        message, _, hint = text.partition("; fix: ")
        column = _SCHEMA_COLUMN.search(message)
        findings.append(Place(SCHEMA_FILE, None, column.group(1) if column else None).error(
            message, hint or "see docs/cohort-format.md for the schema.yaml format"))
        return None


def _read_participants(root: Path, schema: Schema | None, findings: list[Finding]) -> pd.DataFrame | None:
    path = root / participant_checks.FILE
    if not path.exists():
        findings.append(Place(path.name).error(
            "participants.csv is missing",
            f"write it with one row per participant and columns {', '.join(participant_checks.REQUIRED)}"))
        return None
    frame = read_table(path, participant_checks.REQUIRED, findings)
    if frame is None:
        return None
    if frame.empty:
        findings.append(Place(path.name, 2).error("participants.csv lists no participant",
                                                  "add one row per participant below the header"))
        return None
    findings += participant_checks.check_participants(frame, schema)
    return frame


def _finding_order(finding: Finding) -> tuple:
    file_rank = FILE_ORDER.index(finding.file) if finding.file in FILE_ORDER else len(FILE_ORDER)
    return (file_rank, finding.file, SEVERITIES.index(finding.severity),
            finding.row if finding.row is not None else 0, finding.column or "")


def _summary(tables: CohortTables, media_table: list[dict] | None) -> dict:
    """Counts for the closing lines of `sarco validate`: who is in the cohort and what media
    (per listing, when the media were opened: how many files decode and what they show)."""
    summary: dict = {"participants": 0, "labels": {"1": 0, "0": 0, "unknown": 0}, "cohorts": {}}
    frame = tables.participants
    if frame is not None:
        summary["participants"] = len(frame)
        for cohort, group in frame.groupby("cohort", sort=True):
            labels = group["label"]
            counts = {"participants": len(group), "1": int((labels == "1").sum()),
                      "0": int((labels == "0").sum())}
            counts["unknown"] = counts["participants"] - counts["1"] - counts["0"]
            summary["cohorts"][cohort] = counts
            for key in ("1", "0", "unknown"):
                summary["labels"][key] += counts[key]
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
