"""Clinical and lab columns: realistic units drawn from the latents, plus missing values.

Each observed value is a monotone function of its modality's latents, of sex, and of noise that
is independent of the label and of every latent (measurement error, kidney function, season).
So the observed columns carry no information the latents lack, and the oracle computed from
the latents stays an upper bound for any model of these columns. A value is never a function
of another modality's latents (that would leak, say, image information into the lab columns).

Missing values are MCAR: which participants lack a value, and which values, is drawn
independently of everything else, so missingness carries no signal either; some of them lack the
whole lab table (:func:`drop_whole_lab`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from model_build.cohort.schema import ColumnSpec
from model_build.synth.latent import LATENT_COLUMNS

FEMALE_SHARE = 0.55

# role, type, unit, range, decimals (None = integer / categorical)
_COLUMNS: tuple[tuple[str, str, str, str | None, tuple[float, float] | None, int | None], ...] = (
    ("age", "clinical", "integer", "years", (60, 100), None),
    ("bmi", "clinical", "numeric", "kg/m2", (13, 45), 1),
    ("calf_circumference_cm", "clinical", "numeric", "cm", (20, 50), 1),
    ("diabetes", "clinical", "binary", None, None, None),
    ("hypertension", "clinical", "binary", None, None, None),
    ("heart_disease", "clinical", "binary", None, None, None),
    ("copd", "clinical", "binary", None, None, None),
    ("n_medications", "clinical", "integer", "count", (0, 20), None),
    ("falls_past_year", "clinical", "integer", "count", (0, 10), None),
    ("albumin", "lab", "numeric", "g/L", (20, 55), 1),
    ("prealbumin", "lab", "numeric", "mg/L", (50, 450), None),
    ("hemoglobin", "lab", "numeric", "g/L", (70, 190), None),
    ("creatinine", "lab", "numeric", "umol/L", (25, 400), None),
    ("cystatin_c", "lab", "numeric", "mg/L", (0.4, 4.0), 2),
    ("vitamin_d_25oh", "lab", "numeric", "nmol/L", (5, 250), 1),
    ("crp", "lab", "numeric", "mg/L", (0.1, 200), 1),
)

TABULAR_SCHEMA: dict[str, ColumnSpec] = {
    "sex": ColumnSpec("sex", role="clinical", type="categorical", levels=("M", "F")),
    **{name: ColumnSpec(name, role=role, type=kind, unit=unit,
                        range=None if bounds is None else (float(bounds[0]), float(bounds[1])))
       for name, role, kind, unit, bounds, _ in _COLUMNS},
}
"""schema.yaml entries of the clinical and lab columns (sex and age included)."""

_DECIMALS = {name: decimals for name, _, _, _, _, decimals in _COLUMNS}

# How often each column is the missing one (labs that are not always ordered come first).
_MISSING_WEIGHTS = {
    "prealbumin": 4.0, "vitamin_d_25oh": 4.0, "cystatin_c": 3.0, "crp": 2.0,
    "calf_circumference_cm": 2.0, "falls_past_year": 1.0, "n_medications": 1.0,
    "bmi": 1.0, "albumin": 1.0, "hemoglobin": 0.5, "creatinine": 0.5,
}
_MISSING_COUNT_PROBABILITIES = (0.6, 0.3, 0.1)  # 1, 2 or 3 missing values when any


def _latent(z: np.ndarray, name: str) -> np.ndarray:
    return z[:, LATENT_COLUMNS.index(name)]


def draw_sex(n: int, rng: np.random.Generator) -> np.ndarray:
    """Sex, independent of the label and of every latent."""
    return np.where(rng.random(n) < FEMALE_SHARE, "F", "M")


def _clinical(z: np.ndarray, male: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(z)
    age, leanness, comorbidity = (_latent(z, f"z_clinical_{k}") for k in ("age", "leanness", "comorbidity"))

    def condition(base_rate: float, slope: float) -> np.ndarray:
        base = np.log(base_rate / (1 - base_rate))
        return (rng.random(n) < expit(base + slope * comorbidity)).astype(int)

    return {
        "age": 74.0 + 6.0 * age,
        "bmi": 23.5 - 2.3 * leanness + 0.5 * male + rng.normal(0, 1.2, n),
        "calf_circumference_cm": 33.5 - 2.0 * leanness + 1.5 * male + rng.normal(0, 1.0, n),
        "diabetes": condition(0.25, 0.6),
        "hypertension": condition(0.55, 0.6),
        "heart_disease": condition(0.20, 0.6),
        "copd": condition(0.10, 0.6),
        "n_medications": rng.poisson(np.exp(1.35 + 0.25 * comorbidity)),
        "falls_past_year": rng.poisson(np.exp(-0.9 + 0.35 * comorbidity + 0.15 * age)),
    }


def _lab(z: np.ndarray, male: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(z)
    malnutrition, inflammation, low_muscle = (
        _latent(z, f"z_lab_{k}") for k in ("malnutrition", "inflammation", "low_muscle_marker"))
    kidney = rng.standard_normal(n)  # shared by creatinine and cystatin C, unrelated to y
    return {
        "albumin": 40.0 - 2.0 * malnutrition - 1.5 * inflammation + rng.normal(0, 2.0, n),
        "prealbumin": 240.0 - 35.0 * malnutrition - 25.0 * inflammation + rng.normal(0, 25.0, n),
        "hemoglobin": 128.0 + 12.0 * male - 7.0 * malnutrition + rng.normal(0, 9.0, n),
        "creatinine": np.exp(np.log(72.0) + 0.15 * male - 0.18 * low_muscle + 0.2 * kidney
                             + rng.normal(0, 0.05, n)),
        "cystatin_c": np.exp(np.log(1.1) + 0.2 * kidney + rng.normal(0, 0.05, n)),
        "vitamin_d_25oh": np.exp(np.log(55.0) - 0.25 * malnutrition + rng.normal(0, 0.4, n)),
        "crp": np.exp(np.log(2.5) + 0.9 * inflammation + rng.normal(0, 0.5, n)),
    }


def _finish(name: str, values: np.ndarray) -> np.ndarray:
    """Clip to the declared range (so schema.yaml holds every value) and round as reported."""
    spec = TABULAR_SCHEMA[name]
    if spec.range is not None:
        values = np.clip(values, *spec.range)
    decimals = _DECIMALS[name]
    if decimals is None:  # whole numbers: counts, flags, and labs reported without decimals
        return np.rint(values).astype(int)
    return np.round(values, decimals)


def clinical_and_lab(z: np.ndarray, sex: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Every clinical and lab column for participants with latents ``z`` and ``sex``, complete."""
    male = (sex == "M").astype(float)
    raw = {**_clinical(z, male, rng), **_lab(z, male, rng)}
    table = pd.DataFrame({"sex": sex})
    for name in raw:
        table[name] = _finish(name, raw[name])
    return table[list(TABULAR_SCHEMA)]


