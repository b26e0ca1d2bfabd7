"""Out-of-fold predictions of one set of training options: the loop `sarco tune` and
benchmarks/bench_recipe.py share. Folds are participants (rows), so no participant's images are
on both sides; each fold's model (or ensemble) is trained on the other folds with `sarco train`'s code."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from model_build.cohort import Cohort
from model_build.models.data import ImageLibrary
from model_build.models.ensemble import fit_ensemble, settle_ensemble
from model_build.models.options import TrainOptions
from model_build.models.train import Trainer


@dataclass
class Fold:
    predictions: pd.DataFrame  # `sarco evaluate`'s predictions table of the fold's participants
    epochs_run: int
    seconds: float


def out_of_fold(cohort: Cohort, rows: pd.DataFrame, fold_of: np.ndarray, library: ImageLibrary | None,
                options_for: Callable[[int], TrainOptions], scratch: Path,
                advance: Callable[[], None] = lambda: None) -> list[Fold]:
    """Train ``options_for(k)`` on every fold but k and predict fold k, for each k; checkpoints go
    under ``scratch``. ``advance`` is called after each fold (a progress bar)."""
    folds = []
    for fold in range(int(fold_of.max()) + 1):
        started = time.perf_counter()
        predictions, epochs = _train_and_predict(cohort, rows[fold_of != fold], rows[fold_of == fold], library,
                                                 options_for(fold), scratch / f"fold{fold}")
        folds.append(Fold(predictions, epochs, time.perf_counter() - started))
        advance()
    return folds


def _train_and_predict(cohort: Cohort, training: pd.DataFrame, held_out: pd.DataFrame, library: ImageLibrary | None,
                       options: TrainOptions, out: Path) -> tuple[pd.DataFrame, int]:
    """``held_out``'s predictions by a model (or an ensemble: members on cross-fitted splits of
    ``training``, averaged) trained on ``training``, and the epochs it ran. The trainers go with
    the return, so one fold's networks and optimisers are freed before the next fold trains."""
    if options.ensemble > 1:
        members = fit_ensemble(cohort, training, library, options, out)
        settle_ensemble(members, options)
        return members[0].predict(held_out), max(int(member.state.epoch) for member in members)
    trainer = Trainer(options).fit(cohort, out, rows=training, library=library)
    trainer.settle()
    return trainer.predict(held_out), int(trainer.state.epoch)
