"""An ensemble of image models, cross-fitted the way nnU-Net trains and ensembles its folds.

On a few hundred participants one image network is noisy: trained again with another seed it
ranks the same external participants differently (two seeds of the study's settings: external
AUC 0.843 and 0.826 on the large synthetic cohort), and the mean of several networks' logits is
steadier than any one of them. ``--ensemble K`` splits the training participants into K
stratified folds; member k trains on the other folds and stops early on fold k. So every
participant is held out by exactly one member: the decision threshold is chosen on those
out-of-fold predictions (all training participants instead of one 20 % split), and together
the members have seen every participant.

The bundle holds one network whose image encoder is the K members side by side and whose head
averages their logits (:class:`model_build.models.image.EnsembleEncoder`): the device runs one
ONNX graph and pools frames exactly as for a single model, at K times the compute.

Each finished member is kept in ``OUT/.members/k/`` (weights and history), so ``--resume``
after a crash redoes only the member that was interrupted, from its last epoch.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress
from safetensors.torch import load_file
from sklearn.model_selection import StratifiedKFold

from model_build.cohort import Cohort, load_cohort
from model_build.models.bundle import save_weights
from model_build.models.checkpoint import CHECKPOINT, RunState
from model_build.models.data import ImageLibrary
from model_build.models.fusion import FusionModel, Outputs, Stacker, fuse_outputs
from model_build.models.recipes import how_asked
from model_build.models.report import validation_metrics
from model_build.models.splits import TrainingError, training_rows
from model_build.models.train import Trainer, TrainOptions
from model_build.models.training_data import TrainingData, read_library, resolve_modalities
from sarco_core.files import write_json

MEMBERS = ".members"
MEMBER_WEIGHTS = "member.safetensors"
MEMBER_STATE = "member.json"


def cross_fitted_splits(labels: np.ndarray, members: int, seed: int,
                        asked: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``members`` (train, held-out) position pairs: stratified folds, each held out once.
    ``asked`` names how the ensemble was asked for in the messages (:func:`ensemble_asked`)."""
    asked = asked or f"--ensemble {members}"
    counts = np.bincount(labels, minlength=2)
    if members < 2:
        raise TrainingError(f"{asked}: an ensemble needs 2 or more members")
    if counts.min() < 2 * members:
        raise TrainingError(f"{asked} needs at least {2 * members} participants of each class "
                            f"(two per held-out fold); the training cohort has {counts[1]} with sarcopenia and "
                            f"{counts[0]} without; fix: use fewer members (--ensemble 2, or 1 for one model)")
    folds = StratifiedKFold(n_splits=members, shuffle=True, random_state=seed)
    return [(np.sort(train), np.sort(held_out)) for train, held_out in folds.split(np.zeros(len(labels)), labels)]


def ensemble_asked(options: TrainOptions) -> str:
    """How the user asked for this ensemble, as the messages name it: the recipe that set it
    (``--recipe compact-x3``), else the flag."""
    return how_asked(options, "ensemble", "--ensemble", f"an ensemble of {options.ensemble}")


def member_seed(seed: int, member: int) -> int:
    """Each member's own seed (initial head, batch order, augmentation, dropout)."""
    return int(np.random.SeedSequence([seed, member]).generate_state(1)[0] >> 1)


def train_ensemble(cohort_path: Path, out: Path, options: TrainOptions, resume: bool = False,
                   progress: Progress | None = None) -> Path:
    """Train ``options.ensemble`` image models on cross-fitted splits and write one bundle."""
    progress = progress or Progress(disable=True)
    cohort = load_cohort(cohort_path)
    rows = training_rows(cohort, options.train_cohort)
    started = time.perf_counter()
    ensemble_splits(cohort, rows, options)  # refused before the images are read, not after
    library = read_library(cohort, rows["participant_id"].tolist(), options, progress)
    load_seconds = time.perf_counter() - started
    trainers = fit_ensemble(cohort, rows, library, options, out, resume, progress)
    path = _write_ensemble(trainers, out, options, settle_ensemble(trainers, options), load_seconds)
    shutil.rmtree(out / MEMBERS, ignore_errors=True)
    return path


def ensemble_splits(cohort: Cohort, rows: pd.DataFrame, options: TrainOptions) -> list[tuple[np.ndarray, np.ndarray]]:
    """The members' cross-fitted splits of ``rows``; refuses what an ensemble cannot be (it reads
    no image, so callers can ask before reading them)."""
    asked = ensemble_asked(options)
    if options.fusion == "concat":
        raise TrainingError(f"{asked} works with --fusion evidential or late (an image-only concat head "
                            "has no per-member form); fix: use --fusion evidential")
    if resolve_modalities(cohort, rows, options.modalities) != ["image"]:
        raise TrainingError(f"{asked} trains image models only (the model the device runs); fix: add "
                            "--modalities image, or train one model with --ensemble 1")
    return cross_fitted_splits(rows["label"].astype(int).to_numpy(), options.ensemble, options.seed, asked)


def fit_ensemble(cohort: Cohort, rows: pd.DataFrame, library: ImageLibrary, options: TrainOptions, out: Path,
                 resume: bool = False, progress: Progress | None = None) -> list[Trainer]:
    """The members trained on ``rows``' cross-fitted splits (``OUT/.members/k``), first to last;
    :func:`settle_ensemble` makes the first one predict for all (the cross-validation of
    benchmarks/bench_recipe.py calls the two)."""
    progress = progress or Progress(disable=True)
    splits = ensemble_splits(cohort, rows, options)
    trainers = []
    for member, split in enumerate(splits):
        member_options = replace(options, ensemble=1, seed=member_seed(options.seed, member))
        folder = out / MEMBERS / str(member)
        folder.mkdir(parents=True, exist_ok=True)
        data = TrainingData.prepare(cohort, member_options, progress, rows=rows, library=library, split=split)
        trainers.append(_fit_member(Trainer(member_options, progress), data, folder, resume,
                                    f"member {member + 1}/{len(splits)}"))
    return trainers


