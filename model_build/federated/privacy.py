"""Differential privacy on a site's updates: clip, add Gaussian noise, count the epsilon.

What Flower's ``LocalDpMod`` and FLARE's privacy filters do at the site, as one step before an
update leaves it (Geyer et al. 2017; McMahan et al. 2018, "Learning differentially private
recurrent language models", for the clip-and-noise update):

1. the update is the change the round made, w_site - w_global, over the tensors the site's
   training can change (trainable weights, and the running statistics of the batch-norm layers
   that train); frozen tensors never carry the site's data, so they leave as received;
2. it is clipped to L2 norm ``clip`` as one vector;
3. Gaussian noise of standard deviation ``noise_multiplier x 2 clip`` is added to every value:
   two clipped updates differ by at most 2 clip, whatever one participant (or the whole site's
   data) changes, so the release is a Gaussian mechanism of sensitivity 2 clip.

Each site releases one update per round, so over ``rounds`` rounds its updates are
(epsilon, delta)-differentially private against everyone who sees them (the coordinator and the
other sites), for neighbouring datasets of the same size: one participant's data replaced by
anyone else's, or indeed every participant's. The number of training participants is sent in
the clear (FedAvg's weight), so the site's size is not private. The noise
multiplier is the smallest that keeps the whole federation within the asked epsilon, from
Opacus's Renyi-DP accountant (Mironov 2017), sampling rate 1 (every round sees all the site's
data). Its noise is drawn from the operating system's entropy, never from the federation's seed:
whoever knows a seed could redraw the noise and subtract it (the one place where this project is
not deterministic given a seed).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from functools import cached_property

import torch

VARIANCE_FLOOR = 1e-3
"""Batch norm's running variance after the noise is floored here (noise can make it negative)."""


@dataclass(frozen=True)
class UpdatePrivacy:
    epsilon: float        # over the whole federation, per participant (and per site)
    delta: float
    clip: float           # L2 norm an update is clipped to
    rounds: int

    def __post_init__(self) -> None:
        for name in ("epsilon", "delta", "clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} {getattr(self, name)}: differential privacy needs a value above 0")
        if not self.delta < 1:
            raise ValueError(f"delta {self.delta}: give a probability below 1, e.g. 1e-5")

    @cached_property
    def noise_multiplier(self) -> float:
        """Noise standard deviation over the sensitivity, from Opacus's RDP accountant."""
        from opacus.accountants.utils import get_noise_multiplier

        return float(get_noise_multiplier(target_epsilon=self.epsilon, target_delta=self.delta, sample_rate=1.0,
                                          steps=self.rounds, accountant="rdp"))

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self, modalities: list[str]) -> str:
        """One line for the console: the guarantee, its mechanism and what it does not cover."""
        return (f"({self.epsilon:g}, {self.delta:g}) over {self.rounds} rounds, per participant, of the weight "
                f"updates (clipped to {self.clip:g}, noise multiplier {self.noise_multiplier:.3f}); not covered: "
                f"{'; '.join(self.not_covered(modalities))}")

    @staticmethod
    def not_covered(modalities: list[str]) -> list[str]:
        """What else leaves a site, in the clear, beside the noised updates."""
        clear = ["each site's number of training participants (FedAvg's weight)"]
        if any(m != "image" for m in modalities):
            clear.append("the column sums the clinical/lab encoders are agreed from (count, sum, sum of squares, "
                         "levels seen)")
        return clear


def private_names(model: torch.nn.Module) -> set[str]:
    """The ``state_dict`` names that training can change: trainable parameters, and the buffers
    (running statistics) of the modules that own a trainable parameter."""
    names = {name for name, value in model.named_parameters() if value.requires_grad}
    for module_name, module in model.named_modules():
        if any(value.requires_grad for value in module.parameters(recurse=False)):
            names |= {f"{module_name}.{name}" for name, value in module.named_buffers(recurse=False)
                      if value.is_floating_point()}
    return names


def privatize(sent: dict[str, torch.Tensor], received: dict[str, torch.Tensor], names: set[str],
              privacy: UpdatePrivacy, noise_multiplier: float) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """``sent`` with its update over ``names`` clipped and noised (the module docstring); returns
    the weights to send and what was done (the update's norm before clipping, the scale applied)."""
    delta = {name: (sent[name].double() - received[name].double()) for name in sorted(names)}
    norm = float(torch.sqrt(sum(torch.sum(d ** 2) for d in delta.values())))
    scale = min(1.0, privacy.clip / norm) if norm > 0 else 1.0
    generator = torch.Generator().manual_seed(secrets.randbits(63))
    deviation = noise_multiplier * 2 * privacy.clip
    private = {name: received[name].clone() for name in sent}  # what training must not change leaves as received
    for name, change in delta.items():
        noise = torch.normal(0.0, deviation, size=change.shape, generator=generator, dtype=torch.float64)
        value = received[name].double() + change * scale + noise
        if name.endswith("running_var"):  # a variance stays positive; post-processing keeps the guarantee
            value = value.clamp(min=VARIANCE_FLOOR)
        private[name] = value.to(sent[name].dtype)
    return private, {"update_norm": norm, "clip_scale": scale}


def site_refusal(plan: dict, max_epsilon: float | None, task: str) -> str | None:
    """Why a site that requires differential privacy of at most ``max_epsilon`` (``sarco
    federated site --max-epsilon``) refuses ``task`` of this ``plan``, or None when it takes
    part. The site decides this itself: the coordinator's plan cannot lower it. It refuses the
    column sums (they are not noised) and any training without DP, or with a larger epsilon."""
    if max_epsilon is None:
        return None
    if task == "statistics":
        return (f"this site requires differential privacy (epsilon <= {max_epsilon:g}), which the column sums of "
                "the clinical/lab encoders do not have; it sends none")
    privacy = plan.get("privacy")
    if privacy is None:
        return (f"the coordinator's plan trains without differential privacy; this site requires epsilon <= "
                f"{max_epsilon:g}")
    if privacy["epsilon"] > max_epsilon:
        return (f"the coordinator's plan has epsilon {privacy['epsilon']:g}; this site requires epsilon <= "
                f"{max_epsilon:g}")
    return None
