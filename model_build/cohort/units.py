"""Common alternative units, used only to explain an out-of-range value.

A value outside its declared range is most often a value in another unit (albumin 4.1 in a g/L
column is 4.1 g/dL). For each declared unit the table lists the units the same quantity is
often written in and the factor that converts them (``declared = other * factor``). Molar and
mass units differ per analyte, so those entries apply only to columns whose name contains one
of ``analytes``; plain mass-concentration, length, weight and time factors apply to any column.
"""

from __future__ import annotations

from dataclasses import dataclass

_HEMOGLOBIN = ("hb", "hemoglobin", "haemoglobin")
_CREATININE = ("creat",)
_VITAMIN_D = ("vit", "25oh", "25_oh", "calcidiol")
_GLUCOSE = ("gluc",)


@dataclass(frozen=True)
class Alternative:
    """A unit a value declared in some unit may really be in: ``declared = value * factor``."""

    unit: str
    factor: float
    analytes: tuple[str, ...] = ()

    def applies_to(self, column: str) -> bool:
        name = column.lower()
        return not self.analytes or any(fragment in name for fragment in self.analytes)


ALTERNATIVES: dict[str, tuple[Alternative, ...]] = {
    "g/l": (Alternative("g/dL", 10.0),),
    "g/dl": (Alternative("g/L", 0.1), Alternative("mmol/L", 1.611, _HEMOGLOBIN)),
    "mg/l": (Alternative("mg/dL", 10.0),),
    "mg/dl": (Alternative("mg/L", 0.1), Alternative("umol/L", 1 / 88.4, _CREATININE),
              Alternative("mmol/L", 18.016, _GLUCOSE)),
    "umol/l": (Alternative("mg/dL", 88.4, _CREATININE),),
    "nmol/l": (Alternative("ng/mL", 2.496, _VITAMIN_D),),
    "ng/ml": (Alternative("nmol/L", 1 / 2.496, _VITAMIN_D),),
    "mmol/l": (Alternative("mg/dL", 1 / 18.016, _GLUCOSE), Alternative("g/dL", 1 / 1.611, _HEMOGLOBIN)),
    "cm": (Alternative("m", 100.0), Alternative("in", 2.54), Alternative("mm", 0.1)),
    "m": (Alternative("cm", 0.01),),
    "mm": (Alternative("cm", 10.0),),
    "kg": (Alternative("lb", 0.45359237), Alternative("g", 0.001)),
    "lb": (Alternative("kg", 1 / 0.45359237),),
    "m/s": (Alternative("cm/s", 0.01), Alternative("km/h", 1 / 3.6)),
    "s": (Alternative("ms", 0.001), Alternative("min", 60.0)),
    "years": (Alternative("months", 1 / 12),),
}


def normalise_unit(unit: str) -> str:
    """Spelling-insensitive key: ``µmol/L``, ``umol/l`` and ``μmol / L`` are the same unit."""
    key = unit.strip().lower().replace(" ", "").replace("µ", "u").replace("μ", "u")
    return {"year": "years", "y": "years", "sec": "s", "kgs": "kg", "lbs": "lb"}.get(key, key)


def likely_units(value: float, unit: str | None, bounds: tuple[float, float], column: str) -> list[tuple[str, float]]:
    """Units in which ``value`` would land inside ``bounds``, each with the converted value."""
    if unit is None:
        return []
    low, high = bounds
    matches = []
    for alternative in ALTERNATIVES.get(normalise_unit(unit), ()):
        converted = value * alternative.factor
        if alternative.applies_to(column) and low <= converted <= high:
            matches.append((alternative.unit, converted))
    return matches
