"""How a model's raw outputs become P(sarcopenia): part of the bundle's contract.

The bundle's ``config.json`` names the readout (``image_readout``): ``softmax`` for a classifier,
``evidential`` for the Dirichlet head of the training code. Calibration, the device's sessions
and its self-test all read outputs through :class:`ProbabilityReadout`, so an INT8 model is
judged on the same probability the device decides with.
"""

from __future__ import annotations

import math

import numpy as np

READOUTS = ("softmax", "evidential")


def sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    return math.exp(logit) / (1.0 + math.exp(logit))


def logit_of(probability: float) -> float:
    p = min(max(probability, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


class ProbabilityReadout:
    """Raw network outputs ``(N, K)`` -> P(sarcopenia) ``(N,)`` (and, for an evidential model,
    the Dirichlet uncertainty u = K / S)."""

    def __init__(self, kind: str = "softmax") -> None:
        if kind not in READOUTS:
            raise ValueError(f"readout {kind!r}: one of {', '.join(READOUTS)}")
        self.kind = kind

    def probability(self, outputs: np.ndarray) -> np.ndarray:
        outputs = _as_2d(outputs)
        if outputs.shape[1] == 1:  # a single logit
            return 1.0 / (1.0 + np.exp(-outputs[:, 0]))
        if self.kind == "evidential":
            alpha = _softplus(outputs) + 1.0
            return alpha[:, 1] / alpha.sum(axis=1)
        return 1.0 / (1.0 + np.exp(outputs[:, 0] - outputs[:, 1]))

    def uncertainty(self, outputs: np.ndarray) -> np.ndarray | None:
        outputs = _as_2d(outputs)
        if self.kind != "evidential" or outputs.shape[1] < 2:
            return None
        return outputs.shape[1] / (_softplus(outputs) + 1.0).sum(axis=1)


def _as_2d(outputs: np.ndarray) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64)
    return outputs[:, None] if outputs.ndim == 1 else outputs


def _softplus(values: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, values)
