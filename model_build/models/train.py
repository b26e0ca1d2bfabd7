"""The one training loop, for every modality subset and fusion, ending in a model bundle.

Reproducible from the seed alone: the inner split, initial weights, batch order, augmentation
and dropout of every epoch are all derived from ``(seed, epoch)``, so a run resumed from its
last checkpoint after a crash ends with the same weights as one that never stopped.
Early stopping watches the log-loss of the fused probability on an inner validation split of
participants, stratified by label; the decision threshold is chosen on that split too.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress, TaskID

from model_build.cohort import Cohort, load_cohort
from model_build.models import MODALITIES
from model_build.models import bundle as bundle_io
from model_build.models.augment import Augmenter
from model_build.models.branch import FeatureInput, ImageBranch
from model_build.models.data import (TABULAR_MODALITIES, Arrays, ImageLibrary, ImageSet, available_cores,
                                     build_arrays, count_media, data_hash, tabular_columns)
from model_build.models.evidential import annealing_weight
from model_build.models.export import export_onnx
from model_build.models.fusion import FusionModel, ModelConfig, Stacker, read_out, training_loss
from model_build.models.predict import autocast_for, infer, make_batch, predict_arrays
from model_build.models.report import model_card, validation_metrics
from model_build.models.splits import TrainingError, check_class_counts, inner_split, training_rows
from model_build.models.tabular import TabularEncoder
from sarco_core.bundle import ONNX, write_manifest
from sarco_core.files import atomic_path
from sarco_core.preprocess import PreprocessParams, Preprocessor

CHECKPOINT = ".checkpoint.pt"



@dataclass
class TrainOptions:
    """Every choice that shapes the model; all of it is stored in the bundle's training.json."""

    modalities: list[str] | None = None      # None: every modality the cohort has
    fusion: str = "evidential"
    train_cohort: str = "development"
    epochs: int = 12
    seed: int = 0
    batch_size: int = 16                     # participants per step
    learning_rate: float = 1e-3              # heads and tabular encoders
    backbone_learning_rate: float = 3e-4     # the pretrained image network
    weight_decay: float = 1e-4
    backbone: str = "efficientnet-lite0"
    image_size: int = 128
    freeze_blocks: int = 0
    pretrained: bool = True
    image_weights: str | None = None
    crop_to_scan: bool = True
    field_of_view_mm: float | None = None
    frames_per_video: int = 4
    images_per_step: int | None = None       # random images per participant in a training step; None: all
    ensemble: int = 1                        # image models trained on cross-fitted splits, averaged (ensemble.py)
    weight_average: float | None = None      # EMA decay per step of the weights kept and validated; None: off
    validation_fraction: float = 0.2
    patience: int = 4
    augment: bool = True
    threads: int | None = None
    device: str = "auto"

    @classmethod
    def quick(cls, **overrides) -> TrainOptions:
        """Seconds, not minutes: 64 px, 2 epochs; for smoke tests and trying a cohort out."""
        return replace(cls(image_size=64, epochs=2, patience=2), **overrides)

    def preprocess_params(self) -> PreprocessParams:
        """The device preprocessing these options train for (saved in the bundle)."""
        return PreprocessParams(size=self.image_size, crop_to_scan=self.crop_to_scan,
                                field_of_view_mm=self.field_of_view_mm)

    def fingerprint(self) -> dict:
        """What must not change between a run and its resumption (threads and device may)."""
        kept = asdict(self)
        kept.pop("threads")
        kept.pop("device")
        return kept


@dataclass
class RunState:
    """Where a run stands; saved in each checkpoint."""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


def choose_device(name: str) -> torch.device:
    # Deterministic cuBLAS needs this set before CUDA starts (torch's reproducibility notes).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no GPU is visible; fix: use --device cpu")
    return torch.device(name)


def available_modalities(cohort: Cohort, rows: pd.DataFrame) -> list[str]:
    found = []
    if count_media(cohort, rows["participant_id"].tolist()) > 0:
        found.append("image")
    found += [m for m in TABULAR_MODALITIES if tabular_columns(cohort, m)]
    return found


def resolve_modalities(cohort: Cohort, rows: pd.DataFrame, wanted: list[str] | None) -> list[str]:
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


def _cosine_rate(base: float, epoch: int, epochs: int) -> float:
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))


