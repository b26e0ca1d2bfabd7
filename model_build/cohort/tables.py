"""Reading the cohort's CSV files into DataFrames of text, keeping spreadsheet row numbers.

The csv module reads record by record, so a row number is what a spreadsheet shows (header =
row 1, blank rows counted, a quoted cell spanning lines is still one row). That number becomes
the DataFrame index, so every later check can name the row. Cells are kept as stripped text:
typing is the job of the schema checks, which know what each column should hold.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from model_build.cohort.findings import Finding, Place

ROW_INDEX_NAME = "row"


def read_table(path: Path, required: tuple[str, ...], findings: list[Finding]) -> pd.DataFrame | None:
    """Read one CSV; append what is wrong to ``findings``; ``None`` when it cannot be used."""
    place = Place(path.name)
    text = _read_text(path, place, findings)
    if text is None:
        return None
    records: list[list[str]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for record in reader:
            records.append(record)
    except csv.Error as error:
        findings.append(place.at(len(records) + 1).error(
            f"is not valid CSV ({error})", "check the quotes on this row; save the file as CSV from a spreadsheet"))
        return None
    if not records or not any(cell.strip() for cell in records[0]):
        findings.append(place.at(1).error(
            "has no header row", f"write the header on row 1, at least: {', '.join(required)}"))
        return None
    header = [cell.strip() for cell in records[0]]
    while not header[-1]:  # spreadsheets often export trailing empty header cells
        header.pop()
    if not _header_is_usable(header, required, place, findings):
        return None
    rows, numbers = [], []
    for number, record in enumerate(records[1:], start=2):
        cells = [cell.strip() for cell in record]
        if not any(cells):
            continue
        rows.append(_fit_to_header(cells, len(header), place.at(number), findings))
        numbers.append(number)
    frame = pd.DataFrame(rows, columns=header, index=pd.Index(numbers, name=ROW_INDEX_NAME), dtype=str)
    return frame


def _read_text(path: Path, place: Place, findings: list[Finding]) -> str | None:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        findings.append(place.error("is a folder, not a file", f"replace it with a CSV file named {path.name}"))
        return None
    except OSError as error:
        findings.append(place.error(f"cannot be read ({error.strerror})", "check that the file is readable"))
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        findings.append(place.error(
            f"is not UTF-8 text (byte 0x{raw[error.start]:02x} on line {line})",
            "save it as 'CSV UTF-8' (Excel) or convert it to UTF-8"))
        return None


def _header_is_usable(header: list[str], required: tuple[str, ...], place: Place,
                      findings: list[Finding]) -> bool:
    usable = True
    for position, name in enumerate(header, start=1):
        if not name:
            findings.append(place.at(1, f"#{position}").error(
                f"header cell {position} is empty", "name the column or delete it"))
            usable = False
        elif header.index(name) != position - 1:
            findings.append(place.at(1, name).error(
                f"column {name!r} appears twice in the header", "rename or delete one of them"))
            usable = False
    for name in required:
        if name in header:
            continue
        if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
            hint = "the file looks semicolon- or tab-separated: save it with commas as separators"
        else:
            near = [column for column in header if column.lower().replace(" ", "_") == name]
            hint = f"rename column {near[0]!r} to {name!r}" if near else f"add a column named {name!r}"
        findings.append(place.at(1, name).error(f"required column {name!r} is missing", hint))
        usable = False
    return usable


def _fit_to_header(cells: list[str], width: int, place: Place, findings: list[Finding]) -> list[str]:
    """Rows shorter than the header read as empty trailing cells; longer ones lose nothing silently."""
    if len(cells) > width and any(cells[width:]):
        findings.append(place.error(
            f"row has {len(cells)} cells but the header has {width}",
            "quote cells that contain commas, or add a header for the extra column"))
    elif len(cells) < width:
        findings.append(place.warning(
            f"row has {len(cells)} cells but the header has {width}; the missing ones read as empty",
            "check that no cell was dropped (the values may have shifted columns)"))
    return (cells + [""] * width)[:width]
