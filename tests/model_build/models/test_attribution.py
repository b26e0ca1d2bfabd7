"""Shapley values of the fused evidential log-odds: exact on a hand example, efficient, and zero for
a modality a participant lacks (its opinion is vacuous)."""

from __future__ import annotations

import math

import pytest
import torch

from model_build.models.attribution import fused_log_odds, shapley_log_odds, without_each

# The two views of test_evidential.py: fused evidence (11/2, 4), so alpha = (13/2, 5).
TWO_VIEWS = torch.tensor([[[3.0, 1.0], [1.0, 2.0]]], dtype=torch.float64)


def test_two_views_by_hand() -> None:
    alone_1, alone_2, both = math.log(2 / 4), math.log(3 / 2), math.log(5 / (13 / 2))
    phi = shapley_log_odds(TWO_VIEWS)[0].tolist()
    assert phi == pytest.approx([(alone_1 + both - alone_2) / 2, (alone_2 + both - alone_1) / 2])
    assert without_each(TWO_VIEWS)[0].tolist() == pytest.approx([alone_2, alone_1])


def test_values_sum_to_the_fused_log_odds_minus_the_vacuous_ones() -> None:
    evidence = torch.rand((50, 3, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5
    everything = torch.ones((50, 3), dtype=torch.bool)
    nothing = torch.zeros((50, 3), dtype=torch.bool)
    efficiency = fused_log_odds(evidence, everything) - fused_log_odds(evidence, nothing)
    assert torch.allclose(fused_log_odds(evidence, nothing), torch.zeros(50, dtype=torch.float64))
    assert torch.allclose(shapley_log_odds(evidence).sum(dim=1), efficiency)


def test_a_missing_modality_gets_nothing_and_changes_nothing() -> None:
    evidence = torch.tensor([[[3.0, 1.0], [1.0, 2.0], [0.0, 0.0]]], dtype=torch.float64)
    phi = shapley_log_odds(evidence)[0]
    assert phi[2].item() == 0.0
    assert phi[:2].tolist() == pytest.approx(shapley_log_odds(TWO_VIEWS)[0].tolist())
    both = fused_log_odds(TWO_VIEWS, torch.ones((1, 2), dtype=torch.bool)).item()
    assert without_each(evidence)[0, 2].item() == pytest.approx(both)