def _optimizer(model: FusionModel, options: TrainOptions) -> torch.optim.Optimizer:
    backbone = [p for p in model.encoders["image"].parameters() if p.requires_grad] if "image" in model.encoders else []
    backbone_ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
    groups = [{"params": rest, "lr": options.learning_rate, "base_lr": options.learning_rate}]
    if backbone:
        groups.append({"params": backbone, "lr": options.backbone_learning_rate,
                       "base_lr": options.backbone_learning_rate})
    return torch.optim.AdamW(groups, weight_decay=options.weight_decay)


def _weight_average(model: FusionModel, decay: float | None) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of the weights and batch-norm statistics, updated every
    step: on a few hundred participants the last step's weights swing with the last batches, and
    the average is a flatter, steadier model (it also moves less under INT8 rounding)."""
    if decay is None:
        return None
    if not 0.0 <= decay < 1.0:
        raise TrainingError(f"--weight-average {decay}: use a decay in [0, 1), e.g. 0.95")
    average = torch.optim.swa_utils.get_ema_multi_avg_fn(decay)
    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=average, use_buffers=True)


def _log_loss(labels: np.ndarray, probability: np.ndarray) -> float:
    p = np.clip(probability, 1e-6, 1 - 1e-6)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


class Trainer:
    """One run's data, model and state: :meth:`fit` trains (resumable), :meth:`finish` writes the bundle.

    By default it trains on the labelled ``train_cohort`` participants, read from disk. The
    study passes ``rows`` (a fold's participants), a ``library`` of images read once for all
    its trainings, and for fusion models the fold's frozen image ``branch``; an ensemble passes
    each member's ``split`` (positions in ``rows`` to train on and to hold out).
    """

    def __init__(self, cohort: Path | Cohort, out: Path, options: TrainOptions,
                 progress: Progress | None = None, *, rows: pd.DataFrame | None = None,
                 library: ImageLibrary | None = None, branch: ImageBranch | None = None,
                 split: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.out, self.options = out, options
        self.progress = progress or Progress(disable=True)
        self.device = choose_device(options.device)
        torch.set_num_threads(options.threads or available_cores())
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.timings: dict[str, float] = {}
        started = time.perf_counter()
        self.cohort = cohort if isinstance(cohort, Cohort) else load_cohort(cohort)
        if rows is None:
            self.rows = training_rows(self.cohort, options.train_cohort)
        else:
            check_class_counts(rows, f"the {len(rows)} training participants")
            self.rows = rows
        self.library, self.branch = library, branch
        self.modalities = resolve_modalities(self.cohort, self.rows, options.modalities)
        labels = self.rows["label"].astype(int).to_numpy()
        self.train_index, self.validation_index = split if split is not None else \
            inner_split(labels, options.validation_fraction, options.seed)
        fit_rows = self.rows.iloc[self.train_index]
        self.encoders = {m: TabularEncoder.fit(fit_rows, tabular_columns(self.cohort, m))
                         for m in self.modalities if m != "image"}
        self.preprocess = options.preprocess_params()
        self.preprocessor = Preprocessor(self.preprocess)
        self.arrays = self._load_arrays()
        self.timings["load_seconds"] = time.perf_counter() - started
        self.config = ModelConfig(
            modalities=self.modalities, fusion=options.fusion, backbone=options.backbone,
            image_size=options.image_size, freeze_blocks=options.freeze_blocks,
            tabular_inputs={m: int(self.arrays.tables[m].shape[1]) for m in self.arrays.tables})
        torch.manual_seed(options.seed)
        weights = Path(options.image_weights) if options.image_weights else None
        self.model = FusionModel(self.config, options.pretrained and branch is None, weights)
        if branch is not None and "image" in self.modalities:
            self._install_branch(branch)
        self.model.to(self.device)
        self.optimizer = _optimizer(self.model, options)
        self.augmenter = Augmenter(options.seed) if options.augment and "image" in self.modalities else None
        train_labels = self.arrays.labels[self.train_index]
        counts = np.bincount(train_labels, minlength=2)
        self.class_weight = torch.tensor(len(train_labels) / (2.0 * counts), dtype=torch.float32)
        self.state = RunState()
        self.average = _weight_average(self.model, options.weight_average)
        self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.stacker: Stacker | None = None
        self.threshold: dict | None = None

    def _install_branch(self, branch: ImageBranch) -> None:
        """The image head takes the branch's trained weights and stays frozen; the encoder is
        replaced by its precomputed features until :meth:`finish` puts a copy back."""
        head = self.model.heads["image"]
        head.load_state_dict(branch.scorer.head.state_dict())
        for parameter in head.parameters():
            parameter.requires_grad_(False)
        self.model.encoders["image"] = FeatureInput(branch.out_features)

    def arrays_for(self, frame: pd.DataFrame, on_progress=None) -> Arrays:
        """Model inputs of any participants (rows of ``cohort.participants``), built as in training."""
        if self.branch is None or "image" not in self.modalities:
            return build_arrays(self.cohort, frame, self.modalities, self.encoders, self.preprocessor,
                                self.options.frames_per_video, on_progress, self.library)
        tabular = [m for m in self.modalities if m != "image"]
        arrays = build_arrays(self.cohort, frame, tabular, self.encoders, None)
        features, has_image = self.branch.features(arrays.ids)
        columns = iter(arrays.present.T)
        present = np.column_stack([has_image if m == "image" else next(columns) for m in self.modalities])
        return Arrays(arrays.ids, arrays.labels, present, {**arrays.tables, "image": features})

    def _load_arrays(self) -> Arrays:
        ids = self.rows["participant_id"].tolist()
        reading = "image" in self.modalities and self.library is None
        total = count_media(self.cohort, ids) if reading else 0
        task = self.progress.add_task("reading images", total=total or None, visible=total > 0)
        arrays = self.arrays_for(self.rows, lambda n: self.progress.advance(task, n))
        self.progress.remove_task(task)
        return arrays

    @property
    def data_hash(self) -> str:
        columns = ["participant_id", "label"] + [c for e in self.encoders.values() for c in e.columns]
        return data_hash(self.rows, columns, self._digests())

    def _digests(self) -> list[str]:
        if "image" not in self.modalities:
            return []
        if self.arrays.images is not None:
            return self.arrays.images.digests
        return self.branch.library.subset(self.arrays.ids).digests

    # --- checkpoints -------------------------------------------------------------------------

    def _fingerprint(self) -> dict:
        return {"options": self.options.fingerprint(), "data_hash": self.data_hash,
                "validation_rows": self.validation_index.tolist()}

    def save_checkpoint(self) -> None:
        """Atomic, every epoch; loaded back with ``weights_only=True`` (plain tensors and dicts)."""
        with atomic_path(self.out / CHECKPOINT) as temporary:
            torch.save({"model": self.model.state_dict(), "best": self.best_weights,
                        "average": None if self.average is None else self.average.state_dict(),
                        "optimizer": self.optimizer.state_dict(), "state": asdict(self.state),
                        "fingerprint": self._fingerprint()}, temporary)

    def resume(self) -> None:
        path = self.out / CHECKPOINT
        if not path.is_file():
            raise TrainingError(f"{path}: no checkpoint to resume from; fix: run without --resume")
        saved = torch.load(path, map_location=self.device, weights_only=True)
        if saved["fingerprint"] != self._fingerprint():
            raise TrainingError(f"{path}: was written with other options or data; fix: resume with the "
                                "same command line and cohort, or train into a new --out folder")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.best_weights = saved["best"]
        if self.average is not None:
            self.average.load_state_dict(saved["average"])
        self.state = RunState(**saved["state"])

    # --- the loop ----------------------------------------------------------------------------

    def train_epoch(self, epoch: int, task: TaskID) -> float:
        """One pass over the training rows; advances ``task`` (of ``self.progress``) per batch."""
        options = self.options
        torch.manual_seed(int(np.random.default_rng([options.seed, epoch, 1]).integers(2**31)))
        for group in self.optimizer.param_groups:
            group["lr"] = _cosine_rate(group["base_lr"], epoch, options.epochs)
        kl_weight = annealing_weight(epoch, max(1, options.epochs // 2))
        order = np.random.default_rng([options.seed, epoch]).permutation(self.train_index)
        batches = [order[i:i + options.batch_size] for i in range(0, len(order), options.batch_size)]
        self.progress.update(task, total=len(batches))
        self.model.train()
        total = 0.0
        for number, rows in enumerate(batches):
            augment = None if self.augmenter is None else (lambda p, i: self.augmenter(p, epoch, i))
            sample = None if options.images_per_step is None else \
                (options.images_per_step, np.random.default_rng([options.seed, epoch, 2, number]))
            batch = make_batch(self.arrays, rows, self.preprocessor, augment, sample).to(self.device)
            target = torch.from_numpy(self.arrays.labels[rows]).to(self.device)
            with autocast_for(self.device):
                outputs = self.model(batch)
            loss = training_loss(outputs, target, batch.present.float(), options.fusion,
                                 self.class_weight.to(self.device)[target], kl_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.average is not None:
                self.average.update_parameters(self.model)
            total += float(loss.detach()) * len(rows)
            self.progress.advance(task)
        return total / len(order)

    def validation_readout(self, stacker: Stacker | None = None, model: FusionModel | None = None):
        held_out = _subset(self.arrays, self.validation_index)
        outputs = infer(model or self.model, held_out, self.preprocessor, self.device)
        return held_out, outputs, read_out(outputs, torch.from_numpy(held_out.present), self.options.fusion, stacker)

    def fit(self) -> None:
        """Epochs until the budget or the patience runs out; leaves the best weights loaded."""
        options = self.options
        started = time.perf_counter()
        while self.state.epoch < options.epochs and self.state.bad_epochs < options.patience:
            epoch = self.state.epoch
            task = self.progress.add_task(f"epoch {epoch + 1}/{options.epochs}", total=None)
            train_loss = self.train_epoch(epoch, task)
            kept = self.model if self.average is None else self.average.module
            held_out, _, readout = self.validation_readout(model=kept)
            loss = _log_loss(held_out.labels, readout.probability)
            self.progress.update(task, outcome=f"train loss {train_loss:.4f}, validation log loss {loss:.4f}")
            self.progress.remove_task(task)
            self.state.history.append({"epoch": epoch + 1, "train_loss": train_loss, "validation_log_loss": loss})
            if loss < self.state.best_loss:
                self.state.best_loss, self.state.best_epoch, self.state.bad_epochs = loss, epoch + 1, 0
                self.best_weights = {k: v.detach().clone() for k, v in kept.state_dict().items()}
            else:
                self.state.bad_epochs += 1
            self.state.epoch = epoch + 1
            self.save_checkpoint()
        self.timings["train_seconds"] = time.perf_counter() - started
        self.model.load_state_dict(self.best_weights)

    def settle(self) -> dict:
        """Fit the stacker (``late``) and choose the threshold on the inner validation split;
        returns the validation metrics. Needed before :meth:`predict` and :meth:`finish`."""
        held_out, outputs, _ = self.validation_readout()
        present = held_out.present.astype(float)
        self.stacker = _fit_stacker(outputs.logits.numpy(), present, held_out.labels) \
            if self.options.fusion == "late" else None
        readout = read_out(outputs, torch.from_numpy(held_out.present), self.options.fusion, self.stacker)
        metrics, self.threshold = validation_metrics(held_out, outputs, readout, self.modalities,
                                                     self.options.fusion)
        return metrics

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The readout table (as ``sarco evaluate`` writes it) of any participants of the cohort."""
        if self.threshold is None:
            self.settle()
        arrays = self.arrays_for(frame)
        return predict_arrays(self.model, self.options.fusion, self.stacker, self.threshold["value"], arrays,
                              self.preprocessor, self.device)

    def image_scorer(self):
        """The trained image encoder and head (the real encoder, also for a frozen branch)."""
        if self.branch is not None:
            return self.branch.scorer
        return self.model.image_scorer()

    def finish(self) -> Path:
        """Stacker, threshold, metrics, ONNX and manifest: the bundle."""
        metrics = self.settle()
        metrics["baselines"] = self._baselines()
        return self.write_bundle(self._deployable_model(), self.config, metrics)

    def write_bundle(self, model: FusionModel, config: ModelConfig, metrics: dict,
                     training: dict | None = None) -> Path:
        """ONNX, every bundle file and the manifest of ``model`` (the stacker and threshold
        already settled); ``training`` replaces entries of the training metadata."""
        threshold = self.threshold
        if "image" in self.modalities:
            metrics["onnx_parity_max_abs_diff"] = export_onnx(
                model.image_scorer(), config.image_size, self.out / ONNX)
        bundle = bundle_io.Bundle(
            model=model, config=config, preprocess=self.preprocess,
            encoders=self.encoders, threshold=threshold["value"], input_schema=self._input_schema(),
            training={**self._training_metadata(metrics, threshold), **(training or {})}, stacker=self.stacker,
            frames_per_video=self.options.frames_per_video)
        bundle_io.write_bundle_files(bundle, self.out, model_card(bundle))
        write_manifest(self.out)
        (self.out / CHECKPOINT).unlink(missing_ok=True)
        return self.out

    def _deployable_model(self) -> FusionModel:
        """The trained model on the CPU, with a frozen branch's real encoder put back in."""
        self.model.cpu().eval()
        if self.branch is None or "image" not in self.modalities:
            return self.model
        model = copy.deepcopy(self.model)
        model.encoders["image"] = self.branch.encoder()
        return model

    def _baselines(self) -> dict:
        """Validation AUC of the scikit-learn baselines on each tabular modality."""
        from model_build.models.tabular import fit_baselines
        from model_build.stats import roc_auc

        results = {}
        train, held_out = self.train_index, self.validation_index
        for modality, table in self.arrays.tables.items():
            fitted = fit_baselines(table[train], self.arrays.labels[train], self.options.seed)
            results[modality] = {name: roc_auc(self.arrays.labels[held_out], model.predict_proba(table[held_out])[:, 1])
                                 for name, model in fitted.items()}
        return results

    def _input_schema(self) -> dict:
        schema: dict = {}
        if "image" in self.modalities:
            size = self.config.image_size
            schema["image"] = {"onnx_input": "image", "shape": ["batch", 1, size, size], "dtype": "float32",
                               "onnx_output": "logits", "output_shape": ["batch", 2],
                               "participant_pooling": "mean of logits over the participant's frames"}
        columns = self.cohort.schema.to_dict()["columns"]
        for modality, encoder in self.encoders.items():
            schema[modality] = {name: columns.get(name, {"type": "numeric"}) for name in encoder.columns}
        return schema

    def _training_metadata(self, metrics: dict, threshold: dict) -> dict:
        import monai
        import onnx
        import onnxruntime
        import sklearn

        return {
            "cohort": str(self.cohort.root.resolve().name),
            "train_cohort": self.options.train_cohort,
            "data_hash": self.data_hash,
            "seed": self.options.seed,
            "options": asdict(self.options),
            "participants": {"train": len(self.train_index), "validation": len(self.validation_index),
                             "positive": int(self.arrays.labels.sum())},
            "images": 0 if self.arrays.images is None else int(len(self.arrays.images.pixels)),
            "files_left_out": [] if self.arrays.images is None else self.arrays.images.skipped,
            "image_branch": "frozen, trained by the image model on the same participants"
            if self.branch is not None and "image" in self.modalities else None,
            "epochs_run": self.state.epoch, "best_epoch": self.state.best_epoch, "history": self.state.history,
            "threshold": threshold, "metrics": metrics,
            "device": str(self.device), "threads": torch.get_num_threads(), "timings": self.timings,
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "monai": monai.__version__, "scikit-learn": sklearn.__version__,
                         "numpy": np.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__},
        }


