"""units.likely_units: which other unit an out-of-range value is probably written in."""

from __future__ import annotations

import pytest

from model_build.cohort.units import likely_units, normalise_unit


@pytest.mark.parametrize(("value", "unit", "bounds", "column", "expected_unit", "expected_value"), [
    (4.1, "g/L", (20, 55), "albumin", "g/dL", 41.0),
    (13.5, "g/L", (80, 200), "hemoglobin", "g/dL", 135.0),
    (1.1, "umol/L", (20, 500), "creatinine", "mg/dL", 97.24),
    (12.0, "nmol/L", (25, 250), "vitamin_d", "ng/mL", 29.952),
    (1.72, "cm", (120, 210), "height", "m", 172.0),
    (150.0, "kg", (30, 150), "weight", "lb", 68.04),
    (2.5, "mg/L", (3, 300), "crp", "mg/dL", 25.0),
])
def test_likely_units(value, unit, bounds, column, expected_unit, expected_value):
    units = dict(likely_units(value, unit, bounds, column))
    assert units[expected_unit] == pytest.approx(expected_value, rel=1e-3)


def test_analyte_specific_factor_applies_only_to_its_analyte():
    assert likely_units(1.1, "umol/L", (20, 500), "creatinine")
    assert likely_units(1.1, "umol/L", (20, 500), "bilirubin") == []


def test_no_suggestion_when_no_factor_lands_in_range():
    assert likely_units(-3.0, "g/L", (20, 55), "albumin") == []
    assert likely_units(4.1, None, (20, 55), "albumin") == []


def test_unit_spellings_are_equivalent():
    assert normalise_unit("µmol/L") == normalise_unit("umol / l") == normalise_unit("μmol/L") == "umol/l"
