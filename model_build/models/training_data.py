"""What one training run learns from, prepared once before its first epoch.

A run needs the same handful of things whoever starts it: the participants, the modalities they
have, the inner split, tabular encoders fitted on the training rows only, and every input in
memory. :meth:`TrainingData.prepare` is the one place they are made, for ``sarco train`` (a
cohort's labelled training participants), the study (a fold's rows, a shared image library, a
frozen image branch) and an ensemble (one member's split), so all three train on inputs built
the same way. Prepared data does not change; its fingerprint guards a resumed run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from rich.progress import Progress

from model_build.cohort import Cohort, load_cohort
from model_build.models import MODALITIES
from model_build.models.branch import ImageBranch
from model_build.models.data import (TABULAR_MODALITIES, Arrays, ImageLibrary, build_arrays, count_media,
                                     data_hash, tabular_columns)
from model_build.models.recipes import how_asked
from model_build.models.splits import TrainingError, check_class_counts, inner_split, training_rows
from model_build.models.tabular import TabularEncoder
from sarco_core.preprocess import PreprocessParams, Preprocessor

if TYPE_CHECKING:
    from model_build.models.train import TrainOptions


def available_modalities(cohort: Cohort, rows: pd.DataFrame) -> list[str]:
    """The modalities these participants have: images listed, or tabular columns declared."""
    found = []
    if count_media(cohort, rows["participant_id"].tolist()) > 0:
        found.append("image")
    found += [m for m in TABULAR_MODALITIES if tabular_columns(cohort, m)]
    return found


def resolve_modalities(cohort: Cohort, rows: pd.DataFrame, wanted: list[str] | None) -> list[str]:
    """``wanted`` in canonical order (None: all the participants have), each checked to exist."""
    found = available_modalities(cohort, rows)
    if wanted is None:
        if not found:
            raise TrainingError(f"{cohort.root}: no images and no clinical or lab columns; fix: list "
                                "images in images.csv or declare columns in schema.yaml")
        return found
    for modality in wanted:
        if modality not in MODALITIES:
            raise TrainingError(f"unknown modality {modality!r}; fix: use {', '.join(MODALITIES)}")
        if modality not in found:
            hint = ("list images in images.csv or videos.csv" if modality == "image"
                    else f"declare columns with role: {modality} in schema.yaml")
            raise TrainingError(f"{cohort.root}: the training participants have no {modality} data; "
                                f"fix: {hint}, or leave {modality} out of --modalities")
    return [m for m in MODALITIES if m in wanted]


def read_library(cohort: Cohort, participant_ids: list[str], options: TrainOptions,
                 progress: Progress) -> ImageLibrary:
    """Every image of these participants, prepared once for several trainings with ``options``."""
    task = progress.add_task("reading images", total=count_media(cohort, participant_ids))
    library = ImageLibrary.read(cohort, participant_ids, Preprocessor(options.preprocess_params()),
                                options.frames_per_video, lambda n: progress.advance(task, n))
    progress.remove_task(task)
    return library


@dataclass
class TrainingData:
    """One run's participants and inputs; ``train_index`` and ``validation_index`` are positions
    in ``rows`` (and ``arrays``). With a ``branch``, the image input is the frozen branch's
    pooled features instead of the images. Made by :meth:`prepare`."""

    cohort: Cohort
    rows: pd.DataFrame
    modalities: list[str]
    train_index: np.ndarray
    validation_index: np.ndarray
    encoders: dict[str, TabularEncoder]
    preprocessor: Preprocessor
    frames_per_video: int
    library: ImageLibrary | None
    branch: ImageBranch | None
    arrays: Arrays = field(init=False)
    load_seconds: float = field(init=False)

    @classmethod
    def prepare(cls, cohort: Path | Cohort, options: TrainOptions, progress: Progress | None = None, *,
                rows: pd.DataFrame | None = None, library: ImageLibrary | None = None,
                branch: ImageBranch | None = None,
                split: tuple[np.ndarray, np.ndarray] | None = None,
                encoders: dict[str, TabularEncoder] | None = None) -> TrainingData:
        """By default the labelled ``options.train_cohort`` participants, split by the seed and
        read from disk; ``rows``, ``library``, ``branch`` and ``split`` replace those parts, and
        ``encoders`` the tabular encoders fitted here (a federation's, agreed between sites so
        that every site's network has the same inputs: :mod:`model_build.federated.encoders`)."""
        started = time.perf_counter()
        cohort = cohort if isinstance(cohort, Cohort) else load_cohort(cohort)
        if rows is None:
            rows = training_rows(cohort, options.train_cohort)
        else:
            check_class_counts(rows, f"the {len(rows)} training participants")
        modalities = resolve_modalities(cohort, rows, options.modalities)
        if options.mixup is not None and modalities != ["image"]:
            raise TrainingError(f"{how_asked(options, 'mixup', '--mixup')} blends images, and this model also "
                                f"trains on {', '.join(m for m in modalities if m != 'image')}: a participant's "
                                "table would meet another participant's image; fix: add --modalities image, or "
                                "drop the mixup")
        labels = rows["label"].astype(int).to_numpy()
        train_index, validation_index = split if split is not None else \
            inner_split(labels, options.validation_fraction, options.seed)
        fit_rows = rows.iloc[train_index]  # the held-out rows must not shape the encoders either
        if encoders is None:
            encoders = {m: TabularEncoder.fit(fit_rows, tabular_columns(cohort, m)) for m in modalities if m != "image"}
        data = cls(cohort, rows, modalities, train_index, validation_index, encoders,
                   Preprocessor(options.preprocess_params()), options.frames_per_video, library, branch)
        data.arrays = data._read_arrays(progress or Progress(disable=True))
        data.load_seconds = time.perf_counter() - started
        return data

    def _read_arrays(self, progress: Progress) -> Arrays:
        ids = self.rows["participant_id"].tolist()
        reading = "image" in self.modalities and self.library is None
        total = count_media(self.cohort, ids) if reading else 0
        task = progress.add_task("reading images", total=total or None, visible=total > 0)
        arrays = self.arrays_for(self.rows, lambda n: progress.advance(task, n))
        progress.remove_task(task)
        return arrays

    def arrays_for(self, frame: pd.DataFrame, on_progress: Callable[[int], None] | None = None) -> Arrays:
        """Model inputs of any participants (rows of ``cohort.participants``), built as in training."""
        if self.branch is None or "image" not in self.modalities:
            return build_arrays(self.cohort, frame, self.modalities, self.encoders, self.preprocessor,
                                self.frames_per_video, on_progress, self.library)
        tabular = [m for m in self.modalities if m != "image"]
        arrays = build_arrays(self.cohort, frame, tabular, self.encoders, None)
        features, has_image = self.branch.features(arrays.ids)
        columns = iter(arrays.present.T)
        present = np.column_stack([has_image if m == "image" else next(columns) for m in self.modalities])
        return Arrays(arrays.ids, arrays.labels, present, {**arrays.tables, "image": features})

    @property
    def preprocess(self) -> PreprocessParams:
        return self.preprocessor.params

    @property
    def data_hash(self) -> str:
        """SHA-256 of the rows, labels and model inputs used and of every image file read."""
        columns = ["participant_id", "label"] + [c for e in self.encoders.values() for c in e.columns]
        return data_hash(self.rows, columns, self._digests())

    def _digests(self) -> list[str]:
        if "image" not in self.modalities:
            return []
        if self.arrays.images is not None:
            return self.arrays.images.digests
        return self.branch.library.subset(self.arrays.ids).digests

    def fingerprint(self, options: TrainOptions) -> dict:
        """What a run with ``options`` on this data is: a checkpoint or a finished ensemble member
        is reused only by a run with the same fingerprint (threads and device may differ)."""
        return {"options": options.fingerprint(), "data_hash": self.data_hash,
                "validation_rows": self.validation_index.tolist()}
