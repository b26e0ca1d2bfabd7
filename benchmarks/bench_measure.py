"""The aponeurosis model on real images it never trained on, against masks and observers; its time.

    PYTHONPATH=. python benchmarks/bench_measure.py [--data ../shared/data] [--epochs N]
        [--layouts 512x512,800x652] [--size 256] [--threads 2] [--model MODEL] [--json FILE]

1. **Leave-one-layout-out** on ``dl-track-aponeuroses``: images are grouped by their scanner
   layout, (width, height); a layout with fewer than 5 images joins the largest layout of the
   same height (within 2 px): 1234x687 and 1074x688 join 1234x688. Per layout, a model is trained
   on all the other layouts (``sarco measure train``'s training, same options) and measures the
   held-out layout: Dice per aponeurosis, median absolute thickness error in px and % of the
   mask's thickness (masks through ``labels_from_bands``), share of images measured, with
   bootstrap CIs. Targets (issue 23): <= 5 % (goal 3 %), >= 95 % measured.
2. **TimTrack datasets 2-4** against the observers' mean, beside the median disagreement between
   two observers (``model_build.measure.timtrack``), with the model trained on all of
   dl-track-aponeuroses (``--model``: an existing bundle instead, e.g. the shipped one).
3. **Time per frame** in ONNX Runtime (``--threads``), segmentation + measurement at the model's
   input size (a frame of SxS pixels, so the recipe's resizes are no-ops), p50 and p95.

It trains one model per layout plus one on everything: with the default epochs that takes about
(layouts + 1) x 10-15 min on 2 cores. ``--layouts`` and ``--epochs`` make it shorter.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from model_build.measure.data import load_pairs, read_index, read_pair_arrays
from model_build.measure.evaluate import (evaluate_masks_with, evaluate_timtrack, overlay, overlay_grid,
                                         predicted_frame_labels, print_mask_metrics, print_timtrack)
from model_build.measure.infer import AponeurosisModel
from model_build.measure.synthetic import write_synthetic_pairs
from model_build.measure.train import MeasureTrainOptions, fit, train_measurement_model, write_model_folder

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def layout_groups(shapes: list[tuple[int, int]], minimum: int = 5) -> list[str]:
    """A layout name per image ``(height, width)``: ``WxH``, small layouts joined to the largest of
    the same height (within 2 px)."""
    counts = Counter(shapes)
    names = []
    for shape in shapes:
        if counts[shape] < minimum:
            same_height = [s for s in counts if abs(s[0] - shape[0]) <= 2 and counts[s] >= minimum]
            if same_height:
                shape = max(same_height, key=lambda s: counts[s])
        names.append(f"{shape[1]}x{shape[0]}")
    return names


def leave_one_layout_out(data: Path, options: MeasureTrainOptions, wanted: list[str] | None,
                         save: Path | None = None, figure: Path | None = None) -> dict:
    recipe = options.recipe()
    folder = data / "dl-track-aponeuroses"
    index_rows = read_index(folder)
    pairs = load_pairs([folder], recipe)
    layouts = layout_groups([p.frame_shape for p in pairs])
    synthetic = []
    if options.synthetic:
        with tempfile.TemporaryDirectory() as scratch:
            synthetic = load_pairs([write_synthetic_pairs(Path(scratch) / "synthetic", options.synthetic, options.seed)],
                                   recipe)
    results, panels = {}, []
    for layout in sorted(set(layouts), key=lambda name: -layouts.count(name)):
        if wanted and layout not in wanted:
            continue
        train = [p for p, name in zip(pairs, layouts) if name != layout] + synthetic
        test = [row for row, name in zip(index_rows, layouts) if name == layout]
        started = time.perf_counter()
        network, _ = fit(train, options, _epoch_lines(f"layout {layout}"))
        seconds = time.perf_counter() - started
        metrics, rows = evaluate_masks_with(lambda tensors: _torch_logits(network, tensors), recipe, test)
        metrics["train_images"], metrics["train_seconds"] = len(train), round(seconds, 1)
        metrics["statuses"] = dict(Counter(row["status"] for row in rows))
        if save is not None:  # each fold's model, for a look at its failures (sarco measure evaluate / run)
            write_model_folder(save / layout, network, options, train, [], [], {"train_seconds": round(seconds, 1)},
                               f"benchmarks/bench_measure.py fold: every layout but {layout}")
        results[layout] = metrics
        print_mask_metrics(f"held-out layout {layout} ({len(test)} images; trained on {len(train)} in {seconds:.0f} s)",
                           metrics)
        results[layout]["rows"] = rows
        panels += _panels(network, recipe, test, rows, layout)
    if figure is not None:
        overlay_grid(figure, panels)
        print(f"predicted (filled) vs mask (outlined) aponeuroses on held-out images: {figure}")
    everything = [row for metrics in results.values() for row in metrics["rows"]]
    if len(results) > 1:
        from model_build.measure.metrics import mask_metrics

        overall = mask_metrics(everything)
        results["overall"] = overall
        print_mask_metrics(f"overall, every held-out image ({len(everything)})", overall)
    return results


def _panels(network, recipe, test: list[dict], rows: list[dict], layout: str, count: int = 2) -> list[np.ndarray]:
    """Overlays of ``count`` held-out images spread over the layout (the first and the middle one)."""
    panels = []
    for index in sorted({0, len(test) // 2})[:count]:
        image, truth = read_pair_arrays(test[index])
        predicted, _ = predicted_frame_labels(image, lambda t: _torch_logits(network, t), recipe)
        row = rows[index]
        error = "" if row["thickness_error_pct"] is None else f", error {row['thickness_error_pct']:+.1f} %"
        panels.append(overlay(image, truth, predicted, f"{Path(test[index]['name']).name} ({layout}){error}"))
    return panels


def _epoch_lines(prefix: str):
    def report(step: str, done: int, total: int, outcome: str | None) -> None:
        if outcome:
            print(f"  {prefix}: {outcome} ({time.strftime('%H:%M:%S')})", flush=True)
    return report


def _torch_logits(network, tensors: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return network(torch.from_numpy(np.ascontiguousarray(tensors, np.float32))).numpy()


def frame_times(model: AponeurosisModel, repeats: int = 200) -> dict:
    """Segmentation + measurement of an SxS frame (a real DL_Track-like texture), p50/p95 in ms."""
    size = model.recipe.size
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = np.radians(20.0)
    grey = 80 + 30 * np.sin((columns * np.sin(angle) + rows * np.cos(angle)) * 2 * np.pi / 9)
    grey[int(0.12 * size):int(0.15 * size)] = 220
    grey[int(0.7 * size):int(0.74 * size)] = 220
    grey = np.clip(grey + rng.normal(0, 20, grey.shape), 0, 255).astype(np.uint8)
    box = (0, 0, size, size)
    times = []
    for index in range(repeats + 10):
        started = time.perf_counter()
        model.measure(grey, None, box)
        if index >= 10:
            times.append(time.perf_counter() - started)
    return {"input": f"{size}x{size}", "p50_ms": 1e3 * float(np.median(times)),
            "p95_ms": 1e3 * float(np.percentile(times, 95)), "n": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=MeasureTrainOptions().epochs)
    parser.add_argument("--size", type=int, default=MeasureTrainOptions().image_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--freeze-blocks", type=int, default=MeasureTrainOptions().freeze_blocks)
    parser.add_argument("--synthetic", type=int, default=MeasureTrainOptions().synthetic,
                        help="synthetic stills added to each fold's training images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layouts", help="comma-separated held-out layouts (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: lolo, timtrack, timing")
    parser.add_argument("--model", type=Path, help="for TimTrack and timing: this bundle (default: train one on "
                                                   "all of dl-track-aponeuroses into --work)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_measure_model"))
    parser.add_argument("--json", type=Path, help="write every figure (and the per-image rows) here")
    parser.add_argument("--save-models", type=Path, help="write each fold's model into this folder")
    parser.add_argument("--figure", type=Path, help="PNG of predicted vs mask aponeuroses on held-out images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = MeasureTrainOptions(seed=args.seed, epochs=args.epochs, image_size=args.size, threads=args.threads,
                                  freeze_blocks=args.freeze_blocks, synthetic=args.synthetic)
    skip = set(filter(None, args.skip.split(",")))
    report: dict = {"options": {"epochs": args.epochs, "size": args.size, "seed": args.seed, "threads": args.threads,
                                "freeze_blocks": args.freeze_blocks, "synthetic": args.synthetic}}
    if "lolo" not in skip:
        wanted = [s.strip() for s in args.layouts.split(",")] if args.layouts else None
        report["leave_one_layout_out"] = leave_one_layout_out(args.data, options, wanted, args.save_models,
                                                              args.figure)
    if not {"timtrack", "timing"} <= skip:
        model_folder = args.model
        if model_folder is None:
            model_folder = args.work / f"all-e{args.epochs}-s{args.size}-seed{args.seed}"
            if not model_folder.is_dir():
                started = time.perf_counter()
                train_measurement_model([args.data / "dl-track-aponeuroses"], model_folder, options)
                print(f"model on all of dl-track-aponeuroses: {time.perf_counter() - started:.0f} s -> {model_folder}")
        model = AponeurosisModel(model_folder, threads=args.threads)
        if "timtrack" not in skip:
            report["timtrack"] = evaluate_timtrack(model, args.data / "muscle-us-timtrack")
            print_timtrack(report["timtrack"])
        if "timing" not in skip:
            report["timing"] = frame_times(model)
            t = report["timing"]
            print(f"time per frame (segmentation + measurement, {t['input']}, {args.threads} threads): "
                  f"p50 {t['p50_ms']:.1f} ms, p95 {t['p95_ms']:.1f} ms (n={t['n']})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float), encoding="utf-8")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
