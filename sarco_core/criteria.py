"""Diagnostic criteria for sarcopenia: AWGS 2019 and EWGSOP2, with the published cut-offs.

Sources: Chen LK et al., Asian Working Group for Sarcopenia: 2019 Consensus Update, JAMDA
21(3):300-307, 2020 (not the 2014 values); Cruz-Jentoft AJ et al., Sarcopenia: revised European
consensus on definition and diagnosis (EWGSOP2), Age Ageing 48(1):16-31, 2019.

One copy for every stage (``sarco label`` and the synthetic cohort in model_build, the
device's calculator in edge_app), so the light package holds it: the standard library only.

Screening teams use this at the point of care, so nothing is ever guessed: each criterion is
three-valued (low / not low / unknown) and a category that a missing measurement could change is
``undetermined``. The label (1 sarcopenia, 0 not) is still given whenever it is settled, because
training only needs the label even when the severity grade is open. The cut-offs are one table
(``CUTOFFS``) so that the code, the tests and docs/criteria.md read the same numbers.
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator
from dataclasses import asdict, dataclass, fields

from sarco_core.errors import SarcoError

STANDARDS = ("awgs2019", "ewgsop2")
SEXES = ("M", "F")
ASMI_METHODS = ("dxa", "bia")
CRITERIA = ("low_strength", "low_performance", "low_muscle_quantity")
CATEGORIES = ("no_sarcopenia", "possible_sarcopenia", "probable_sarcopenia", "sarcopenia",
              "confirmed_sarcopenia", "severe_sarcopenia", "undetermined")

# The one place where schema.yaml's `measure:` names meet the Measurements fields.
MEASURE_FIELDS = {
    "grip": "grip_kg",
    "gait_speed": "gait_speed_m_s",
    "chair_stand": "chair_stand_s",
    "sppb": "sppb",
    "asmi": "asmi_kg_m2",
    "asmi_method": "asmi_method",
    "asm": "asm_kg",
    "tug": "tug_s",
}


class MeasurementError(SarcoError, ValueError):
    """A measurement that cannot be used; ``field`` is the Measurements field at fault."""

    def __init__(self, field: str, value: object, problem: str, fix: str) -> None:
        self.field, self.value, self.problem, self.fix = field, value, problem, fix
        super().__init__(f"{field} = {value!r}: {problem}; fix: {fix}")


@dataclass(frozen=True)
class Cutoff:
    """One published threshold: the measurement is *low* when ``value <op> threshold``."""

    measure: str
    op: str
    male: float  # int for SPPB points, so that descriptions read "<= 9 points"
    female: float
    unit: str
    method: str | None = None  # ASMI method the threshold belongs to (AWGS only); None = any

    def threshold(self, sex: str) -> float:
        return self.male if sex == "M" else self.female

    def is_low(self, value: float, sex: str | None) -> bool | None:
        if sex is None and self.male != self.female:
            return None
        return _OPERATORS[self.op](value, self.threshold(sex or "M"))

    def describe(self, sex: str | None) -> str:
        method = f" ({self.method.upper()})" if self.method else ""
        if sex is None and self.male != self.female:
            return f"{self.op} {self.male} {self.unit} (M), {self.op} {self.female} {self.unit} (F){method}"
        return f"{self.op} {self.threshold(sex or 'M')} {self.unit}{method}"


_OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}

CUTOFFS: dict[str, dict[str, tuple[Cutoff, ...]]] = {
    "awgs2019": {
        "low_strength": (Cutoff("grip", "<", 28.0, 18.0, "kg"),),
        "low_performance": (
            Cutoff("gait_speed", "<", 1.0, 1.0, "m/s"),
            Cutoff("chair_stand", ">=", 12.0, 12.0, "s"),
            Cutoff("sppb", "<=", 9, 9, "points"),
        ),
        "low_muscle_quantity": (
            Cutoff("asmi", "<", 7.0, 5.4, "kg/m2", method="dxa"),
            Cutoff("asmi", "<", 7.0, 5.7, "kg/m2", method="bia"),
        ),
    },
    "ewgsop2": {
        "low_strength": (
            Cutoff("grip", "<", 27.0, 16.0, "kg"),
            Cutoff("chair_stand", ">", 15.0, 15.0, "s"),
        ),
        "low_performance": (
            Cutoff("gait_speed", "<=", 0.8, 0.8, "m/s"),
            Cutoff("sppb", "<=", 8, 8, "points"),
            Cutoff("tug", ">=", 20.0, 20.0, "s"),
        ),
        "low_muscle_quantity": (
            Cutoff("asmi", "<", 7.0, 5.5, "kg/m2"),
            Cutoff("asm", "<", 20.0, 15.0, "kg"),
        ),
    },
}


@dataclass(frozen=True)
class Measurements:
    """One person's reference measurements; None = not measured. Checked on construction."""

    sex: str | None = None            # "M" or "F"
    grip_kg: float | None = None      # handgrip strength
    gait_speed_m_s: float | None = None
    chair_stand_s: float | None = None  # five rises
    sppb: float | None = None         # Short Physical Performance Battery, 0-12 points
    asmi_kg_m2: float | None = None   # appendicular skeletal muscle mass / height²
    asmi_method: str | None = None    # "dxa" or "bia" (AWGS cut-off for women differs)
    asm_kg: float | None = None       # appendicular skeletal muscle mass
    tug_s: float | None = None        # timed up-and-go

    def __post_init__(self) -> None:
        if self.sex is not None and self.sex not in SEXES:
            raise MeasurementError("sex", self.sex, "unknown sex", "write M or F, or leave it empty")
        if self.asmi_method is not None and self.asmi_method not in ASMI_METHODS:
            raise MeasurementError("asmi_method", self.asmi_method, "unknown ASMI method",
                                   "write dxa or bia (lower case)")
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name in ("sex", "asmi_method") or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise MeasurementError(spec.name, value, "not a number", "write a plain number")
            if not math.isfinite(value) or value < 0:
                raise MeasurementError(spec.name, value, "must be a finite number >= 0",
                                       "check the value and its unit, or leave it empty if not measured")
        if self.sppb is not None and (self.sppb > 12 or not float(self.sppb).is_integer()):
            raise MeasurementError("sppb", self.sppb, "SPPB is a whole number of points from 0 to 12",
                                   "enter the total SPPB score")

    def value_of(self, measure: str) -> float | str | None:
        """Value of a schema measure name (``grip``, ``asmi``...)."""
        return getattr(self, MEASURE_FIELDS[measure])

    @classmethod
    def from_measures(cls, sex: str | None, values: dict[str, float | str | None]) -> Measurements:
        """Build from schema measure names, e.g. ``{"grip": 16.5, "asmi_method": "bia"}``."""
        unknown = sorted(set(values) - set(MEASURE_FIELDS))
        if unknown:
            raise MeasurementError(unknown[0], values[unknown[0]], "not a known measure",
                                   f"use one of {', '.join(MEASURE_FIELDS)}")
        return cls(sex=sex, **{MEASURE_FIELDS[name]: value for name, value in values.items()})


