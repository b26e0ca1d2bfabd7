"""Checking and typing the cells of one column against its :class:`ColumnSpec`.

An empty cell is a missing value, which is data (a participant without lab values), never an
error. Anything else must parse as the declared type and lie in the declared range; when it
does not, the hint says what the value looks like (another unit, a decimal comma, a word
meaning "missing") so the fix is obvious.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from model_build.cohort.findings import CohortFinding, Place
from model_build.cohort.schema import ColumnSpec
from model_build.cohort.units import likely_units

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_NUMBER_WITH_TEXT = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+))\s*([^\d\s].*)")
_LARGEST_EXACT_INTEGER = 2**53  # beyond it a float no longer holds every whole number
_MISSING_WORDS = {"na", "n/a", "nan", "null", "none", "missing", "unknown", "-", "--", "?", ".", "nd"}


def check_column(frame: pd.DataFrame, spec: ColumnSpec, file: str) -> list[CohortFinding]:
    """One finding per cell of ``spec.name`` that does not fit the spec (empty cells are fine)."""
    findings = []
    for row, raw in frame[spec.name].items():
        if raw:
            problem = cell_problem(raw, spec)
            if problem is not None:
                findings.append(Place(file, int(row), spec.name).error(*problem))
    return findings


def cell_problem(raw: str, spec: ColumnSpec) -> tuple[str, str] | None:
    """``(message, hint)`` when the non-empty cell ``raw`` does not fit ``spec``, else ``None``."""
    if spec.type in ("numeric", "integer"):
        return _number_problem(raw, spec)
    if spec.type == "binary":
        if raw in ("0", "1"):
            return None
        yes = raw.lower() in ("yes", "y", "true", "1.0")
        no = raw.lower() in ("no", "n", "false", "0.0")
        hint = "write 1" if yes else "write 0" if no else "write 1 (yes) or 0 (no), or leave the cell empty"
        return f"{raw!r} is not 0 or 1", hint
    levels = spec.levels or ()
    if levels and raw not in levels:
        same = [level for level in levels if level.lower() == raw.lower()]
        hint = (f"write {same[0]!r} (letter case matters)" if same
                else f"use one of {', '.join(levels)}, or add {raw!r} to levels in schema.yaml")
        return f"{raw!r} is not one of {', '.join(levels)}", hint
    return None


def _number_problem(raw: str, spec: ColumnSpec) -> tuple[str, str] | None:
    unit = f" {spec.unit}" if spec.unit else ""
    if not _NUMBER.fullmatch(raw):
        return f"{raw!r} is not a number", _not_a_number_hint(raw, spec)
    value = float(raw)
    if not math.isfinite(value):
        return f"{raw!r} is not a finite number", f"write the value in{unit or ' the declared unit'}"
    if spec.type == "integer" and not value.is_integer():
        return (f"{raw} is not a whole number but {spec.name} is declared integer",
                "round the value, or declare the column `type: numeric` in schema.yaml")
    if spec.type == "integer" and abs(value) > _LARGEST_EXACT_INTEGER:
        return f"{raw} is too large for an integer column", "check the value, or declare `type: numeric`"
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        low, high = spec.range
        message = f"{raw}{unit} is outside the plausible range [{low:g}, {high:g}]"
        matches = likely_units(value, spec.unit, spec.range, spec.name)
        if matches:
            looks = " or ".join(f"{other} ({raw} {other} = {converted:.4g}{unit})" for other, converted in matches)
            return message, (f"it looks like {looks}: convert the column to{unit}, "
                             "or declare its real unit and range in schema.yaml")
        return message, "check the value; if it is right, widen `range` in schema.yaml"
    return None


def _not_a_number_hint(raw: str, spec: ColumnSpec) -> str:
    if raw.lower() in _MISSING_WORDS:
        return "leave the cell empty for a missing value"
    if _NUMBER.fullmatch(raw.replace(",", ".", 1)):
        return f"write a decimal point: {raw.replace(',', '.', 1)}"
    with_text = _NUMBER_WITH_TEXT.fullmatch(raw)
    if with_text:
        return f"write the number alone ({with_text.group(1)}); the unit belongs in schema.yaml"
    unit = f" in {spec.unit}" if spec.unit else ""
    return f"write a number{unit}, or leave the cell empty when it is unknown"


def typed_column(cells: pd.Series, spec: ColumnSpec) -> pd.Series:
    """The column in its declared type (missing = NA); call only on checked cells."""
    missing = cells == ""
    if spec.type == "numeric":
        return pd.to_numeric(cells.mask(missing), errors="raise").astype("float64")
    if spec.type in ("integer", "binary"):
        return pd.to_numeric(cells.mask(missing), errors="raise").astype("Int64")
    return text_column(cells)


def text_column(cells: pd.Series) -> pd.Series:
    """Free text with empty cells as NA, so ``isna()`` means missing in every column type."""
    return cells.mask(cells == "").astype("string")
