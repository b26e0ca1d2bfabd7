"""Reading the cohort's CSV files record by record, keeping spreadsheet row numbers.

The csv module reads record by record, so a row number is what a spreadsheet shows (header =
row 1, blank rows counted, a quoted cell spanning lines is still one row). The file is read as
a stream: :func:`open_table` hands out one row at a time, so a participants.csv of a million
rows is validated in bounded memory (the checks keep what they need, not the cells);
:func:`read_table` collects the rows into a DataFrame, indexed by row number, where every row
is needed anyway (the media listings, or participants for training). Cells are kept as
stripped text: typing is the job of the schema checks, which know what each column should hold.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from model_build.cohort.findings import CohortFinding, Place
from model_build.cohort.paths import CohortPathError, cohort_file
from sarco_core.errors import SarcoError

ROW_INDEX_NAME = "row"


class TableError(SarcoError):
    """The file cannot be used as a table; ``findings`` say why. Raised before the first row
    (no file, bad header) or part-way (bad CSV or bad UTF-8 further down)."""

    def __init__(self, findings: list[CohortFinding]) -> None:
        super().__init__("; ".join(finding.message for finding in findings))
        self.findings = findings


@dataclass
class Table:
    """An open CSV file: its checked ``header``, then :meth:`rows`. ``findings`` gathers the
    rows' own problems (too many or too few cells) as they are read."""

    place: Place
    header: list[str]
    path: Path
    _records: Iterator[list[str]]
    findings: list[CohortFinding] = field(default_factory=list)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """``(spreadsheet row, cells)`` of each non-blank row, the cells fitted to the header.
        Raises :class:`TableError` when a later part of the file is not CSV or not UTF-8."""
        number = 1
        try:
            for number, record in enumerate(self._records, start=2):
                cells = [cell.strip() for cell in record]
                if any(cells):
                    yield number, _fit_to_header(cells, len(self.header), self.place.at(number),
                                                 self.findings)
        except csv.Error as error:
            raise TableError([_not_csv(self.place.at(number + 1), error)]) from None
        except UnicodeDecodeError:
            raise TableError([_not_utf8(self.path, self.place)]) from None


@contextmanager
def open_table(root: Path, name: str, required: tuple[str, ...]) -> Iterator[Table]:
    """Open the cohort file ``name`` and check its header; raises :class:`TableError` when it
    cannot be used (missing, outside the cohort, not a file, no usable header)."""
    place = Place(name)
    try:
        path = cohort_file(root, name, folder_hint=f"replace it with a CSV file named {name}")
        handle = path.open(encoding="utf-8-sig", newline="")
    except CohortPathError as error:
        raise TableError([place.error(error.message, error.hint)]) from None
    except OSError as error:
        raise TableError([place.error(f"cannot be read ({error.strerror})",
                                      "check that the file is readable")]) from None
    with handle:
        records = csv.reader(handle)
        try:
            first = next(records, [])
        except csv.Error as error:
            raise TableError([_not_csv(place.at(1), error)]) from None
        except UnicodeDecodeError:
            raise TableError([_not_utf8(path, place)]) from None
        yield Table(place, _header(first, required, place), path, records)


def read_table(root: Path, name: str, required: tuple[str, ...],
               findings: list[CohortFinding]) -> pd.DataFrame | None:
    """The whole file as a DataFrame of text; append what is wrong to ``findings``; ``None``
    when it cannot be used."""
    try:
        with open_table(root, name, required) as table:
            numbers, rows = [], []
            for number, cells in table.rows():
                numbers.append(number)
                rows.append(cells)
    except TableError as error:
        findings += error.findings
        return None
    findings += table.findings
    return as_frame(table.header, numbers, rows)


def as_frame(header: list[str], numbers: list[int], rows: list[list[str]]) -> pd.DataFrame:
    """Rows read by :meth:`Table.rows` as a DataFrame of text indexed by their row numbers."""
    return pd.DataFrame(rows, columns=header, index=pd.Index(numbers, name=ROW_INDEX_NAME), dtype=str)


def _not_csv(place: Place, error: csv.Error) -> CohortFinding:
    return place.error(f"is not valid CSV ({error})",
                       "check the quotes on this row; save the file as CSV from a spreadsheet")


def _not_utf8(path: Path, place: Place) -> CohortFinding:
    """Name the first byte that is not UTF-8 and its line. Found by a second pass, line by
    line: the streaming decoder only knows the error's place within its read-ahead chunk.
    A line break never occurs inside a UTF-8 sequence, so decoding lines alone is exact."""
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                return place.error(
                    f"is not UTF-8 text (byte 0x{line[error.start]:02x} on line {line_number})",
                    "save it as 'CSV UTF-8' (Excel) or convert it to UTF-8")
    return place.error("is not UTF-8 text", "save it as 'CSV UTF-8' (Excel) or convert it to UTF-8")


def _header(first: list[str], required: tuple[str, ...], place: Place) -> list[str]:
    if not any(cell.strip() for cell in first):
        raise TableError([place.at(1).error(
            "has no header row", f"write the header on row 1, at least: {', '.join(required)}")])
    header = [cell.strip() for cell in first]
    while not header[-1]:  # spreadsheets often export trailing empty header cells
        header.pop()
    problems = _header_problems(header, required, place)
    if problems:
        raise TableError(problems)
    return header


def _header_problems(header: list[str], required: tuple[str, ...], place: Place) -> list[CohortFinding]:
    problems = []
    for position, name in enumerate(header, start=1):
        if not name:
            problems.append(place.at(1, f"#{position}").error(
                f"header cell {position} is empty", "name the column or delete it"))
        elif header.index(name) != position - 1:
            problems.append(place.at(1, name).error(
                f"column {name!r} appears twice in the header", "rename or delete one of them"))
    for name in required:
        if name in header:
            continue
        if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
            hint = "the file looks semicolon- or tab-separated: save it with commas as separators"
        else:
            near = [column for column in header if column.lower().replace(" ", "_") == name]
            hint = f"rename column {near[0]!r} to {name!r}" if near else f"add a column named {name!r}"
        problems.append(place.at(1, name).error(f"required column {name!r} is missing", hint))
    return problems


def _fit_to_header(cells: list[str], width: int, place: Place, findings: list[CohortFinding]) -> list[str]:
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
