"""Training benchmarks: time and external AUC of named configurations, beside the oracle.

    python benchmarks/bench_train.py COHORT --out DIR [--config NAME ...] [--threads N] [--device cpu]

COHORT is a synthetic cohort (`sarco synth`), so truth.csv gives the Bayes-optimal AUC of each
modality on the same external participants. Each configuration is trained on `development`
with `sarco train`'s code, evaluated on `external` with `sarco evaluate`'s code, and one line is
printed: wall and CPU seconds of training, epochs, external AUC (DeLong 95% CI), the oracle AUC
for the same inputs and the gap. Everything is also written to DIR/bench.json.

The targets (docs/models.md): image AUC within 0.03 of the oracle image AUC, fused within 0.03
of the oracle all-modality AUC (on `--size large`), and image training on the paper-size
development cohort under 10 minutes on a 2-core CPU at the AUC of a long run.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from model_build.models.evaluation import run_evaluation
from model_build.models.train import TrainOptions, train
from model_build.study.design import image_options

# What the study's image training sets away from the defaults (seed and modalities aside).
STUDY_IMAGE = {name: value for name, value in asdict(image_options(quick=False, seed=0)).items()
               if name not in ("modalities", "seed") and value != getattr(TrainOptions(), name)}

CONFIGS: dict[str, dict] = {
    # The deployable image model as trained by default, and faster / longer variants.
    "image": {"modalities": ["image"]},
    "image-physical": {"modalities": ["image"], "field_of_view_mm": 50.0},
    "image-frozen": {"modalities": ["image"], "freeze_blocks": 6},
    "image-fast": {"modalities": ["image"], "epochs": 8, "frames_per_video": 1},
    "image-long": {"modalities": ["image"], "image_size": 224, "epochs": 30, "patience": 8},
    # The study's CPU settings (model_build/study/design.py: 80 px, 4 blocks frozen, 6 epochs, one
    # frame per recording, an average of the weights) and variants of them.
    "image-study": {"modalities": ["image"], **STUDY_IMAGE},
    "image-study-12": {"modalities": ["image"], **STUDY_IMAGE, "epochs": 12, "patience": 3},
    "image-study-12-unfrozen": {"modalities": ["image"], **STUDY_IMAGE, "epochs": 12, "patience": 3,
                                "freeze_blocks": 0},
    "image-study-128": {"modalities": ["image"], **STUDY_IMAGE, "image_size": 128, "epochs": 12, "patience": 3},
    # Ensembles (--ensemble K): K members on cross-fitted folds, one averaged network.
    "image-study-128-ensemble5": {"modalities": ["image"], **STUDY_IMAGE, "image_size": 128, "epochs": 12,
                                  "patience": 3, "ensemble": 5},
    "fused-study": {"modalities": ["image", "clinical", "lab"], **STUDY_IMAGE},
    # Multimodal: evidential (default), and the two other fusions.
    "fused": {"modalities": ["image", "clinical", "lab"]},
    "fused-physical": {"modalities": ["image", "clinical", "lab"], "field_of_view_mm": 50.0},
    "fused-concat": {"modalities": ["image", "clinical", "lab"], "fusion": "concat"},
    "fused-late": {"modalities": ["image", "clinical", "lab"], "fusion": "late"},
    "tables": {"modalities": ["clinical", "lab"]},
}
ORACLE_FOR = {("image",): "image", ("clinical", "lab"): None, ("image", "clinical", "lab"): "all"}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(cohort: Path, out: Path, name: str, threads: int | None, device: str, seed: int) -> dict:
    options = TrainOptions(**CONFIGS[name], seed=seed, threads=threads, device=device)
    bundle = out / name
    with Progress(console=Console(stderr=True), transient=True) as progress:
        wall, cpu = time.perf_counter(), cpu_seconds()
        train(cohort, bundle, options, progress=progress)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        print(f"{name}: trained in {wall:.1f} s wall, {cpu:.1f} s cpu", flush=True)
        metrics = run_evaluation(bundle, cohort, "external", out / f"{name}.eval", threads, device, progress)
    training = json.loads((bundle / "training.json").read_text())
    oracle_key = ORACLE_FOR.get(tuple(options.modalities))
    oracle = metrics.get("oracle_auc", {}).get(oracle_key) if oracle_key else None
    return {"config": name, "options": CONFIGS[name], "train_wall_s": wall, "train_cpu_s": cpu,
            "train_loop_s": training["timings"]["train_seconds"], "load_s": training["timings"]["load_seconds"],
            "epochs_run": training["epochs_run"], "best_epoch": training["best_epoch"],
            "images": training["images"], "threads": training["threads"], "device": training["device"],
            "external_auc": metrics["auc"], "external_auc_ci": metrics["auc_ci"],
            "per_modality_auc": metrics["per_modality_auc"], "oracle_auc": oracle,
            "oracle_all": metrics.get("oracle_auc"), "gap": None if oracle is None else oracle - metrics["auc"],
            "contributions": metrics["contributions"], "n_external": metrics["n"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS), help="repeatable; default: image, fused")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.config or ["image", "fused"]:
        result = run(args.cohort, args.out, name, args.threads, args.device, args.seed)
        results.append(result)
        ci = result["external_auc_ci"] or [float("nan")] * 2
        oracle = "n/a" if result["oracle_auc"] is None else f"{result['oracle_auc']:.3f}"
        gap = "" if result["gap"] is None else f" gap {result['gap']:+.3f}"
        print(f"{name:15s} train {result['train_wall_s']:7.1f} s wall {result['train_cpu_s']:7.1f} s cpu "
              f"({result['epochs_run']} epochs, best {result['best_epoch']}, {result['images']} images, "
              f"{result['threads']} threads, {result['device']}) external AUC {result['external_auc']:.3f} "
              f"[{ci[0]:.3f}-{ci[1]:.3f}] n={result['n_external']} oracle {oracle}{gap}", flush=True)
        (args.out / "bench.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
