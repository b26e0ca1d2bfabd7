"""Clinical and lab inputs: a preprocessing fitted on training rows only, the scikit-learn
baselines, and the small MLP encoder that feeds the fusion.

The preprocessing (median imputation with missing indicators, standard scaling, one-hot) is a
handful of numbers per column, so it is kept as plain parameters rather than as a fitted
scikit-learn object: the bundle stores it as JSON and loading it never unpickles anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from model_build.cohort.schema import ColumnSpec
from sarco_core.errors import SarcoError

if TYPE_CHECKING:  # scikit-learn loads where a baseline is fitted, not with every encoder (1.5 s)
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

TRUE_WORDS = frozenset({"1", "true", "yes", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "n"})


class TabularInputError(SarcoError, ValueError):
    """A clinical or lab value cannot be read; the message names the column and the row."""


@dataclass
class NumericColumn:
    """Numeric, integer or binary column: ``(value or median - mean) / scale``."""

    name: str
    type: str
    median: float
    mean: float
    scale: float
    missing_indicator: bool


@dataclass
class CategoricalColumn:
    """Categorical column: one-hot over the levels; unknown or missing is all zeros."""

    name: str
    levels: list[str]


@dataclass
class TabularEncoder:
    """Turns one modality's columns into a float32 matrix, the same way for training and use."""

    numeric: list[NumericColumn] = field(default_factory=list)
    categorical: list[CategoricalColumn] = field(default_factory=list)

    @classmethod
    def fit(cls, frame: pd.DataFrame, specs: list[ColumnSpec]) -> TabularEncoder:
        """Learn medians, scales and levels from ``frame`` (training rows only)."""
        if frame.empty:
            raise TabularInputError("no training rows to fit the clinical/lab preprocessing on")
        encoder = cls()
        for spec in specs:
            if spec.type == "categorical":
                observed = sorted({str(v) for v in frame[spec.name].dropna()} - {""})
                encoder.categorical.append(CategoricalColumn(spec.name, list(spec.levels or observed)))
                continue
            values = column_numbers(frame[spec.name], spec.name, spec.type)
            known = values[~np.isnan(values)]
            if known.size == 0:
                raise TabularInputError(f"column {spec.name!r} has no value in the training rows; "
                                        "fix: fill it in or set its role to `other` in schema.yaml")
            scale = float(known.std())
            encoder.numeric.append(NumericColumn(
                spec.name, type=spec.type, median=float(np.median(known)), mean=float(known.mean()),
                scale=scale if scale > 0 else 1.0, missing_indicator=bool(np.isnan(values).any())))
        return encoder

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    @property
    def feature_names(self) -> list[str]:
        names = [c.name for c in self.numeric]
        names += [f"{c.name}_missing" for c in self.numeric if c.missing_indicator]
        names += [f"{c.name}={level}" for c in self.categorical for level in c.levels]
        return names

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """``(rows, features)`` float32; raises :class:`TabularInputError` on unreadable values."""
        blocks, indicators = [], []
        for column in self.numeric:
            values = column_numbers(frame[column.name], column.name, column.type)
            missing = np.isnan(values)
            blocks.append((np.where(missing, column.median, values) - column.mean) / column.scale)
            if column.missing_indicator:
                indicators.append(missing.astype(float))
        for column in self.categorical:
            text = frame[column.name].astype("string").str.strip()
            for level in column.levels:
                indicators.append((text == level).fillna(False).to_numpy(dtype=float))
        matrix = np.column_stack(blocks + indicators) if blocks or indicators else np.zeros((len(frame), 0))
        return matrix.astype(np.float32)

    def present(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows that hold at least one value of this modality (else the modality is missing)."""
        cells = frame[self.columns].astype("string").apply(lambda s: s.str.strip())
        return (cells.notna() & (cells != "")).any(axis=1).to_numpy()

    def to_dict(self) -> dict:
        return {"numeric": [asdict(c) for c in self.numeric],
                "categorical": [asdict(c) for c in self.categorical]}

    @classmethod
    def from_dict(cls, raw: dict) -> TabularEncoder:
        return cls(numeric=[NumericColumn(**c) for c in raw["numeric"]],
                   categorical=[CategoricalColumn(**c) for c in raw["categorical"]])


def column_numbers(series: pd.Series, name: str, kind: str) -> np.ndarray:
    """Values of one column as floats, NaN where empty. Binary accepts 0/1, yes/no, true/false."""
    text = series.astype("string").str.strip()
    text = text.mask(text == "")
    if kind == "binary":
        lowered = text.str.lower()
        text = lowered.mask(lowered.isin(TRUE_WORDS), "1").mask(lowered.isin(FALSE_WORDS), "0")
    numbers = pd.to_numeric(text, errors="coerce")
    bad = numbers.isna() & text.notna()
    if bad.any():
        row = bad.idxmax()
        raise TabularInputError(f"column {name!r}, row {row}: {text[row]!r} is not a number; "
                                "fix: write a plain number (decimal point, no unit)")
    return numbers.to_numpy(dtype=float, na_value=np.nan)


class TabularMLP(nn.Module):
    """Small encoder for one tabular modality; its features feed the modality's head."""

    def __init__(self, n_inputs: int, width: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        self.out_features = width
        self.layers = nn.Sequential(
            nn.Linear(n_inputs, width), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(width, width), nn.ReLU())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


def baseline_logistic() -> LogisticRegression:
    """The baselines' logistic regression, unfitted: L2 (C = 1) on the encoded, standardised
    features, classes balanced (so 0.5 is the cut where both classes weigh the same)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)


def fit_baselines(features: np.ndarray, labels: np.ndarray, seed: int,
                  ) -> dict[str, LogisticRegression | HistGradientBoostingClassifier]:
    """Logistic regression and gradient boosting on the encoded features, classes balanced.

    They are comparisons for the MLP and fusion (reported in the training metadata and the
    benchmark), not part of the bundle.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    logistic = baseline_logistic()
    boosting = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                              class_weight="balanced", random_state=seed)
    return {"logistic": logistic.fit(features, labels), "boosting": boosting.fit(features, labels)}