def _subset(arrays: Arrays, rows: np.ndarray) -> Arrays:
    images = None
    if arrays.images is not None:
        chosen, owner = arrays.images_of(rows)
        images = ImageSet(arrays.images.pixels[chosen], owner)
    return Arrays([arrays.ids[i] for i in rows], arrays.labels[rows], arrays.present[rows],
                  {m: t[rows] for m, t in arrays.tables.items()}, images)


def _fit_stacker(logits: np.ndarray, present: np.ndarray, labels: np.ndarray) -> Stacker:
    from sklearn.linear_model import LogisticRegression

    log_odds = (logits[:, :, 1] - logits[:, :, 0]) * present
    fitted = LogisticRegression(C=1.0, class_weight="balanced").fit(log_odds, labels)
    return Stacker(coef=[float(c) for c in fitted.coef_[0]], intercept=float(fitted.intercept_[0]))


def train(cohort: Path, out: Path, options: TrainOptions, resume: bool = False,
          progress: Progress | None = None) -> Path:
    """Train on ``cohort`` and write the bundle to ``out``; see :class:`TrainOptions`."""
    if not resume and out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out}: is not empty; fix: choose a new --out folder, or add --resume "
                            "to continue an interrupted run there")
    if options.ensemble < 1:
        raise TrainingError(f"--ensemble {options.ensemble}: use 1 (one model) or more")
    out.mkdir(parents=True, exist_ok=True)
    if options.ensemble > 1:
        from model_build.models.ensemble import train_ensemble

        return train_ensemble(cohort, out, options, resume, progress)
    trainer = Trainer(cohort, out, options, progress)
    if resume:
        trainer.resume()
    trainer.fit()
    return trainer.finish()
