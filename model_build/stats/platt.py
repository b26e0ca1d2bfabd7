"""Platt scaling: logit P(y = 1) = intercept + slope * logit(p), a maximum-likelihood logistic fit.

Platt JC, "Probabilistic outputs for support vector machines and comparisons to regularized
likelihood methods", Advances in Large Margin Classifiers, MIT Press, 1999 (here on logit(p)
rather than on a margin, so identity is intercept 0, slope 1). Why the study needs it: a
threshold is chosen on pooled out-of-fold predictions, but each fold's model has its own score
scale, so one raw cut means different things in different folds. Calibrating each fold's
predictions first puts them on one scale; the refit model gets the fit on all out-of-fold
predictions, as scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` calibrates a refit.
The map is increasing (slope > 0 is required), so a calibrated cut ``t`` is the raw cut
``invert(t)`` and a bundle can keep its threshold on the model's own probability.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, logit

from model_build.stats._validate import StatsInputError, as_labels, check_both_classes, check_probabilities
from model_build.stats.calibration import _logistic_fit

_EDGE = 1e-9  # saturated probabilities (exactly 0 or 1) get a finite logit


def _logits(probabilities: np.ndarray) -> np.ndarray:
    return logit(np.clip(probabilities, _EDGE, 1.0 - _EDGE))


@dataclass(frozen=True)
class PlattScaling:
    """An increasing logistic recalibration of probabilities (see the module docstring)."""

    intercept: float
    slope: float

    @classmethod
    def fit(cls, y_true: ArrayLike, y_prob: ArrayLike) -> PlattScaling:
        """Fit on labelled predictions; refuses a fit that would reverse the order of the scores."""
        labels = as_labels(y_true)
        check_both_classes(labels, 1, why="Platt scaling")
        logits = _logits(check_probabilities(y_prob, labels.size))
        design = np.column_stack((np.ones(labels.size), logits))
        intercept, slope = _logistic_fit(labels.astype(np.float64), design, np.zeros(labels.size))
        if not slope > 0:
            raise StatsInputError(f"Platt scaling slope {slope:.3g} <= 0: the scores rank the classes the wrong "
                                  "way round, so no increasing recalibration fits them.")
        return cls(intercept=float(intercept), slope=float(slope))

    def apply(self, y_prob: ArrayLike) -> np.ndarray:
        return expit(self.intercept + self.slope * _logits(np.asarray(y_prob, dtype=np.float64)))

    def invert(self, calibrated: float) -> float:
        """The raw probability whose calibrated value is ``calibrated``."""
        return float(expit((_logits(np.float64(calibrated)) - self.intercept) / self.slope))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


IDENTITY = PlattScaling(intercept=0.0, slope=1.0)
