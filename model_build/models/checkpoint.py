"""Where a training run stands, saved after every epoch so that ``--resume`` after a crash ends
with the same weights as a run that never stopped.

The file holds plain tensors, dicts and numbers only, so it loads with ``weights_only=True``:
opening a checkpoint never runs code from it. It is replaced atomically, so a crash while
writing leaves the previous epoch's. A checkpoint carries the fingerprint of the options and
data it was written with (:meth:`TrainingData.fingerprint
<model_build.models.training_data.TrainingData.fingerprint>`) and is refused by any other
run: resuming it there would silently mix two runs into one model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from model_build.models.splits import TrainingError
from sarco_core.files import atomic_path

CHECKPOINT = ".checkpoint.pt"


@dataclass
class RunState:
    """Where a run stands; saved in each checkpoint."""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass
class SavedRun:
    """What a checkpoint restores: the weights being trained, the best ones so far, their moving
    average (None when off), the optimiser and the run state."""

    model: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    average: dict[str, torch.Tensor] | None
    optimizer: dict
    state: RunState


@dataclass(frozen=True)
class Checkpoint:
    """The checkpoint file of the run with ``fingerprint`` in an output folder."""

    path: Path
    fingerprint: dict

    @classmethod
    def in_folder(cls, folder: Path, fingerprint: dict) -> Checkpoint:
        return cls(folder / CHECKPOINT, fingerprint)

    def save(self, model: nn.Module, best: dict[str, torch.Tensor], average: nn.Module | None,
             optimizer: torch.optim.Optimizer, state: RunState) -> None:
        with atomic_path(self.path) as temporary:
            torch.save({"model": model.state_dict(), "best": best,
                        "average": None if average is None else average.state_dict(),
                        "optimizer": optimizer.state_dict(), "state": asdict(state),
                        "fingerprint": self.fingerprint}, temporary)

    def load(self, device: torch.device) -> SavedRun:
        """The saved run, its tensors on ``device``; refused when absent or written by another run."""
        if not self.path.is_file():
            raise TrainingError(f"{self.path}: no checkpoint to resume from; fix: run without --resume")
        saved = torch.load(self.path, map_location=device, weights_only=True)
        if saved["fingerprint"] != self.fingerprint:
            raise TrainingError(f"{self.path}: was written with other options or data; fix: resume with the "
                                "same command line and cohort, or train into a new --out folder")
        return SavedRun(saved["model"], saved["best"], saved["average"], saved["optimizer"],
                        RunState(**saved["state"]))

    def remove(self) -> None:
        """Once the run is finished: a bundle folder holds no checkpoint."""
        self.path.unlink(missing_ok=True)
