"""Evidential fusion maths against hand-computed values (Han et al., ICLR 2021).

The two-view example, worked by hand with fractions:
  view 1: e = (3, 1) -> alpha = (4, 2), S = 6, b = (1/2, 1/6), u = 1/3
  view 2: e = (1, 2) -> alpha = (2, 3), S = 5, b = (1/5, 2/5), u = 2/5
  C = b1_0 b2_1 + b1_1 b2_0 = 1/5 + 1/30 = 7/30, so 1 - C = 23/30
  b_0 = (1/10 + 1/5 + 1/15) / (23/30) = 11/23
  b_1 = (1/15 + 1/15 + 2/15) / (23/30) = 8/23
  u   = (2/15) / (23/30) = 4/23           (11 + 8 + 4 = 23: b and u sum to 1)
  S = K / u = 23/2, e = b S = (11/2, 4), p = alpha / S = (13/23, 10/23)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model_build.models import evidential

E1 = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
E2 = torch.tensor([[1.0, 2.0]], dtype=torch.float64)


def test_opinion_of_one_view_by_hand() -> None:
    belief, uncertainty = evidential.opinion(E1)
    assert belief[0].tolist() == pytest.approx([1 / 2, 1 / 6])
    assert uncertainty.item() == pytest.approx(1 / 3)


def test_two_view_combination_matches_the_hand_computation() -> None:
    fused = evidential.combine_two(E1, E2)
    assert fused[0].tolist() == pytest.approx([11 / 2, 4.0])
    belief, uncertainty = evidential.opinion(fused)
    assert belief[0].tolist() == pytest.approx([11 / 23, 8 / 23])
    assert uncertainty.item() == pytest.approx(4 / 23)
    assert evidential.expected_probability(fused)[0].tolist() == pytest.approx([13 / 23, 10 / 23])


def test_combine_over_stacked_views_equals_pairwise_rule() -> None:
    stacked = torch.stack([E1, E2], dim=1)
    present = torch.ones(1, 2, dtype=torch.bool)
    assert evidential.combine(stacked, present)[0].tolist() == pytest.approx([11 / 2, 4.0])


def test_rule_is_commutative_and_associative() -> None:
    rng = np.random.default_rng(0)
    a, b, c = (torch.from_numpy(rng.gamma(1.5, 2.0, size=(50, 2))) for _ in range(3))
    assert torch.allclose(evidential.combine_two(a, b), evidential.combine_two(b, a))
    left = evidential.combine_two(evidential.combine_two(a, b), c)
    right = evidential.combine_two(a, evidential.combine_two(b, c))
    assert torch.allclose(left, right)


def test_vacuous_opinion_leaves_the_other_unchanged() -> None:
    nothing = torch.zeros_like(E1)
    assert torch.equal(evidential.combine_two(E1, nothing), E1)
    assert torch.equal(evidential.combine_two(nothing, E1), E1)


def test_absent_modality_is_vacuous_whatever_its_evidence() -> None:
    stacked = torch.stack([E1, torch.tensor([[50.0, 0.1]], dtype=torch.float64)], dim=1)
    only_first = torch.tensor([[True, False]])
    assert torch.allclose(evidential.combine(stacked, only_first), E1)


def test_agreeing_views_lower_uncertainty_and_conflicting_ones_are_finite() -> None:
    _, alone = evidential.opinion(E1)
    _, together = evidential.opinion(evidential.combine_two(E1, E1))
    assert together.item() < alone.item()
    strong = torch.tensor([[1e6, 0.0]], dtype=torch.float64)
    opposite = torch.tensor([[0.0, 1e6]], dtype=torch.float64)
    assert torch.isfinite(evidential.combine_two(strong, opposite)).all()


def test_contributions_by_hand_sum_to_one_and_absent_is_zero() -> None:
    stacked = torch.stack([E1, E2, torch.tensor([[4.0, 1.0]], dtype=torch.float64)], dim=1)
    present = torch.tensor([[True, True, True]])
    shares = evidential.contributions(stacked, present)
    assert shares[0, :, 0].tolist() == pytest.approx([3 / 8, 1 / 8, 4 / 8])
    assert shares[0, :, 1].tolist() == pytest.approx([1 / 4, 2 / 4, 1 / 4])
    without_third = evidential.contributions(stacked, torch.tensor([[True, True, False]]))
    assert without_third[0, 2].tolist() == [0.0, 0.0]
    assert without_third.sum(dim=1)[0].tolist() == pytest.approx([1.0, 1.0])
    assert (without_third[0, :2] > shares[0, :2]).all()  # the others' shares rise


def test_contributions_with_no_evidence_split_equally_between_present_views() -> None:
    shares = evidential.contributions(torch.zeros(1, 3, 2), torch.tensor([[True, False, True]]))
    assert shares[0, :, 0].tolist() == [0.5, 0.0, 0.5]


def test_loss_by_hand() -> None:
    # alpha = (4, 2), true class 0: ACE = digamma(6) - digamma(4) = 1/4 + 1/5.
    # KL term on alpha~ = (1, 2): Beta(1, 2) against uniform = ln 2 - 1/2.
    evidence = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([0])
    assert evidential.evidential_loss(evidence, target, 0.0).item() == pytest.approx(0.45)
    assert evidential.evidential_loss(evidence, target, 0.5).item() == pytest.approx(
        0.45 + 0.5 * (math.log(2.0) - 0.5))


def test_kl_to_uniform_is_zero_at_uniform_and_positive_elsewhere() -> None:
    assert evidential.kl_to_uniform(torch.ones(1, 2, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)
    assert evidential.kl_to_uniform(torch.tensor([[1.0, 5.0]], dtype=torch.float64)).item() > 0


def test_loss_rewards_evidence_for_the_true_class() -> None:
    target = torch.tensor([1])
    right = evidential.evidential_loss(torch.tensor([[0.1, 9.0]]), target, 1.0)
    wrong = evidential.evidential_loss(torch.tensor([[9.0, 0.1]]), target, 1.0)
    assert right.item() < wrong.item()


def test_annealing_weight_ramps_to_one() -> None:
    assert [evidential.annealing_weight(t, 4) for t in (0, 2, 4, 9)] == [0.0, 0.5, 1.0, 1.0]
