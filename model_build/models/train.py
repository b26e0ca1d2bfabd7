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
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress, TaskID

from model_build.cohort import Cohort
from model_build.models import bundle as bundle_io
from model_build.models.augment import Augmenter
from model_build.models.branch import FeatureInput, ImageBranch
from model_build.models.checkpoint import Checkpoint, RunState, SavedRun
from model_build.models.data import Arrays, ImageLibrary, available_cores
from model_build.models.evidential import annealing_weight
from model_build.models.export import export_onnx
from model_build.models.fusion import (FusionModel, FusionOutput, ModelBatch, NetworkConfig, Outputs, Stacker,
                                       fuse_outputs, training_loss)
from model_build.models.image import layer_rates
from model_build.models.mixup import mix_participants
from model_build.models.options import TrainOptions
from model_build.models.predict import autocast_for, infer, make_batch, predict_arrays
from model_build.models.report import model_card, validation_metrics
from model_build.models.splits import TrainingError
from model_build.models.training_data import TrainingData
from sarco_core.bundle import ONNX, write_manifest


def choose_device(name: str) -> torch.device:
    # Deterministic cuBLAS needs this set before CUDA starts (torch's reproducibility notes).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no GPU is visible; fix: use --device cpu")
    return torch.device(name)


def _cosine_rate(base: float, epoch: int, epochs: int) -> float:
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))