@dataclass(frozen=True)
class FinishedMember:
    """A member's trained weights and run state, kept in its folder once it finishes, so that
    ``--resume`` trains again only the members an interruption left unfinished. Like a
    checkpoint, it is reused only by a member with the same fingerprint (options and data)."""

    folder: Path

    def load(self, fingerprint: dict) -> tuple[dict[str, torch.Tensor], RunState, float] | None:
        """Weights, run state and training seconds of this member, or None if it did not finish
        with ``fingerprint``."""
        weights, state = self.folder / MEMBER_WEIGHTS, self.folder / MEMBER_STATE
        if not (weights.is_file() and state.is_file()):
            return None
        saved = json.loads(state.read_text(encoding="utf-8"))
        if saved["fingerprint"] != fingerprint:
            return None
        return load_file(str(weights)), RunState(**saved["state"]), saved["train_seconds"]

    def save(self, trainer: Trainer) -> None:
        save_weights(trainer.model, self.folder / MEMBER_WEIGHTS)
        write_json(self.folder / MEMBER_STATE, {"fingerprint": trainer.fingerprint, "state": asdict(trainer.state),
                                                "train_seconds": trainer.timings["train_seconds"]})


def _fit_member(trainer: Trainer, data: TrainingData, folder: Path, resume: bool, name: str) -> Trainer:
    """Train one member, or load it if an earlier run of the same member finished it."""
    finished = FinishedMember(folder)
    saved = finished.load(data.fingerprint(trainer.options)) if resume else None
    if saved is not None:
        return trainer.load_fitted(data, folder, *saved)
    task = trainer.progress.add_task(name, total=None)
    trainer.fit(data, folder, resume=resume and (folder / CHECKPOINT).is_file())
    trainer.progress.remove_task(task)
    finished.save(trainer)
    trainer.checkpoint.remove()
    return trainer


def compose(members: list[FusionModel]) -> FusionModel:
    """One image model whose logits are the mean of the members' logits."""
    config = replace(members[0].config, image_members=len(members))
    model = FusionModel(config, pretrained=False)
    for slot, member in zip(model.encoders["image"].members, members):
        slot.load_state_dict(member.encoders["image"].state_dict())
    heads = [member.heads["image"][-1] for member in members]
    with torch.no_grad():
        model.heads["image"][-1].weight.copy_(torch.cat([h.weight for h in heads], dim=1) / len(members))
        model.heads["image"][-1].bias.copy_(torch.stack([h.bias for h in heads]).mean(dim=0))
    return model.eval()


def settle_ensemble(trainers: list[Trainer], options: TrainOptions) -> dict:
    """Threshold (and ``late`` stacker) on the members' out-of-fold predictions; the first
    member's trainer then holds the averaged network, so its ``predict`` scores as the bundle
    will (and only predict: its own validation rows trained the other members, so scoring the
    average on them again would flatter it). Returns the out-of-fold validation metrics."""
    lead = trainers[0]
    held, logits = [], []
    for trainer in trainers:
        _, outputs, _ = trainer.held_out_outputs()
        held.append(trainer.data.validation_index)
        logits.append(outputs.logits)
    order = np.concatenate(held)
    out_of_fold = lead.data.arrays.subset(order)
    outputs = Outputs(torch.cat(logits), None)
    present = torch.from_numpy(out_of_fold.present)
    lead.stacker = Stacker.fit(outputs.logits.numpy(), out_of_fold.present.astype(float), out_of_fold.labels) \
        if options.fusion == "late" else None
    fused = fuse_outputs(outputs, present, options.fusion, lead.stacker)
    metrics, threshold = validation_metrics(out_of_fold, outputs, fused, lead.data.modalities, options.fusion)
    lead.threshold = {**threshold, "chosen_on": f"out-of-fold predictions of the members ({len(order)} participants)"}
    metrics["baselines"] = {}
    lead.model = compose([trainer.model.cpu() for trainer in trainers]).to(lead.device)
    return metrics


def _write_ensemble(trainers: list[Trainer], out: Path, options: TrainOptions, metrics: dict,
                    load_seconds: float) -> Path:
    """The bundle of the settled ensemble (:func:`settle_ensemble`)."""
    lead = trainers[0]
    participants = len(lead.data.rows)  # each scored out of fold by one member
    members = [{"seed": t.options.seed, "held_out": len(t.data.validation_index), "epochs_run": t.state.epoch,
                "best_epoch": t.state.best_epoch, "history": t.state.history,
                "train_seconds": t.timings["train_seconds"]} for t in trainers]
    model = lead.model.cpu()
    lead.out, lead.options = out, options  # the first member's trainer writes the ensemble's bundle
    training = {
        "seed": options.seed,
        "participants": {"train": participants, "validation": participants,
                         "positive": int(lead.data.arrays.labels.sum())},
        "validation_is": "out-of-fold: each participant scored by the one member that did not train on it",
        "members": members,
        "epochs_run": max(m["epochs_run"] for m in members),
        "best_epoch": max(m["best_epoch"] for m in members),
        "history": [],
        "timings": {"load_seconds": load_seconds, "train_seconds": sum(m["train_seconds"] for m in members)},
    }
    return lead.write_bundle(model, model.config, metrics, training)
