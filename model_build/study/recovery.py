"""How well the measurements recover what the synthetic generator drew (synthetic cohorts only).

The generator lays the tissue out itself and writes, per file, the muscle exactly as it rendered
it (``truth_media.csv``: that view's thickness in mm, pennation and echo latent). Per
participant, the measured value (the median over the frames where the quantity was measured, as
the measurements model reads it) is set against the median truth of the same frames.

- **Thickness** is defined as the generator lays it out: the distance between the aponeuroses'
  inner borders (docs/synthetic-images.md), so the error is in mm and in % of the truth.
- **Pennation**: the generator draws the fascicles at this angle to the aponeuroses before it
  bends the layers by up to about 2 degrees, so the definitions agree to within that.
- **Echo intensity** is a grey level (0-255, after the scanner's gain and grey map) while the
  generator's echo is a 0-1 latent that sets the muscle's level in decibels: not the same
  quantity, so only the correlations are given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr

TRUTH_FILE = "truth_media.csv"
QUANTITIES = {  # measured column -> (truth column, same definition, unit, note)
    "muscle_thickness_mm": ("muscle_thickness_mm", True, "mm", None),
    "pennation_deg": ("pennation_deg", True, "deg",
                      "the generator bends the layers by up to about 2 degrees after drawing the fascicles"),
    "echo_intensity": ("echo_intensity_latent", False, "grey level vs 0-1 latent",
                       "the generator's echo is a 0-1 latent setting the muscle's level in dB, not a grey level: "
                       "correlation only"),
}


def read_media_truth(cohort: Path) -> pd.DataFrame | None:
    path = Path(cohort) / TRUTH_FILE
    return pd.read_csv(path, dtype={"participant_id": str, "path": str}) if path.is_file() else None


def recovery(frames: pd.DataFrame, truth: pd.DataFrame, cohort_of: pd.Series) -> dict:
    """results.json's ``measurements.recovery``: every quantity over all the study's participants
    (``cohort_of``: participant_id -> cohort, in the study's cohort order), then per cohort."""
    merged = frames.merge(truth, on=["participant_id", "path"], how="left", suffixes=("", "_truth"))
    scopes = {"all": cohort_of.index, **{name: cohort_of.index[cohort_of == name] for name in dict.fromkeys(cohort_of)}}
    return {"source": TRUTH_FILE,
            "description": "per participant, the median measured value against the median generator truth of "
                           "the same frames",
            "scopes": {scope: {quantity: _agreement(merged[merged["participant_id"].isin(ids)], len(ids), quantity)
                               for quantity in QUANTITIES}
                       for scope, ids in scopes.items()}}


def _truth_column(quantity: str) -> str:
    truth = QUANTITIES[quantity][0]
    return f"{truth}_truth" if truth == quantity else truth


def participant_pairs(frames: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """``measured`` and ``truth`` per participant: medians over the frames where it was measured."""
    rows = frames[frames[quantity].notna() & frames[_truth_column(quantity)].notna()]
    return rows.groupby("participant_id").agg(measured=(quantity, "median"), truth=(_truth_column(quantity), "median"))


def _agreement(frames: pd.DataFrame, participants: int, quantity: str) -> dict:
    _, comparable, unit, note = QUANTITIES[quantity]
    pairs = participant_pairs(frames, quantity)
    error = pairs["measured"] - pairs["truth"]
    same = comparable and len(pairs) > 0
    return {"unit": unit, "comparable": comparable, "n_participants": participants,
            "n_measured": len(pairs),
            "median_absolute_error": float(error.abs().median()) if same else None,
            "median_absolute_error_percent": float((100 * error.abs() / pairs["truth"]).median())
            if same and unit == "mm" else None,
            "bias": float(error.mean()) if same else None,
            "pearson_r": _correlation(pearsonr, pairs), "spearman_r": _correlation(spearmanr, pairs),
            "note": note}


def _correlation(method, pairs: pd.DataFrame) -> float | None:  # noqa: ANN001 (scipy's two functions)
    """None with fewer than three pairs or a constant side (no correlation to speak of)."""
    if len(pairs) < 3 or pairs["measured"].nunique() < 2 or pairs["truth"].nunique() < 2:
        return None
    value = float(method(pairs["measured"], pairs["truth"])[0])
    return value if np.isfinite(value) else None
