"""``schema.yaml``: what each participant column is (model input, reference measurement, other).

Parsing is strict and every problem is reported with the key path and a fix hint, because a
wrong role (a reference measurement used as a model input) would silently leak the label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sarco_core.errors import SarcoError

ROLES = ("clinical", "lab", "reference", "other")
TYPES = ("numeric", "integer", "categorical", "binary")
LABEL_DEFINITIONS = ("awgs2019", "ewgsop2", "given")
MEASURES = ("grip", "gait_speed", "chair_stand", "sppb", "asmi", "asmi_method", "asm", "tug")
FORMAT_VERSION = 1


class SchemaError(SarcoError, ValueError):
    """schema.yaml cannot be used; the message names the file, the key and a fix."""


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    role: str
    type: str
    unit: str | None = None
    range: tuple[float, float] | None = None
    levels: tuple[str, ...] | None = None
    measure: str | None = None


@dataclass(frozen=True)
class Schema:
    label_definition: str
    columns: dict[str, ColumnSpec] = field(default_factory=dict)

    def columns_with_role(self, role: str) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.role == role]

    def measure_columns(self) -> dict[str, str]:
        """Map of measure name (``grip``...) to the participants.csv column holding it."""
        return {spec.measure: name for name, spec in self.columns.items() if spec.measure}

    def to_dict(self) -> dict:
        columns = {}
        for name, spec in self.columns.items():
            entry: dict = {"role": spec.role, "type": spec.type}
            if spec.measure:
                entry["measure"] = spec.measure
            if spec.unit:
                entry["unit"] = spec.unit
            if spec.range is not None:
                entry["range"] = [spec.range[0], spec.range[1]]
            if spec.levels is not None:
                entry["levels"] = list(spec.levels)
            columns[name] = entry
        return {
            "format_version": FORMAT_VERSION,
            "label": {"definition": self.label_definition},
            "columns": columns,
        }

    def write(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def _column_spec(path: Path, name: str, raw: object) -> ColumnSpec:
    where = f"{path}: columns.{name}"
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: expected a mapping with role and type; "
                          "fix: write e.g. `{role: lab, type: numeric, unit: g/L, range: [20, 55]}`")
    role = raw.get("role")
    if role not in ROLES:
        raise SchemaError(f"{where}.role is {role!r}; fix: use one of {', '.join(ROLES)}")
    kind = raw.get("type", "numeric")
    if kind not in TYPES:
        raise SchemaError(f"{where}.type is {kind!r}; fix: use one of {', '.join(TYPES)}")
    measure = raw.get("measure")
    if measure is not None and (role != "reference" or measure not in MEASURES):
        raise SchemaError(f"{where}.measure is {measure!r}; fix: only reference columns take a "
                          f"measure, one of {', '.join(MEASURES)}")
    bounds = raw.get("range")
    if bounds is not None:
        if (not isinstance(bounds, (list, tuple)) or len(bounds) != 2
                or not all(isinstance(b, (int, float)) and not math.isnan(b) for b in bounds)
                or bounds[0] > bounds[1]):
            raise SchemaError(f"{where}.range is {bounds!r}; fix: write [low, high] with low <= high")
        bounds = (float(bounds[0]), float(bounds[1]))
    levels = raw.get("levels")
    if levels is not None:
        if not isinstance(levels, (list, tuple)) or not levels:
            raise SchemaError(f"{where}.levels is {levels!r}; fix: write a list such as [M, F]")
        levels = tuple(str(level) for level in levels)
    unit = raw.get("unit")
    return ColumnSpec(name=name, role=role, type=kind, unit=None if unit is None else str(unit),
                      range=bounds, levels=levels, measure=measure)


def load_schema(path: str | Path) -> Schema:
    """Read and check ``schema.yaml``. Raises :class:`SchemaError` naming the key at fault."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"{path}: not found; fix: write a schema.yaml (see docs/cohort-format.md)") from None
    except UnicodeDecodeError:
        raise SchemaError(f"{path}: not UTF-8 text; fix: save it as UTF-8") from None
    except OSError as error:
        raise SchemaError(f"{path}: cannot be read ({error.strerror}); fix: make it a readable file") from None
    except (yaml.YAMLError, ValueError) as error:  # PyYAML raises ValueError for e.g. `2001-13-01`
        raise SchemaError(f"{path}: not valid YAML ({error}); fix: check indentation and colons") from None
    if not isinstance(raw, dict):
        raise SchemaError(f"{path}: expected a mapping with `label` and `columns`")
    version = raw.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise SchemaError(f"{path}: format_version {version!r} is not supported; fix: use {FORMAT_VERSION}")
    label = raw.get("label") or {}
    if not isinstance(label, dict):
        raise SchemaError(f"{path}: label is {label!r}; fix: write `label: {{definition: given}}`")
    definition = label.get("definition", "given")
    if definition not in LABEL_DEFINITIONS:
        raise SchemaError(f"{path}: label.definition is {definition!r}; "
                          f"fix: use one of {', '.join(LABEL_DEFINITIONS)}")
    columns_raw = raw.get("columns") or {}
    if not isinstance(columns_raw, dict):
        raise SchemaError(f"{path}: columns must be a mapping of column name to its description")
    columns = {str(name): _column_spec(path, str(name), spec) for name, spec in columns_raw.items()}
    measures = [spec.measure for spec in columns.values() if spec.measure]
    repeated = sorted({m for m in measures if measures.count(m) > 1})
    if repeated:
        raise SchemaError(f"{path}: measure {repeated[0]!r} is given to two columns; fix: keep one")
    return Schema(label_definition=definition, columns=columns)
