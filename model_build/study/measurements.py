"""The study's measurements model: muscle thickness, echo intensity and pennation angle, with age
and sex, in a logistic regression beside the image network (issue #23).

What clinicians already read off a muscle scan, measured by the shipped aponeurosis model on the
participant's own images (:mod:`model_build.measure.cohort`), against what the image network
learns end to end: if the network did no better than the measurements, the measurements would
be the simpler screen to explain.

- **Inputs**: the participant's median muscle thickness (mm when every measured participant has a
  pixel size, else px for all: one feature cannot mix units), echo intensity and pennation angle
  over their images; age and sex from participants.csv.
- **Missing values** (a participant whose images gave no thickness or no angle, an unknown
  age): the training rows' median, plus a 0/1 indicator per feature that had gaps in the
  training rows; then each feature standardised on the training rows; sex one-hot. The clinical
  models' own preprocessing (:class:`~model_build.models.tabular.TabularEncoder`) does this.
  A feature with no value at all in the training rows is left out.
- **Model**: the study's baseline logistic regression (L2, C = 1, classes balanced:
  :func:`~model_build.models.tabular.baseline_logistic`). Its threshold is chosen like every
  model's, on the calibrated out-of-fold predictions (:mod:`model_build.study.threshold_choice`);
  until then a fold's table carries the balanced classes' cut, 0.5.
- **Evaluation**: exactly as the other models, by the study's own loop (the same folds,
  out-of-fold on development, refit on development and applied once to every other cohort);
  compared with the image model by the paired DeLong test on the same participants.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sklearn.linear_model import LogisticRegression

from model_build.cohort import Cohort
from model_build.cohort.schema import ColumnSpec
from model_build.models.tabular import TabularEncoder, baseline_logistic
from model_build.study.results import cohort_metrics, compare, with_holm

MODEL = "measurements"
COMPARED_WITH = "image"  # the model a device runs
THICKNESS = {"mm": "muscle_thickness_mm", "px": "muscle_thickness_px"}
MEASURED = ("echo_intensity", "pennation_deg")
PERSON = {"age": ColumnSpec("age", role="clinical", type="numeric"),
          "sex": ColumnSpec("sex", role="clinical", type="categorical", levels=("M", "F"))}
"""Age and sex as the cohort format checks them when schema.yaml does not declare them."""
CUT = 0.5
MISSING_RULE = ("missing values: the development (training) median plus a 0/1 missing indicator per feature with "
                "gaps in the training rows; features standardised on the training rows; sex one-hot")


def thickness_unit(participants: pd.DataFrame) -> str:
    """``mm`` when every participant with a thickness has it in mm, else ``px`` for everyone."""
    measured = participants["muscle_thickness_px"].notna()
    in_mm = participants["muscle_thickness_mm"].notna()
    return "mm" if measured.any() and bool((in_mm | ~measured).all()) else "px"


@dataclass
class MeasurementsModel:
    """The logistic regression on one set of training rows (:meth:`fit`), scoring any participant."""

    features: pd.DataFrame  # indexed by participant_id
    specs: list[ColumnSpec]
    encoder: TabularEncoder | None = None
    regression: LogisticRegression | None = None

    @property
    def threshold(self) -> dict:
        """The balanced classes' cut, where the study's loop reads a trained model's threshold
        (replaced by the study's threshold rule once every fold is scored)."""
        return {"value": CUT}

    def fit(self, rows: pd.DataFrame) -> MeasurementsModel:
        frame = self.features.loc[rows["participant_id"]]
        usable = [spec for spec in self.specs if frame[spec.name].notna().any()]
        encoder = TabularEncoder.fit(frame, usable)
        regression = baseline_logistic().fit(encoder.transform(frame), rows["label"].to_numpy(int))
        return MeasurementsModel(self.features, self.specs, encoder, regression)

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        ids = rows["participant_id"].tolist()
        probability = self.regression.predict_proba(self.encoder.transform(self.features.loc[ids]))[:, 1]
        return pd.DataFrame({"participant_id": ids, "label": rows["label"].to_numpy(int), "probability": probability})

    def to_dict(self) -> dict:
        """Coefficients per standardised feature (log-odds per SD; per indicator or level: its 0/1)."""
        names = self.encoder.feature_names
        return {"features": names, "intercept": float(self.regression.intercept_[0]),
                "coefficients": dict(zip(names, (float(c) for c in self.regression.coef_[0]))),
                "preprocessing": self.encoder.to_dict()}


def untrained_model(cohort: Cohort, participants: pd.DataFrame) -> tuple[MeasurementsModel, str]:
    """The model's inputs for every measured participant, not yet fitted, and the thickness unit."""
    unit = thickness_unit(participants)
    features = participants.set_index("participant_id")[[THICKNESS[unit], *MEASURED]].copy()
    specs = [ColumnSpec(name, role="measurement", type="numeric") for name in features.columns]
    people = cohort.participants.set_index("participant_id")
    for name, fallback in PERSON.items():
        if name in people:
            features[name] = people.loc[features.index, name]
            specs.append(cohort.schema.columns.get(name, fallback))
    return MeasurementsModel(features, specs), unit


def summary(predictions: dict[str, dict[str, pd.DataFrame]], participants: pd.DataFrame, refit: MeasurementsModel,
            unit: str, aponeurosis_model: str, cohorts: list[str]) -> dict:
    """results.json's ``measurements`` (docs/study.md), from the prediction tables."""
    people = participants.set_index("participant_id")
    measured, results, comparisons = {}, {}, []
    for cohort in cohorts:
        table = predictions[MODEL][cohort]
        rows = people.loc[table["participant_id"]]
        measured[cohort] = {"participants": len(rows), "images": int(rows["frames_total"].sum()),
                            "images_measured": int(rows["frames_measured"].sum()),
                            **{name: int(rows[name].notna().sum()) for name in (THICKNESS[unit], *MEASURED)}}
        results[cohort] = cohort_metrics(table)
        pair = {name: predictions[name][cohort] for name in (MODEL, COMPARED_WITH)}
        found = compare(pair, MODEL, COMPARED_WITH, cohort, f"{MODEL} vs {COMPARED_WITH}")
        if found is not None:
            comparisons.append(found)
    return {"model": MODEL, "compared_with": COMPARED_WITH, "aponeurosis_model": aponeurosis_model,
            "inputs": [spec.name for spec in refit.specs], "thickness_unit": unit, "missing": MISSING_RULE,
            "description": "logistic regression (L2, C 1, classes balanced; the cut by the study's threshold rule) on "
                           "the median muscle "
                           "thickness, echo intensity and pennation angle of the participant's images, measured by "
                           "the aponeurosis model, with age and sex",
            "refit": refit.to_dict(), "measured": measured, "cohorts": results, "comparisons": with_holm(comparisons)}