def _warmup_factor(epoch: int, step: int, steps: int, warmup_epochs: float) -> float:
    """Linear warm-up over the first ``warmup_epochs`` (fractional) epochs, per step: fresh heads
    on a pretrained encoder send large gradients into it at first, and a ramp keeps them from
    undoing the ImageNet features before the heads have settled."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, (epoch + (step + 1) / steps) / warmup_epochs)


def _optimizer(model: FusionModel, options: TrainOptions) -> torch.optim.Optimizer:
    """AdamW with a rate for the heads and tabular encoders, and one for the image encoder (or,
    with ``layer_decay``, one per encoder level)."""
    encoder = model.encoders["image"] if "image" in model.encoders else None
    backbone = [p for p in encoder.parameters() if p.requires_grad] if encoder is not None else []
    backbone_ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
    rates = [(options.learning_rate, rest)]
    if backbone and options.layer_decay is not None:
        rates += layer_rates(encoder, options.backbone_learning_rate, options.layer_decay)
    elif backbone:
        rates.append((options.backbone_learning_rate, backbone))
    groups = [{"params": params, "lr": rate, "base_lr": rate} for rate, params in rates]
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
    """Trains one model, scikit-learn style: the constructor only keeps the options, :meth:`fit`
    reads the data and trains (resumable), :meth:`settle` fits the ``late`` stacker and picks the
    threshold, :meth:`predict` scores participants and :meth:`finish` writes the bundle.

    The work is in ``fit`` rather than the constructor so that one object describes a run before
    it starts, and the study and the ensemble hand their own inputs (a fold's rows, a shared
    image library, a frozen branch, a member's split) to the same call the CLI makes.
    """

    def __init__(self, options: TrainOptions, progress: Progress | None = None) -> None:
        self.options = options
        self.progress = progress or Progress(disable=True)

    def fit(self, cohort: Path | Cohort | TrainingData, out: Path, *, rows: pd.DataFrame | None = None,
            library: ImageLibrary | None = None, branch: ImageBranch | None = None,
            split: tuple[np.ndarray, np.ndarray] | None = None, resume: bool = False) -> Trainer:
        """Train on ``cohort`` (a folder, a loaded cohort, or data already prepared from one, when
        the caller needed its fingerprint first), checkpointing into ``out``; ``rows``,
        ``library``, ``branch`` and ``split`` as in :meth:`TrainingData.prepare`. Epochs run
        until the budget or the patience runs out; the best weights are left loaded."""
        self._start(out)
        data = cohort if isinstance(cohort, TrainingData) else TrainingData.prepare(
            cohort, self.options, self.progress, rows=rows, library=library, branch=branch, split=split)
        self._build(data)
        if resume:
            self._restore(self.checkpoint.load(self.device))
        self._run_epochs()
        return self

    def load_fitted(self, data: TrainingData, out: Path, weights: dict[str, torch.Tensor], state: RunState,
                    train_seconds: float) -> Trainer:
        """A run that finished before (an ensemble member kept by an interrupted ensemble), ready
        to settle and predict as if :meth:`fit` had just trained it."""
        self._start(out)
        self._build(data)
        self.model.load_state_dict(weights)
        self.state = state
        self.timings["train_seconds"] = train_seconds
        return self

    @property
    def fingerprint(self) -> dict:
        return self.data.fingerprint(self.options)

    def _start(self, out: Path) -> None:
        """The torch settings a reproducible run needs, before anything is computed."""
        self.out = out
        self.device = choose_device(self.options.device)
        torch.set_num_threads(self.options.threads or available_cores())
        torch.use_deterministic_algorithms(True, warn_only=True)

    def _build(self, data: TrainingData) -> None:
        """The network, optimiser and a fresh run state for ``data``."""
        options = self.options
        self.data = data
        self.timings: dict[str, float] = {"load_seconds": data.load_seconds}
        self._build_network()
        self.optimizer = _optimizer(self.model, options)
        self.augmenter = Augmenter(options.seed, options.augmentation) \
            if options.augment and "image" in data.modalities else None
        train_labels = data.arrays.labels[data.train_index]
        counts = np.bincount(train_labels, minlength=2)
        self.class_weight = torch.tensor(len(train_labels) / (2.0 * counts), dtype=torch.float32)
        self.state = RunState()
        self.average = _weight_average(self.model, options.weight_average)
        self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.stacker: Stacker | None = None
        self.threshold: dict | None = None
        self.operating_point: dict | None = None  # a study's threshold record, written into the bundle
        self.checkpoint = Checkpoint.in_folder(self.out, self.fingerprint)

    def _build_network(self) -> None:
        """Initial weights drawn from the seed, or a frozen branch's trained image head."""
        options, data = self.options, self.data
        if data.branch is not None and options.flip_average:
            raise TrainingError("flip_average with a frozen image branch: the branch was trained and is exported "
                                "without the mirror; fix: set flip_average on the branch's own training instead")
        self.config = NetworkConfig(
            modalities=data.modalities, fusion=options.fusion, backbone=options.backbone,
            image_size=options.image_size, freeze_blocks=options.freeze_blocks, flip_average=options.flip_average,
            tabular_inputs={m: int(data.arrays.tables[m].shape[1]) for m in data.arrays.tables})
        torch.manual_seed(options.seed)
        weights = Path(options.image_weights) if options.image_weights else None
        self.model = FusionModel(self.config, options.pretrained and data.branch is None, weights)
        if data.branch is not None and "image" in data.modalities:
            self._install_branch(data.branch)
        self.model.to(self.device)

    def _install_branch(self, branch: ImageBranch) -> None:
        """The image head takes the branch's trained weights and stays frozen; the encoder is
        replaced by its precomputed features until :meth:`finish` puts a copy back."""
        head = self.model.heads["image"]
        head.load_state_dict(branch.scorer.head.state_dict())
        for parameter in head.parameters():
            parameter.requires_grad_(False)
        self.model.encoders["image"] = FeatureInput(branch.out_features)

    # --- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        self.checkpoint.save(self.model, self.best_weights, self.average, self.optimizer, self.state)

    def _restore(self, saved: SavedRun) -> None:
        self.model.load_state_dict(saved.model)
        self.optimizer.load_state_dict(saved.optimizer)
        self.best_weights = saved.best
        if self.average is not None:
            self.average.load_state_dict(saved.average)
        self.state = saved.state

    # --- the loop ----------------------------------------------------------------------------

    def _run_epochs(self) -> None:
        options = self.options
        started = time.perf_counter()
        while self.state.epoch < options.epochs and self.state.bad_epochs < options.patience:
            self._epoch(self.state.epoch)
        self.timings["train_seconds"] = time.perf_counter() - started
        self.model.load_state_dict(self.best_weights)

    def _epoch(self, epoch: int) -> None:
        """Train, validate the weights that would be kept, note the best, checkpoint."""
        task = self.progress.add_task(f"epoch {epoch + 1}/{self.options.epochs}", total=None)
        train_loss = self.train_epoch(epoch, task)
        kept = self.model if self.average is None else self.average.module
        held_out, _, fused = self.held_out_outputs(model=kept)
        loss = _log_loss(held_out.labels, fused.probability)
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

    def train_epoch(self, epoch: int, task: TaskID,
                    penalty: Callable[[torch.nn.Module], torch.Tensor] | None = None) -> float:
        """One pass over the training rows; advances ``task`` (of ``self.progress``) per batch.
        ``penalty(model)`` is added to every batch's loss (a federation's FedProx term)."""
        options, arrays = self.options, self.data.arrays
        torch.manual_seed(int(np.random.default_rng([options.seed, epoch, 1]).integers(2**31)))
        rates = [_cosine_rate(group["base_lr"], epoch, options.epochs) for group in self.optimizer.param_groups]
        kl_weight = annealing_weight(epoch, max(1, options.epochs // 2))
        order = np.random.default_rng([options.seed, epoch]).permutation(self.data.train_index)
        batches = [order[i:i + options.batch_size] for i in range(0, len(order), options.batch_size)]
        self.progress.update(task, total=len(batches))
        self.model.train()
        total = 0.0
        for number, rows in enumerate(batches):
            warmup = _warmup_factor(epoch, number, len(batches), options.warmup_epochs)
            for group, rate in zip(self.optimizer.param_groups, rates):
                group["lr"] = rate * warmup
            augment = None if self.augmenter is None else (lambda p, i: self.augmenter(p, epoch, i))
            sample = None if options.images_per_step is None else \
                (options.images_per_step, np.random.default_rng([options.seed, epoch, 2, number]))
            batch = make_batch(arrays, rows, self.data.preprocessor, augment, sample).to(self.device)
            partner, lam = np.arange(len(rows)), 1.0
            if options.mixup is not None:
                batch, partner, lam = mix_participants(batch, options.mixup,
                                                       np.random.default_rng([options.seed, epoch, 3, number]))
            with autocast_for(self.device):
                outputs = self.model(batch)
            loss = lam * self._loss(outputs, batch, arrays.labels[rows], kl_weight)
            if lam < 1.0:
                loss = loss + (1.0 - lam) * self._loss(outputs, batch, arrays.labels[rows][partner], kl_weight)
            if penalty is not None:
                loss = loss + penalty(self.model)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.average is not None:
                self.average.update_parameters(self.model)
            total += float(loss.detach()) * len(rows)
            self.progress.advance(task)
        return total / len(order)

    def _loss(self, outputs: Outputs, batch: ModelBatch, labels: np.ndarray, kl_weight: float) -> torch.Tensor:
        target = torch.from_numpy(labels).to(self.device)
        return training_loss(outputs, target, batch.present.float(), self.options.fusion,
                             self.class_weight.to(self.device)[target], kl_weight)

    def held_out_outputs(self, stacker: Stacker | None = None,
                         model: FusionModel | None = None) -> tuple[Arrays, Outputs, FusionOutput]:
        """The inner validation participants, ``model``'s outputs on them and their fusion: what
        early stopping, the stacker and the threshold are chosen on."""
        held_out = self.data.arrays.subset(self.data.validation_index)
        outputs = infer(model or self.model, held_out, self.data.preprocessor, self.device)
        return held_out, outputs, fuse_outputs(outputs, torch.from_numpy(held_out.present), self.options.fusion,
                                               stacker)

    # --- after the training ------------------------------------------------------------------

    def settle(self) -> dict:
        """Fit the stacker (``late``) and choose the threshold on the inner validation split;
        returns the validation metrics. Needed before :meth:`predict` and :meth:`finish`."""
        held_out, outputs, _ = self.held_out_outputs()
        present = held_out.present.astype(float)
        self.stacker = Stacker.fit(outputs.logits.numpy(), present, held_out.labels) \
            if self.options.fusion == "late" else None
        fused = fuse_outputs(outputs, torch.from_numpy(held_out.present), self.options.fusion, self.stacker)
        metrics, self.threshold = validation_metrics(held_out, outputs, fused, self.data.modalities,
                                                     self.options.fusion)
        return metrics

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The predictions table (as ``sarco evaluate`` writes it) of any participants of the cohort."""
        if self.threshold is None:
            self.settle()
        arrays = self.data.arrays_for(frame)
        return predict_arrays(self.model, self.options.fusion, self.stacker, self.threshold["value"], arrays,
                              self.data.preprocessor, self.device)

    def image_scorer(self):
        """The trained image encoder and head (the real encoder, also for a frozen branch)."""
        if self.data.branch is not None:
            return self.data.branch.scorer
        return self.model.image_scorer()

    def finish(self, operating_point: dict | None = None, training: dict | None = None) -> Path:
        """Stacker, threshold, metrics, ONNX and manifest: the bundle; the checkpoint goes.
        ``operating_point`` (the study's, chosen on out-of-fold predictions) replaces the inner
        split's threshold: its ``refit_threshold`` is the bundle's decision threshold.
        ``training`` adds entries to the training metadata (a federation's record)."""
        metrics = self.settle()
        if operating_point is not None:
            self.threshold = {"value": operating_point["refit_threshold"], "rule": operating_point["rule"],
                              "target": operating_point["target"], "chosen_on": operating_point["chosen_on"]}
            self.operating_point = operating_point
        metrics["baselines"] = self._baselines()
        bundle = self.write_bundle(self._deployable_model(), self.config, metrics, training)
        self.checkpoint.remove()
        return bundle

    def write_bundle(self, model: FusionModel, config: NetworkConfig, metrics: dict,
                     training: dict | None = None) -> Path:
        """ONNX, every bundle file and the manifest of ``model`` (the stacker and threshold
        already settled); ``training`` replaces entries of the training metadata."""
        threshold = self.threshold
        if "image" in self.data.modalities:
            metrics["onnx_parity_max_abs_diff"] = export_onnx(
                model.image_scorer(), config.image_size, self.out / ONNX)
        bundle = bundle_io.Bundle(
            model=model, config=config, preprocess=self.data.preprocess,
            encoders=self.data.encoders, threshold=threshold["value"], input_schema=self._input_schema(),
            training={**self._training_metadata(metrics, threshold), **(training or {})}, stacker=self.stacker,
            frames_per_video=self.options.frames_per_video, operating_point=self.operating_point)
        bundle_io.write_bundle_files(bundle, self.out, model_card(bundle))
        write_manifest(self.out)
        return self.out

    def _deployable_model(self) -> FusionModel:
        """The trained model on the CPU, with a frozen branch's real encoder put back in."""
        self.model.cpu().eval()
        if self.data.branch is None or "image" not in self.data.modalities:
            return self.model
        model = copy.deepcopy(self.model)
        model.encoders["image"] = self.data.branch.encoder()
        return model

    def _baselines(self) -> dict:
        """Validation AUC of the scikit-learn baselines on each tabular modality."""
        from model_build.models.tabular import fit_baselines
        from model_build.stats import roc_auc

        results = {}
        arrays, train, held_out = self.data.arrays, self.data.train_index, self.data.validation_index
        for modality, table in arrays.tables.items():
            fitted = fit_baselines(table[train], arrays.labels[train], self.options.seed)
            results[modality] = {name: roc_auc(arrays.labels[held_out], model.predict_proba(table[held_out])[:, 1])
                                 for name, model in fitted.items()}
        return results

    def _input_schema(self) -> dict:
        schema: dict = {}
        if "image" in self.data.modalities:
            size = self.config.image_size
            schema["image"] = {"onnx_input": "image", "shape": ["batch", 1, size, size], "dtype": "float32",
                               "onnx_output": "logits", "output_shape": ["batch", 2],
                               "participant_pooling": "mean of logits over the participant's frames"}
        columns = self.data.cohort.schema.to_dict()["columns"]
        for modality, encoder in self.data.encoders.items():
            schema[modality] = {name: columns.get(name, {"type": "numeric"}) for name in encoder.columns}
        return schema

    def _training_metadata(self, metrics: dict, threshold: dict) -> dict:
        import monai
        import onnx
        import onnxruntime
        import sklearn

        data, images = self.data, self.data.arrays.images
        return {
            "cohort": str(data.cohort.root.resolve().name),
            "train_cohort": self.options.train_cohort,
            "data_hash": data.data_hash,
            "seed": self.options.seed,
            "options": asdict(self.options),
            "participants": {"train": len(data.train_index), "validation": len(data.validation_index),
                             "positive": int(data.arrays.labels.sum())},
            "images": 0 if images is None else int(len(images.pixels)),
            "files_left_out": [] if images is None else images.skipped,
            "image_branch": "frozen, trained by the image model on the same participants"
            if data.branch is not None and "image" in data.modalities else None,
            "epochs_run": self.state.epoch, "best_epoch": self.state.best_epoch, "history": self.state.history,
            "threshold": threshold, "metrics": metrics,
            "device": str(self.device), "threads": torch.get_num_threads(), "timings": self.timings,
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "monai": monai.__version__, "scikit-learn": sklearn.__version__,
                         "numpy": np.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__},
        }


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
    return Trainer(options, progress).fit(cohort, out, resume=resume).finish()