@dataclass(frozen=True)
class Diagnosis:
    """The category, the label (1, 0 or None = not determined) and how they were reached."""

    standard: str
    category: str
    label: int | None
    criteria: dict

    def to_dict(self) -> dict:
        return asdict(self)


def diagnose(m: Measurements, standard: str = "awgs2019") -> Diagnosis:
    """Apply one standard to one person's measurements.

    ``criteria`` holds each criterion (True low / False not low / None unknown), every measure
    with its value, the cut-off applied and whether it is low, the measurements still ``needed``
    to settle the category, and a one-line ``reason``.
    """
    if standard not in STANDARDS:
        raise ValueError(f"unknown standard {standard!r}; fix: use one of {', '.join(STANDARDS)}")
    if standard == "awgs2019" and m.asmi_kg_m2 is not None and m.asmi_method is None:
        raise MeasurementError("asmi_method", None, "AWGS 2019 ASMI cut-offs differ for DXA and BIA",
                               "give the ASMI method (dxa or bia)")
    measures: dict[str, dict] = {}
    results: dict[str, bool | None] = {}
    for criterion, cutoffs in CUTOFFS[standard].items():
        assessed = []
        for cutoff in cutoffs:
            if cutoff.method is not None and m.asmi_method not in (None, cutoff.method):
                continue
            value = m.value_of(cutoff.measure)
            low = None if value is None else cutoff.is_low(value, m.sex)
            if cutoff.measure in measures:  # AWGS ASMI not measured: show both methods' cut-offs
                measures[cutoff.measure]["cutoff"] += "; " + cutoff.describe(m.sex)
            else:
                measures[cutoff.measure] = {"value": value, "cutoff": cutoff.describe(m.sex), "low": low}
            if value is not None:
                assessed.append(low)
        results[criterion] = _any_low(assessed)
    decide = _DECISIONS[standard]
    if m.sex is None:
        category, label, needed = "undetermined", None, {"sex": ["sex"]}
    else:
        category, label = decide(**results)
        needed = {criterion: list(dict.fromkeys(c.measure for c in CUTOFFS[standard][criterion]))
                  for criterion in _needed_criteria(decide, results)}
    ignored = [name for name in MEASURE_FIELDS
               if name not in measures and name != "asmi_method" and m.value_of(name) is not None]
    criteria = {**results, "measures": measures, "needed": needed,
                "reason": _reason(category, label, needed)}
    if ignored:
        criteria["ignored"] = ignored
    return Diagnosis(standard=standard, category=category, label=label, criteria=criteria)


