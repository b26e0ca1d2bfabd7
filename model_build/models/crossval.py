"""Out-of-fold predictions of one set of training options: the loop `sarco tune` and
benchmarks/bench_recipe.py share. Folds are participants (rows), so no participant's images are
on both sides; each fold's model is trained on the other folds with `sarco train`'s code."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from model_build.cohort import Cohort
from model_build.models.data import ImageLibrary
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
        trainer = Trainer(options_for(fold)).fit(cohort, scratch / f"fold{fold}", rows=rows[fold_of != fold],
                                                 library=library)
        trainer.settle()
        folds.append(Fold(trainer.predict(rows[fold_of == fold]), int(trainer.state.epoch),
                          time.perf_counter() - started))
        advance()
    return folds
