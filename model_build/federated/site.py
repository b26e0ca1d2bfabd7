"""One site's part of a federation: rounds of local training with the existing Trainer.

The site keeps one :class:`~model_build.models.train.Trainer` for the whole federation (its
optimizer state stays local between rounds, as in FLARE's PyTorch examples). Each round it
loads the global weights, reports the global model's log loss on its inner validation split,
trains ``local_epochs`` epochs on its own training rows and returns its weights and its number
of training participants (FedAvg's weight). Epoch numbers continue across rounds, so the batch
order, dropout and cosine learning rate follow the same schedule as one ``sarco train`` run of
``rounds x local_epochs`` epochs. What leaves the site: weights and aggregate numbers only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from model_build.federated.privacy import UpdatePrivacy, private_names, privatize
from model_build.models.checkpoint import RunState
from model_build.models.tabular import TabularEncoder
from model_build.models.train import Trainer, TrainOptions
from model_build.models.training_data import TrainingData


def to_tensors(weights: dict) -> dict[str, torch.Tensor]:
    """Tensors from what FLARE hands over (NumPy arrays on the wire, its default exchange
    format; its PyTorch Client API converts them to tensors and back on the site)."""
    return {name: torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value)
            for name, value in weights.items()}


def shaped_like(tensors: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` in ``reference``'s shapes and dtypes. Under secure aggregation every tensor
    arrives flat and in float (FLARE's ``HEModelDecryptor`` returns CKKS vectors decrypted as flat
    lists); integer buffers (batch counters) are rounded, not truncated."""
    shaped = {}
    for name, value in tensors.items():
        like = reference[name]
        value = value.reshape(like.shape)
        shaped[name] = value.to(like.dtype) if like.is_floating_point() else torch.round(value).to(like.dtype)
    return shaped


def proximal_term(model: torch.nn.Module, mu: float) -> Callable[[torch.nn.Module], torch.Tensor]:
    """FedProx's penalty against ``model``'s weights now (the global model just received): the
    sum over trainable parameters of mu/2 (w - w_global)^2, as FLARE's ``PTFedProxLoss`` computes
    it (nvflare/app_opt/pt/fedproxloss.py), restricted to what the optimizer moves."""
    anchor = {name: value.detach().clone() for name, value in model.named_parameters() if value.requires_grad}

    def penalty(current: torch.nn.Module) -> torch.Tensor:
        return (mu / 2) * sum(torch.sum((value - anchor[name]) ** 2)
                              for name, value in current.named_parameters() if name in anchor)
    return penalty