def _any_low(assessed: list[bool | None]) -> bool | None:
    """Kleene OR over the measures that were taken: an absent measure neither helps nor vetoes."""
    if True in assessed:
        return True
    if not assessed or None in assessed:
        return None
    return False


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _as_label(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _awgs2019(low_strength: bool | None, low_performance: bool | None,
              low_muscle_quantity: bool | None) -> tuple[str, int | None]:
    """Sarcopenia = low ASMI and (low grip or low performance); severe = all three."""
    weak_or_slow = _or(low_strength, low_performance)
    label = _as_label(_and(low_muscle_quantity, weak_or_slow))
    if label == 0:
        return "no_sarcopenia", 0
    if label == 1:
        severe = _and(low_strength, low_performance)
        if severe is None:
            return "undetermined", 1
        return ("severe_sarcopenia" if severe else "sarcopenia"), 1
    if low_muscle_quantity is None and weak_or_slow:
        return "possible_sarcopenia", None
    return "undetermined", None


def _ewgsop2(low_strength: bool | None, low_performance: bool | None,
             low_muscle_quantity: bool | None) -> tuple[str, int | None]:
    """Probable = low strength; confirmed = + low quantity; severe = + low performance."""
    label = _as_label(_and(low_strength, low_muscle_quantity))
    if low_strength is None:
        return "undetermined", label
    if not low_strength:
        return "no_sarcopenia", 0
    if not low_muscle_quantity:  # None (not measured) or False (measured, normal)
        return "probable_sarcopenia", label
    if low_performance is None:
        return "undetermined", 1
    return ("severe_sarcopenia" if low_performance else "confirmed_sarcopenia"), 1


def _needed_criteria(decide, results: dict[str, bool | None]) -> list[str]:
    """Unknown criteria that would change the outcome for some value of the other unknowns."""
    unknown = [name for name, low in results.items() if low is None]
    needed = []
    for name in unknown:
        others = [other for other in unknown if other != name]
        for values in itertools.product((True, False), repeat=len(others)):
            filled = {**results, **dict(zip(others, values))}
            if decide(**{**filled, name: True}) != decide(**{**filled, name: False}):
                needed.append(name)
                break
    return needed


def _reason(category: str, label: int | None, needed: dict[str, list[str]]) -> str:
    """One line for the screening team: what was found, and what to measure next."""
    if "sex" in needed:
        return "sex is needed: the cut-offs differ for men and women"
    todo = "; and ".join(", ".join(measures[:-1]) + (" or " if len(measures) > 1 else "") + measures[-1]
                         for measures in needed.values())
    if category == "undetermined" and label is not None:
        return f"label {label} is settled but the category is not; to grade it measure {todo}"
    if category == "undetermined":
        return f"not enough measurements to decide; measure {todo}"
    if label is None:
        return f"{category.replace('_', ' ')}: needs confirmation; measure {todo}"
    return f"{category.replace('_', ' ')} by the published cut-offs"


_DECISIONS = {"awgs2019": _awgs2019, "ewgsop2": _ewgsop2}
