"""AWGS 2019 and EWGSOP2: every published cut-off just below, at and just above, the category
rules over every combination of low / normal / unknown criteria, and `sarco criteria`.

The expected values are written out from the consensus papers (Chen 2020 JAMDA 21:300;
Cruz-Jentoft 2019 Age Ageing 48:16), not read from model_build.criteria, so a wrong number in
the library's table fails here.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from model_build.cli import app
from model_build.cohort.schema import MEASURES
from model_build.criteria import MEASURE_FIELDS, MeasurementError, Measurements, diagnose

# (standard, measure, sex, asmi_method, cut-off, criterion, low just below / at / just above)
LOW_BELOW = (True, False, False)    # "< cut-off"
LOW_AT_OR_BELOW = (True, True, False)  # "<= cut-off"
LOW_AT_OR_ABOVE = (False, True, True)  # ">= cut-off"
LOW_ABOVE = (False, False, True)    # "> cut-off"

CUTOFF_CASES = [
    # AWGS 2019
    ("awgs2019", "grip", "M", None, 28.0, "low_strength", LOW_BELOW),
    ("awgs2019", "grip", "F", None, 18.0, "low_strength", LOW_BELOW),
    *[("awgs2019", "gait_speed", sex, None, 1.0, "low_performance", LOW_BELOW) for sex in "MF"],
    *[("awgs2019", "chair_stand", sex, None, 12.0, "low_performance", LOW_AT_OR_ABOVE) for sex in "MF"],
    *[("awgs2019", "sppb", sex, None, 9, "low_performance", LOW_AT_OR_BELOW) for sex in "MF"],
    ("awgs2019", "asmi", "M", "dxa", 7.0, "low_muscle_quantity", LOW_BELOW),
    ("awgs2019", "asmi", "F", "dxa", 5.4, "low_muscle_quantity", LOW_BELOW),
    ("awgs2019", "asmi", "M", "bia", 7.0, "low_muscle_quantity", LOW_BELOW),
    ("awgs2019", "asmi", "F", "bia", 5.7, "low_muscle_quantity", LOW_BELOW),
    # EWGSOP2
    ("ewgsop2", "grip", "M", None, 27.0, "low_strength", LOW_BELOW),
    ("ewgsop2", "grip", "F", None, 16.0, "low_strength", LOW_BELOW),
    *[("ewgsop2", "chair_stand", sex, None, 15.0, "low_strength", LOW_ABOVE) for sex in "MF"],
    *[("ewgsop2", "asmi", "M", method, 7.0, "low_muscle_quantity", LOW_BELOW) for method in (None, "dxa", "bia")],
    *[("ewgsop2", "asmi", "F", method, 5.5, "low_muscle_quantity", LOW_BELOW) for method in (None, "dxa", "bia")],
    ("ewgsop2", "asm", "M", None, 20.0, "low_muscle_quantity", LOW_BELOW),
    ("ewgsop2", "asm", "F", None, 15.0, "low_muscle_quantity", LOW_BELOW),
    *[("ewgsop2", "gait_speed", sex, None, 0.8, "low_performance", LOW_AT_OR_BELOW) for sex in "MF"],
    *[("ewgsop2", "sppb", sex, None, 8, "low_performance", LOW_AT_OR_BELOW) for sex in "MF"],
    *[("ewgsop2", "tug", sex, None, 20.0, "low_performance", LOW_AT_OR_ABOVE) for sex in "MF"],
]


def _steps(measure: str, cutoff: float) -> tuple[float, float, float]:
    step = 1 if measure == "sppb" else 0.01  # SPPB is whole points
    return round(cutoff - step, 2), cutoff, round(cutoff + step, 2)


@pytest.mark.parametrize("standard, measure, sex, method, cutoff, criterion, expected", CUTOFF_CASES,
                         ids=lambda value: str(value))
def test_every_cutoff_just_below_at_and_just_above(standard, measure, sex, method, cutoff, criterion, expected):
    for value, low in zip(_steps(measure, cutoff), expected):
        measures = {measure: value, "asmi_method": method}
        diagnosis = diagnose(Measurements.from_measures(sex, measures), standard)
        assert diagnosis.criteria["measures"][measure]["low"] is low, (measure, value)
        assert diagnosis.criteria[criterion] is low, (measure, value)


def test_awgs2014_values_are_not_used():
    """AWGS 2014 had grip < 26 kg (men) and gait < 0.8 m/s; 2019 raised both."""
    diagnosis = diagnose(Measurements(sex="M", grip_kg=27.0, gait_speed_m_s=0.9), "awgs2019")
    assert diagnosis.criteria["low_strength"] is True
    assert diagnosis.criteria["low_performance"] is True


def test_awgs_female_asmi_between_dxa_and_bia_cutoffs_depends_on_method():
    for method, low, cutoff in (("dxa", False, "< 5.4 kg/m2 (DXA)"), ("bia", True, "< 5.7 kg/m2 (BIA)")):
        diagnosis = diagnose(Measurements(sex="F", asmi_kg_m2=5.5, asmi_method=method), "awgs2019")
        assert diagnosis.criteria["low_muscle_quantity"] is low
        assert diagnosis.criteria["measures"]["asmi"]["cutoff"] == cutoff


# Truth tables written from the lead's category rules. Each criterion is set through one
# measure: L = low, N = normal, ? = not measured (men; AWGS ASMI by DXA).
AWGS_TABLE = """
S P Q  category             label
L L L  severe_sarcopenia    1
L N L  sarcopenia           1
N L L  sarcopenia           1
L ? L  undetermined         1
? L L  undetermined         1
N N L  no_sarcopenia        0
N ? L  undetermined         -
? N L  undetermined         -
? ? L  undetermined         -
L L N  no_sarcopenia        0
L N N  no_sarcopenia        0
N L N  no_sarcopenia        0
N N N  no_sarcopenia        0
L ? N  no_sarcopenia        0
? L N  no_sarcopenia        0
N ? N  no_sarcopenia        0
? N N  no_sarcopenia        0
? ? N  no_sarcopenia        0
L L ?  possible_sarcopenia  -
L N ?  possible_sarcopenia  -
N L ?  possible_sarcopenia  -
L ? ?  possible_sarcopenia  -
? L ?  possible_sarcopenia  -
N N ?  no_sarcopenia        0
N ? ?  undetermined         -
? N ?  undetermined         -
? ? ?  undetermined         -
"""

EWGSOP2_TABLE = """
S P Q  category             label
N L L  no_sarcopenia        0
N N L  no_sarcopenia        0
N ? L  no_sarcopenia        0
N L N  no_sarcopenia        0
N N N  no_sarcopenia        0
N ? N  no_sarcopenia        0
N L ?  no_sarcopenia        0
N N ?  no_sarcopenia        0
N ? ?  no_sarcopenia        0
L L L  severe_sarcopenia    1
L N L  confirmed_sarcopenia 1
L ? L  undetermined         1
L L N  probable_sarcopenia  0
L N N  probable_sarcopenia  0
L ? N  probable_sarcopenia  0
L L ?  probable_sarcopenia  -
L N ?  probable_sarcopenia  -
L ? ?  probable_sarcopenia  -
? L L  undetermined         -
? N L  undetermined         -
? ? L  undetermined         -
? L N  undetermined         0
? N N  undetermined         0
? ? N  undetermined         0
? L ?  undetermined         -
? N ?  undetermined         -
? ? ?  undetermined         -
"""

# One measure per criterion, for a man: low / normal value.
_PROBES = {"S": ("grip", 20.0, 35.0), "P": ("gait_speed", 0.5, 1.5), "Q": ("asmi", 6.0, 8.0)}


def _rows(table: str) -> list[tuple[str, str, str, str, int | None]]:
    rows = []
    for line in table.strip().splitlines()[1:]:
        s, p, q, category, label = line.split()
        rows.append((s, p, q, category, None if label == "-" else int(label)))
    return rows


def _probe_measurements(s: str, p: str, q: str) -> Measurements:
    values: dict[str, float | str] = {"asmi_method": "dxa"}
    for key, state in zip("SPQ", (s, p, q)):
        measure, low, normal = _PROBES[key]
        if state != "?":
            values[measure] = low if state == "L" else normal
    return Measurements.from_measures("M", values)


@pytest.mark.parametrize("standard, table", [("awgs2019", AWGS_TABLE), ("ewgsop2", EWGSOP2_TABLE)])
def test_truth_tables_cover_all_27_combinations(standard, table):
    assert len({row[:3] for row in _rows(table)}) == 27


@pytest.mark.parametrize("s, p, q, category, label", _rows(AWGS_TABLE))
def test_awgs2019_category_rules(s, p, q, category, label):
    diagnosis = diagnose(_probe_measurements(s, p, q), "awgs2019")
    assert (diagnosis.category, diagnosis.label) == (category, label)


@pytest.mark.parametrize("s, p, q, category, label", _rows(EWGSOP2_TABLE))
def test_ewgsop2_category_rules(s, p, q, category, label):
    diagnosis = diagnose(_probe_measurements(s, p, q), "ewgsop2")
    assert (diagnosis.category, diagnosis.label) == (category, label)


def test_a_criterion_is_low_when_any_present_measure_is_low():
    # AWGS performance: normal gait, normal SPPB, slow chair stand -> low.
    diagnosis = diagnose(Measurements(sex="F", gait_speed_m_s=1.2, sppb=12, chair_stand_s=12.5))
    assert diagnosis.criteria["low_performance"] is True
    # Absent measures do not veto: gait alone, normal -> not low.
    diagnosis = diagnose(Measurements(sex="F", gait_speed_m_s=1.2))
    assert diagnosis.criteria["low_performance"] is False


def test_ewgsop2_chair_stand_is_strength_and_asm_is_quantity():
    diagnosis = diagnose(Measurements(sex="F", chair_stand_s=16, asm_kg=14.0, gait_speed_m_s=1.0), "ewgsop2")
    assert (diagnosis.criteria["low_strength"], diagnosis.criteria["low_muscle_quantity"]) == (True, True)
    assert (diagnosis.category, diagnosis.label) == ("confirmed_sarcopenia", 1)


def test_severity_open_keeps_the_label_and_says_what_to_measure():
    diagnosis = diagnose(Measurements(sex="M", grip_kg=20, asmi_kg_m2=6.0, asmi_method="bia"), "awgs2019")
    assert (diagnosis.category, diagnosis.label) == ("undetermined", 1)
    assert diagnosis.criteria["needed"] == {"low_performance": ["gait_speed", "chair_stand", "sppb"]}
    assert "label 1 is settled" in diagnosis.criteria["reason"]


def test_needed_lists_only_measurements_that_could_change_the_outcome():
    # EWGSOP2, strength unknown, quantity normal: the label is 0 either way, the category hangs
    # on strength only (performance could not change it).
    diagnosis = diagnose(Measurements(sex="M", asmi_kg_m2=8.0), "ewgsop2")
    assert (diagnosis.category, diagnosis.label) == ("undetermined", 0)
    assert diagnosis.criteria["needed"] == {"low_strength": ["grip", "chair_stand"]}
    decided = diagnose(Measurements(sex="M", grip_kg=35, gait_speed_m_s=1.2), "awgs2019")
    assert decided.criteria["needed"] == {}


def test_missing_sex_is_undetermined_but_sex_free_measures_are_still_assessed():
    diagnosis = diagnose(Measurements(grip_kg=10, gait_speed_m_s=0.5, asmi_kg_m2=4.0, asmi_method="dxa"))
    assert (diagnosis.category, diagnosis.label) == ("undetermined", None)
    assert diagnosis.criteria["needed"] == {"sex": ["sex"]}
    assert diagnosis.criteria["measures"]["grip"]["low"] is None
    assert diagnosis.criteria["measures"]["grip"]["cutoff"] == "< 28.0 kg (M), < 18.0 kg (F)"
    assert diagnosis.criteria["low_performance"] is True


def test_measures_the_standard_does_not_use_are_reported_as_ignored():
    diagnosis = diagnose(Measurements(sex="M", grip_kg=35, gait_speed_m_s=1.2, tug_s=25, asm_kg=10))
    assert diagnosis.criteria["ignored"] == ["asm", "tug"]
    assert "ignored" not in diagnose(Measurements(sex="M", tug_s=25), "ewgsop2").criteria


def _amount(high: float) -> st.SearchStrategy[float]:
    return st.floats(0, high, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(standard=st.sampled_from(["awgs2019", "ewgsop2"]), sex=st.sampled_from("MF"),
       method=st.sampled_from(["dxa", "bia"]), grip=_amount(60), gait=_amount(2.5), chair=_amount(40),
       sppb=st.integers(0, 12), asmi=_amount(12), asm=_amount(35), tug=_amount(40))
def test_complete_measurements_always_decide(standard, sex, method, grip, gait, chair, sppb, asmi, asm, tug):
    m = Measurements(sex=sex, grip_kg=grip, gait_speed_m_s=gait, chair_stand_s=chair, sppb=sppb,
                     asmi_kg_m2=asmi, asmi_method=method, asm_kg=asm, tug_s=tug)
    diagnosis = diagnose(m, standard)
    assert diagnosis.category != "undetermined" and diagnosis.label in (0, 1)
    assert diagnosis.criteria["needed"] == {}


@pytest.mark.parametrize("kwargs, field", [
    ({"grip_kg": -1.0}, "grip_kg"),
    ({"gait_speed_m_s": math.nan}, "gait_speed_m_s"),
    ({"chair_stand_s": math.inf}, "chair_stand_s"),
    ({"asm_kg": "14"}, "asm_kg"),
    ({"tug_s": True}, "tug_s"),
    ({"sex": "m"}, "sex"),
    ({"sex": "female"}, "sex"),
    ({"asmi_method": "ct"}, "asmi_method"),
    ({"sppb": 13}, "sppb"),
    ({"sppb": 9.5}, "sppb"),
])
def test_invalid_measurements_name_the_field_and_a_fix(kwargs, field):
    with pytest.raises(MeasurementError) as raised:
        Measurements(**kwargs)
    assert raised.value.field == field
    assert "fix:" in str(raised.value)


def test_awgs_asmi_needs_its_method_but_ewgsop2_does_not():
    m = Measurements(sex="F", asmi_kg_m2=5.5)
    with pytest.raises(MeasurementError) as raised:
        diagnose(m, "awgs2019")
    assert raised.value.field == "asmi_method"
    assert diagnose(m, "ewgsop2").criteria["low_muscle_quantity"] is False


def test_unknown_standard_and_unknown_measure_are_rejected():
    with pytest.raises(ValueError, match="awgs2019, ewgsop2"):
        diagnose(Measurements(), "awgs2014")
    with pytest.raises(MeasurementError, match="not a known measure"):
        Measurements.from_measures("M", {"handgrip": 20})


def test_measure_names_match_the_schema_and_the_dataclass():
    assert set(MEASURE_FIELDS) == set(MEASURES)
    assert set(MEASURE_FIELDS.values()) <= set(Measurements.__dataclass_fields__)


# --- sarco criteria ---------------------------------------------------------------------------

runner = CliRunner()
EXAMPLE = ["criteria", "--standard", "awgs2019", "--sex", "F", "--grip", "16.5", "--gait-speed", "0.9",
           "--chair-stand", "13", "--asmi", "5.2", "--asmi-method", "bia", "--json"]


def test_cli_example_from_the_issue():
    result = runner.invoke(app, EXAMPLE)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert list(out) == ["standard", "category", "label", "criteria"]
    # F: grip 16.5 < 18 low; gait 0.9 < 1.0 and chair 13 >= 12 low; BIA ASMI 5.2 < 5.7 low.
    assert (out["standard"], out["category"], out["label"]) == ("awgs2019", "severe_sarcopenia", 1)
    criteria = out["criteria"]
    assert (criteria["low_strength"], criteria["low_performance"], criteria["low_muscle_quantity"]) == (True,) * 3
    assert criteria["measures"]["asmi"] == {"value": 5.2, "cutoff": "< 5.7 kg/m2 (BIA)", "low": True}
    assert criteria["measures"]["chair_stand"] == {"value": 13.0, "cutoff": ">= 12.0 s", "low": True}
    assert criteria["measures"]["sppb"] == {"value": None, "cutoff": "<= 9 points", "low": None}


def test_cli_null_label_is_json_null_and_options_ignore_case():
    result = runner.invoke(app, ["criteria", "--standard", "ewgsop2", "--sex", "m", "--grip", "20", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["category"], out["label"]) == ("probable_sarcopenia", None)


def test_cli_table_shows_category_and_label():
    result = runner.invoke(app, EXAMPLE[:-1])
    assert result.exit_code == 0, result.output
    assert "severe_sarcopenia" in result.stdout and "label: 1" in result.stdout


@pytest.mark.parametrize("args, flag", [
    (["--sex", "F", "--grip", "-3"], "--grip"),
    (["--sex", "F", "--gait-speed", "nan"], "--gait-speed"),
    (["--sex", "F", "--sppb", "14"], "--sppb"),
    (["--sex", "F", "--asmi", "5.5"], "--asmi-method"),
    (["--sex", "X"], "--sex"),
    (["--grip", "strong"], "--grip"),
    (["--standard", "awgs2014"], "--standard"),
])
def test_cli_bad_values_exit_2_without_traceback(args, flag):
    result = runner.invoke(app, ["criteria", *args])
    assert result.exit_code == 2
    assert flag in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