def norm_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the batch-norm tensors of ``model`` (affine weights and running statistics):
    what FedBN (Li et al. 2021, "FedBN: Federated Learning on Non-IID Features via Local Batch
    Normalization") keeps at each site. Frozen layers are included; they never change."""
    norms = {f"{name}.{key}" for name, module in model.named_modules()
             if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for key in module.state_dict()}
    return {name: value.detach().clone() for name, value in model.state_dict().items() if name in norms}


def log_loss(labels: np.ndarray, probability: np.ndarray) -> float:
    p = np.clip(probability, 1e-6, 1 - 1e-6)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def note(out: Path, line: str) -> None:
    """A line, timestamped, in a site's own ``rounds.log`` in ``out``: when it received each
    round's model and what it sent back (its operators' record of what left the site)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "rounds.log", "a", encoding="utf-8") as log:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


class Site:
    """A site's data (prepared once, with the agreed encoders) and its trainer."""

    def __init__(self, cohort: Path, options: TrainOptions, encoders: dict[str, TabularEncoder], out: Path,
                 rounds: int, local_epochs: int = 1, strategy: str = "fedavg",
                 privacy: UpdatePrivacy | None = None, secure_aggregation: bool = False,
                 network: dict | None = None) -> None:
        self.options = replace(options, epochs=rounds * local_epochs)  # the LR schedule spans the federation
        self.local_epochs = local_epochs
        self.strategy = strategy
        self.local_norms: dict[str, torch.Tensor] | None = {} if strategy == "fedbn" else None
        self.privacy = privacy
        self.secure_aggregation = secure_aggregation
        self.network = network  # FederatedNetwork's arguments: the shapes of a first model that arrives flat
        self.out = out
        self.data = TrainingData.prepare(cohort, self.options, encoders=encoders)
        self.trainer: Trainer | None = None

    @classmethod
    def from_plan(cls, plan: dict, name: str, cohort: Path | None = None, out: Path | None = None) -> Site:
        """Site ``name`` of a federation's plan (:func:`.simulate.plan_federation`, which names
        every site's cohort folder and work folder), or, in a deployment, of a plan without
        paths (:func:`.deploy.deployment_plan`) and the ``cohort`` and ``out`` the site was told
        locally."""
        encoders = {m: TabularEncoder.from_dict(raw) for m, raw in plan["encoders"].items()}
        return cls(cohort or Path(plan["sites"][name]), TrainOptions(**plan["options"]), encoders,
                   out or Path(plan["work"]) / name, plan["rounds"], plan["local_epochs"],
                   plan.get("strategy", "fedavg"), UpdatePrivacy(**plan["privacy"]) if plan.get("privacy") else None,
                   bool(plan.get("secure_aggregation")), plan.get("network"))

    @property
    def participants(self) -> int:
        return int(len(self.data.train_index))

    def load(self, weights: dict) -> Trainer:
        """The site's trainer holding ``weights`` (built on the first round)."""
        tensors = to_tensors(weights)
        if self.trainer is None:
            if self.secure_aggregation:  # a site's first model can arrive decrypted, hence flat
                from model_build.federated.network import FederatedNetwork

                tensors = shaped_like(tensors, FederatedNetwork(**self.network).state_dict())
            self.out.mkdir(parents=True, exist_ok=True)
            self.trainer = Trainer(self.options).load_fitted(self.data, self.out, tensors, RunState(), 0.0)
        else:  # in place: the optimizer keeps its parameters
            self.trainer.model.load_state_dict(shaped_like(tensors, self.trainer.model.state_dict()))
        return self.trainer

    def keep_sent(self, round_number: int, weights: dict[str, torch.Tensor], metrics: dict[str, float],
                  fedprox_mu: float | None = None) -> Path:
        """A copy, in the site's own folder, of exactly what it sends in a round and the proximal
        coefficient it trained under: an audit trail for the site (and for the tests that check
        FedAvg's average and FedProx's coefficient against it)."""
        path = self.out / f"sent-round-{round_number}.pt"
        torch.save({"weights": to_tensors(weights), "metrics": metrics, "participants": self.participants,
                    "fedprox_mu": fedprox_mu, "metrics_sent": self.sendable(metrics) is not None}, path)
        return path

    def sendable(self, metrics: dict[str, float]) -> dict[str, float] | None:
        """The metrics that may leave the site: none under differential privacy (a loss on the
        site's participants is not covered by the update's noise) or secure aggregation (FLARE's
        encryptor encrypts the weights, not the metrics beside them), else the two aggregate losses."""
        if self.privacy is not None or self.secure_aggregation:
            return None
        return {name: metrics[name] for name in ("validation_log_loss", "train_loss") if name in metrics}

    def write_bundle(self, weights: dict, out: Path, fedprox_mu: float | None = None) -> Path:
        """The federation's global ``weights`` as a normal bundle in ``out``, its threshold chosen
        on this site's inner validation split (the simulation's first site, or the cohort a
        deployed coordinator holds). Its training.json records how the federation trained, with
        the differential privacy its updates had."""
        state = RunState(epoch=self.options.epochs, best_epoch=self.options.epochs)  # rounds x local epochs
        privacy = None if self.privacy is None else {
            **self.privacy.to_dict(), "noise_multiplier": self.privacy.noise_multiplier,
            "covers": "each site's weight updates", "not_covered": UpdatePrivacy.not_covered(self.options.modalities)}
        record = {"strategy": self.strategy, "rounds": self.options.epochs // self.local_epochs,
                  "local_epochs": self.local_epochs, "fedprox_mu": fedprox_mu, "privacy": privacy}
        out.mkdir(parents=True, exist_ok=True)
        return Trainer(self.options).load_fitted(self.data, out, to_tensors(weights), state, 0.0).finish(
            training={"federation": record})

    def note(self, line: str) -> None:
        note(self.out, line)

    def evaluate(self) -> float:
        """Log loss of the loaded model on this site's inner validation participants."""
        held_out, _, fused = self.trainer.held_out_outputs()
        return log_loss(held_out.labels, fused.probability)

    def train_round(self, weights: dict, round_number: int,
                    fedprox_mu: float | None = None) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Global weights in; the site's weights (CPU tensors: FLARE's PyTorch Client API drops
        anything else) and aggregate metrics out. With ``fedprox_mu`` (FedProx, Li et al. 2020)
        every batch's loss also pays mu/2 ||w - w_global||^2 over the trainable weights, which
        keeps a site with an unusual scanner or case mix from drifting far in its local epochs.
        Under FedBN the site trains with the batch-norm layers it ended its last round with; the
        validation loss is still that of the global model as received (the server's average of
        every site's layers, batch norms included), the model the federation ends in."""
        trainer = self.load(weights)
        received = {name: value.detach().cpu().clone() for name, value in trainer.model.state_dict().items()}
        metrics = {"validation_log_loss": self.evaluate()}  # of the global model received
        if self.local_norms:  # FedBN, from round 2 on: back to this site's own batch norms
            trainer.model.load_state_dict(self.local_norms, strict=False)
        penalty = None if fedprox_mu is None else proximal_term(trainer.model, fedprox_mu)
        task = trainer.progress.add_task("local epochs", total=None)
        losses = [trainer.train_epoch(round_number * self.local_epochs + e, task, penalty)
                  for e in range(self.local_epochs)]
        trainer.progress.remove_task(task)
        metrics["train_loss"] = float(losses[-1])
        if self.local_norms is not None:
            self.local_norms = norm_state(trainer.model)
        sent = {name: value.detach().cpu().clone() for name, value in trainer.model.state_dict().items()}
        if self.privacy is not None:
            sent, clipping = privatize(sent, received, private_names(trainer.model), self.privacy,
                                       self.privacy.noise_multiplier)
            metrics |= clipping | {"noise_multiplier": self.privacy.noise_multiplier}
        return sent, metrics
