"""Reference measurements (grip, gait speed, chair stand, SPPB, ASMI) that give back the label.

The label is fixed first; the measurements are then drawn by rejection sampling: a proposal
that looks like a sarcopenic (or a non-sarcopenic) older adult is drawn, rounded as a clinic
would write it, and kept only if the AWGS 2019 rule from :mod:`sarco_core.criteria` gives
the wanted label. So `sarco label --standard awgs2019` reproduces every label by construction,
and the non-sarcopenic group still holds people with low grip only, low ASMI only, and so on.

The proposals lean on the latents a little (ASMI on muscle atrophy, grip and performance on the
frailty factor) so that the reference measurements correlate with the images as in real data.
These columns are never model inputs, so this leaks nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from model_build.cohort.schema import ColumnSpec
from sarco_core.criteria import CUTOFFS, Measurements, diagnose
from model_build.synth.latent import LATENT_COLUMNS

STANDARD = "awgs2019"
MAX_PROPOSALS = 10_000

REFERENCE_SCHEMA: dict[str, ColumnSpec] = {
    "grip_kg": ColumnSpec("grip_kg", "reference", "numeric", unit="kg", range=(0.0, 90.0), measure="grip"),
    "gait_speed_m_s": ColumnSpec("gait_speed_m_s", "reference", "numeric", unit="m/s", range=(0.0, 3.0),
                                 measure="gait_speed"),
    "chair_stand_s": ColumnSpec("chair_stand_s", "reference", "numeric", unit="s", range=(3.0, 60.0),
                                measure="chair_stand"),
    "sppb": ColumnSpec("sppb", "reference", "integer", unit="points", range=(0.0, 12.0), measure="sppb"),
    "asmi_kg_m2": ColumnSpec("asmi_kg_m2", "reference", "numeric", unit="kg/m2", range=(3.0, 12.0),
                             measure="asmi"),
    "asmi_method": ColumnSpec("asmi_method", "reference", "categorical", levels=("dxa", "bia"),
                              measure="asmi_method"),
}
"""schema.yaml entries of the reference columns, with the measure each one holds."""


def _threshold(criterion: str, measure: str, sex: str, method: str | None = None) -> float:
    for cutoff in CUTOFFS[STANDARD][criterion]:
        if cutoff.measure == measure and cutoff.method in (None, method):
            return cutoff.threshold(sex)
    raise KeyError(f"{STANDARD} has no {measure} cut-off for {criterion}")


def sppb_score(gait_speed_m_s: float, chair_stand_s: float, balance_points: int) -> int:
    """SPPB total (0-12): balance points + the published 4 m walk and five-rise chair scores."""
    walk_s = 4.0 / gait_speed_m_s
    walk = 4 if walk_s < 4.82 else 3 if walk_s <= 6.20 else 2 if walk_s <= 8.70 else 1
    chair = 4 if chair_stand_s <= 11.19 else 3 if chair_stand_s <= 13.69 else 2 if chair_stand_s <= 16.69 \
        else 1 if chair_stand_s <= 60.0 else 0
    return int(balance_points + walk + chair)


def _propose(label: int, sex: str, method: str, atrophy: float, frailty: float,
             rng: np.random.Generator) -> Measurements:
    """One plausible set of measurements for a person of this label and sex, as recorded."""
    grip_cut = _threshold("low_strength", "grip", sex)
    asmi_cut = _threshold("low_muscle_quantity", "asmi", sex, method)
    female = sex == "F"
    asmi = asmi_cut + (0.55 if label == 0 else -0.5) - 0.25 * atrophy + rng.normal(0, 0.45 if female else 0.55)
    grip = grip_cut + (5.0 if label == 0 else -1.0) * (0.7 if female else 1.0) - 1.5 * frailty \
        + rng.normal(0, 3.5 if female else 5.0)
    gait = (1.12 if label == 0 else 0.9) - 0.06 * frailty + rng.normal(0, 0.18)
    chair = np.exp(np.log(10.5 if label == 0 else 12.5) + 0.06 * frailty + rng.normal(0, 0.22))
    balance = rng.choice(5, p=(0.0, 0.02, 0.08, 0.30, 0.60) if label == 0 else (0.0, 0.10, 0.25, 0.35, 0.30))
    gait = round(float(np.clip(gait, 0.15, 2.5)), 2)
    chair = round(float(np.clip(chair, 4.0, 60.0)), 1)
    return Measurements(
        sex=sex,
        grip_kg=round(float(np.clip(grip, 2.0, 70.0)), 1),
        gait_speed_m_s=gait,
        chair_stand_s=chair,
        sppb=sppb_score(gait, chair, int(balance)),
        asmi_kg_m2=round(float(np.clip(asmi, 3.0, 12.0)), 2),
        asmi_method=method,
    )


def draw_reference(labels: np.ndarray, sex: np.ndarray, asmi_method: str, z: np.ndarray,
                   frailty: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Reference columns (:data:`REFERENCE_SCHEMA`) whose AWGS 2019 label equals ``labels``."""
    atrophy = z[:, LATENT_COLUMNS.index("z_image_atrophy")]
    rows = []
    for i, (label, person_sex) in enumerate(zip(labels, sex)):
        for _ in range(MAX_PROPOSALS):
            measured = _propose(int(label), str(person_sex), asmi_method, atrophy[i], frailty[i], rng)
            if diagnose(measured, STANDARD).label == label:
                break
        else:
            raise RuntimeError(f"no reference measurements with label {label} after {MAX_PROPOSALS} "
                               "proposals; the proposal distributions no longer match the criteria")
        rows.append({name: measured.value_of(spec.measure) for name, spec in REFERENCE_SCHEMA.items()})
    return pd.DataFrame(rows, columns=list(REFERENCE_SCHEMA)).astype({"sppb": int})


def check_labels(participants: pd.DataFrame) -> None:
    """Re-derive every label from the reference columns; raise if any differs.

    Run on the table about to be written, so a generator bug can never ship a cohort whose
    labels `sarco label` would not reproduce.
    """
    for _, row in participants.iterrows():
        values = {spec.measure: row[name] if spec.type == "categorical" else float(row[name])
                  for name, spec in REFERENCE_SCHEMA.items()}
        derived = diagnose(Measurements.from_measures(row["sex"], values), STANDARD).label
        if derived != row["label"]:
            raise RuntimeError(f"participant {row['participant_id']}: label {row['label']} but the "
                               f"{STANDARD} rule gives {derived} from its reference measurements")
