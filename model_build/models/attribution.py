"""What each modality adds to the fused evidential opinion, measured on the log-odds.

The evidence share (:func:`model_build.models.evidential.contributions`) says how much evidence a
head emits for a class, whether or not that evidence moves the fused decision: a head that emits
evidence mostly for one class gets a large share of that class however little it separates the
classes. These measures ask instead how the fused log-odds of sarcopenia change with a modality:

- exact Shapley values over the subsets of the modalities, where leaving a modality out is its
  vacuous opinion (zero evidence, the fusion's own missing-modality rule). The empty subset is the
  vacuous opinion, whose log-odds are 0, so the values of a participant sum to the fused log-odds
  (efficiency);
- the fused log-odds with one modality made vacuous (whose AUC, beside the full model's, is the
  AUC lost without that modality).

With three modalities there are eight subsets, so the values are exact, not sampled.
Shapes: evidence ``(N, V, 2)`` with classes (non-sarcopenia, sarcopenia), as the heads give it.
"""

from __future__ import annotations

from itertools import product
from math import factorial

import torch

from model_build.models import evidential


def fused_log_odds(evidence: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``log(alpha_1 / alpha_0)`` of the opinion fused over the modalities where ``keep`` ``(N, V)``
    is true, the others vacuous; this is the logit of the fused expected probability."""
    alpha = evidential.combine(evidence, keep) + 1.0
    return torch.log(alpha[:, 1]) - torch.log(alpha[:, 0])


def without_each(evidence: torch.Tensor) -> torch.Tensor:
    """``(N, V)``: the fused log-odds with modality v vacuous and every other one kept."""
    rows, views = evidence.shape[:2]
    columns = []
    for view in range(views):
        keep = torch.ones((rows, views), dtype=torch.bool)
        keep[:, view] = False
        columns.append(fused_log_odds(evidence, keep))
    return torch.stack(columns, dim=1)


def shapley_log_odds(evidence: torch.Tensor) -> torch.Tensor:
    """``(N, V)`` exact Shapley values of the fused log-odds, a missing modality being vacuous.

    ``phi_v = sum over subsets S without v of |S|! (V - |S| - 1)! / V! * (f(S + v) - f(S))``.
    A modality a participant lacks has zero evidence, so adding it changes nothing: its value is 0.
    """
    rows, views = evidence.shape[:2]
    value = {}
    for subset in product((False, True), repeat=views):
        keep = torch.tensor(subset, dtype=torch.bool).expand(rows, views)
        value[subset] = fused_log_odds(evidence, keep)
    phi = torch.zeros((rows, views), dtype=evidence.dtype)
    for subset, without in value.items():
        size = sum(subset)
        weight = factorial(size) * factorial(views - size - 1) / factorial(views) if size < views else 0.0
        for view in (v for v in range(views) if not subset[v]):
            added = tuple(True if v == view else kept for v, kept in enumerate(subset))
            phi[:, view] += weight * (value[added] - without)
    return phi
