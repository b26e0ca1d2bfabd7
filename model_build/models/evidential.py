"""Subjective-logic opinions for trusted multimodal fusion (Han et al., ICLR 2021, "Trusted
Multi-View Classification"; reference code github.com/hanmenghan/TMC).

Pure tensor maths, no modules: each modality yields non-negative evidence over K classes, the
evidence is a Dirichlet opinion (belief per class plus an explicit uncertainty), opinions are
merged with the reduced Dempster rule, and a missing modality is the vacuous opinion (zero
evidence) which leaves every other opinion unchanged. Kept separate from the networks so the
formulas can be checked by hand (tests/model_build/models/test_evidential.py).

Shapes: evidence ``(N, K)``; stacked evidence ``(N, V, K)`` for V modalities; ``present``
``(N, V)`` booleans.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def evidence_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Non-negative evidence from a head's raw output (softplus, as in the TMC code)."""
    return F.softplus(logits)


def opinion(evidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Belief masses ``b_k = e_k / S`` and uncertainty ``u = K / S`` with ``S = sum(e + 1)``."""
    classes = evidence.shape[-1]
    strength = (evidence + 1.0).sum(dim=-1, keepdim=True)
    return evidence / strength, classes / strength


def evidence_from_opinion(belief: torch.Tensor, uncertainty: torch.Tensor) -> torch.Tensor:
    """Back from an opinion to evidence: ``S = K / u``, ``e = b S``."""
    classes = belief.shape[-1]
    return belief * (classes / uncertainty)


def combine_two(evidence_a: torch.Tensor, evidence_b: torch.Tensor) -> torch.Tensor:
    """Reduced Dempster combination of two opinions, returned as evidence.

    ``C = sum_{i != j} b^a_i b^b_j``, ``b_k = (b^a_k b^b_k + b^a_k u^b + b^b_k u^a) / (1 - C)``,
    ``u = u^a u^b / (1 - C)``. ``1 - C >= u^a + u^b - u^a u^b > 0`` for finite evidence, so the
    division is always defined.
    """
    belief_a, uncertainty_a = opinion(evidence_a)
    belief_b, uncertainty_b = opinion(evidence_b)
    agreement = (belief_a * belief_b).sum(dim=-1, keepdim=True)
    conflict = belief_a.sum(dim=-1, keepdim=True) * belief_b.sum(dim=-1, keepdim=True) - agreement
    scale = 1.0 / (1.0 - conflict)
    belief = (belief_a * belief_b + belief_a * uncertainty_b + belief_b * uncertainty_a) * scale
    uncertainty = uncertainty_a * uncertainty_b * scale
    return evidence_from_opinion(belief, uncertainty)


def combine(evidence: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Fuse ``(N, V, K)`` evidence over the modalities that are present, left to right.

    Absent modalities are set to the vacuous opinion (zero evidence) first; the rule is
    commutative and associative, so the order of the modalities does not matter.
    """
    masked = evidence * present.unsqueeze(-1).to(evidence.dtype)
    fused = masked[:, 0]
    for view in range(1, masked.shape[1]):
        fused = combine_two(fused, masked[:, view])
    return fused


def expected_probability(evidence: torch.Tensor) -> torch.Tensor:
    """Mean of the Dirichlet: ``p_k = alpha_k / S``."""
    alpha = evidence + 1.0
    return alpha / alpha.sum(dim=-1, keepdim=True)


def contributions(evidence: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Each modality's share of the evidence for each class, ``(N, V, K)``.

    ``c^v_k = e^v_k / sum_w e^w_k`` over the modalities present (our reading of the SARCO
    study's "contribution"); an absent modality gets 0. Where the present modalities hold no
    evidence at all for a class the share is split equally between them, so each participant's
    shares still sum to 1.
    """
    weights = present.unsqueeze(-1).to(evidence.dtype)
    masked = evidence * weights
    total = masked.sum(dim=1, keepdim=True)
    equal = weights / weights.sum(dim=1, keepdim=True).clamp_min(1.0)
    return torch.where(total > 0, masked / total.clamp_min(torch.finfo(evidence.dtype).tiny), equal)


def kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """``KL(Dir(alpha) || Dir(1))`` per row (closed form, as in the TMC code)."""
    classes = alpha.shape[-1]
    strength = alpha.sum(dim=-1)
    log_beta = torch.lgamma(strength) - torch.lgamma(alpha).sum(dim=-1) - torch.lgamma(
        torch.tensor(float(classes), dtype=alpha.dtype, device=alpha.device))
    digamma_gap = torch.digamma(alpha) - torch.digamma(strength).unsqueeze(-1)
    return log_beta + ((alpha - 1.0) * digamma_gap).sum(dim=-1)


def evidential_loss(evidence: torch.Tensor, target: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """Per-row loss: integrated cross-entropy under the Dirichlet plus the weighted KL term.

    ``L_ace = sum_k y_k (digamma(S) - digamma(alpha_k))``; the KL term acts on
    ``alpha~ = y + (1 - y) alpha``, i.e. only on evidence for the wrong classes, pushing
    misleading evidence to zero. ``target`` holds class indices ``(N,)``.
    """
    alpha = evidence + 1.0
    one_hot = F.one_hot(target, num_classes=alpha.shape[-1]).to(alpha.dtype)
    strength = alpha.sum(dim=-1, keepdim=True)
    ace = (one_hot * (torch.digamma(strength) - torch.digamma(alpha))).sum(dim=-1)
    misleading = one_hot + (1.0 - one_hot) * alpha
    return ace + kl_weight * kl_to_uniform(misleading)


def annealing_weight(epoch: int, anneal_epochs: int) -> float:
    """``lambda_t = min(1, t / T)``: the KL term is phased in while evidence is still forming."""
    return min(1.0, epoch / max(1, anneal_epochs))