def add_missing_values(table: pd.DataFrame, rng: np.random.Generator,
                       fraction: float) -> pd.DataFrame:
    """Blank 1-3 values for ``round(fraction * n)`` participants chosen at random (MCAR).

    Whole-number columns become pandas nullable integers so that they stay whole numbers in
    the CSV. Age and sex are never missing (the criteria need sex).
    """
    table = table.copy()
    for name in TABULAR_SCHEMA:
        if pd.api.types.is_integer_dtype(table[name]):
            table[name] = table[name].astype("Int64")
    columns = list(_MISSING_WEIGHTS)
    weights = np.array([_MISSING_WEIGHTS[c] for c in columns])
    n_missing = round(fraction * len(table))
    chosen = rng.choice(len(table), size=n_missing, replace=False)
    for row in np.sort(chosen):
        count = rng.choice(len(_MISSING_COUNT_PROBABILITIES), p=_MISSING_COUNT_PROBABILITIES) + 1
        blank = rng.choice(len(columns), size=count, replace=False, p=weights / weights.sum())
        for column_index in blank:
            table.loc[table.index[row], columns[column_index]] = pd.NA
    return table


def drop_whole_lab(table: pd.DataFrame, rng: np.random.Generator, share: float) -> pd.DataFrame:
    """Blank every lab column for ``round(share * k)`` of the k participants who already lack a value,
    chosen at random (MCAR, as the single gaps): a participant without any lab test."""
    table = table.copy()
    gaps = np.flatnonzero(table.isna().any(axis=1).to_numpy())
    chosen = rng.choice(gaps, size=round(share * len(gaps)), replace=False)
    lab = [name for name, spec in TABULAR_SCHEMA.items() if spec.role == "lab"]
    table.loc[table.index[np.sort(chosen)], lab] = pd.NA
    return table
