"""`sarco measure train | run | evaluate`: the muscle-measurement model (docs/measurements.md).

- ``train DATA... --out MODEL``: train the aponeurosis segmentation on image/mask pairs
  (``--synthetic N`` adds N rendered stills with exact masks);
- ``synth --out DATA``: render synthetic image/mask pairs, a DATA folder for ``train``;
- ``run [MODEL] PATH... --out CSV``: measure images, DICOMs, videos or folders of them;
- ``evaluate [MODEL] DATA --out DIR``: against masks (index.csv) or the TimTrack observers;
- ``quantize MODEL DATA --out MODEL_INT8``: INT8 (Q/DQ) through the calibration path, with an
  accuracy gate in measurements (exit 1 when it rejects).

MODEL may be left out of ``run`` and ``evaluate``: the model shipped in ``models/aponeurosis``
is used (or the folder ``$SARCO_APONEUROSIS_MODEL`` names). A first argument is taken as MODEL
when it is a folder holding ``aponeurosis.json``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from model_build.calibration import GRAPH_TARGETS
from model_build.commands.options import Threads, USER_ERROR
from sarco_core.cli import CliConsole, CommandGroup, print_error, reported_errors
from sarco_core.progress import CommandProgress

measure_app = CommandGroup(help="Muscle thickness, pennation angle and echo intensity from aponeurosis "
                                "segmentation: train, run, evaluate, quantize.")
REJECTED = 1  # quantize: the gate rejected the INT8 model (the bundle is written, marked rejected)


def register(app: typer.Typer) -> None:
    """Add `sarco measure ...` to the CLI."""
    app.add_typer(measure_app, name="measure")


def _is_model(path: Path) -> bool:
    from sarco_core.bundle import APONEUROSIS_CONFIG

    return path.is_dir() and (path / APONEUROSIS_CONFIG).is_file()


def _split_model(paths: list[Path]) -> tuple[Path | None, list[Path]]:
    if paths and _is_model(paths[0]):
        return paths[0], paths[1:]
    return None, paths


@measure_app.command("train")
def train(
    data: Annotated[list[Path], typer.Argument(
        help="Folders with an index.csv of image,mask pairs (e.g. ../shared/data/dl-track-aponeuroses).")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (new or empty).")],
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (default 10).")] = None,
    image_size: Annotated[Optional[int], typer.Option(
        min=64, max=1024, help="Model input side in pixels, a multiple of 16 (default 256).")] = None,
    batch_size: Annotated[int, typer.Option(min=2, help="Images per training step.")] = 8,
    synthetic: Annotated[Optional[int], typer.Option(
        min=0, help="Synthetic stills with exact masks to render and add (default 150; 0: none).")] = None,
    threads: Threads = None,
) -> None:
    """Train the aponeurosis segmentation on DATA and write the measurement model to --out."""
    from model_build.measure.data import check_out
    from model_build.measure.train import MeasureTrainOptions, train_measurement_model

    with reported_errors(exit_code=USER_ERROR):
        for folder in data:
            if not folder.is_dir():
                raise typer.BadParameter(f"{folder}: not a folder; give a folder with an index.csv of image,mask "
                                         "pairs", param_hint="DATA")
        check_out(out)
        chosen = {"seed": seed, "batch_size": batch_size, "threads": threads}
        chosen.update({k: v for k, v in (("epochs", epochs), ("image_size", image_size), ("synthetic", synthetic))
                       if v is not None})
        if chosen.get("image_size", 256) % 16:
            raise typer.BadParameter(f"{chosen['image_size']} is not a multiple of 16", param_hint="--image-size")
        options = MeasureTrainOptions(**chosen)
        command = " ".join(["sarco measure train", *(shlex.quote(str(d)) for d in data), "--out", shlex.quote(str(out)),
                            "--seed", str(options.seed), "--epochs", str(options.epochs), "--image-size",
                            str(options.image_size), "--batch-size", str(options.batch_size)]
                           + ["--synthetic", str(options.synthetic)]
                           + ([] if threads is None else ["--threads", str(threads)]))
        with CommandProgress(CliConsole(stderr=True)) as progress:
            tasks: dict[str, int] = {}

            def report(step: str, done: int, total: int, outcome: str | None) -> None:
                if step not in tasks:
                    tasks[step] = progress.add_task(step, total=total)
                progress.update(tasks[step], completed=done, **({"outcome": outcome} if outcome else {}))
                if outcome:
                    progress.console.print(f"{step}: {outcome}", markup=False, highlight=False)

            config = train_measurement_model(data, out, options, report, command)
    in_sample = config["metrics"]["training_images_in_sample"]
    pct = in_sample["thickness_abs_error_pct_median"]["value"]
    console = CliConsole()
    console.print(f"measurement model written to {out}", markup=False)
    console.print(f"{config['training']['images']} images, {options.epochs} epochs, "
                  f"{config['training']['train_seconds']:.0f} s of training on {config['training']['threads']} threads; "
                  f"ONNX parity {config['metrics']['onnx_parity_max_abs']:.1e}; in-sample median |thickness error| "
                  + ("n/a" if pct is None else f"{pct:.2f} %"), markup=False)


@measure_app.command("synth")
def synth(
    out: Annotated[Path, typer.Option("--out", help="Data folder to write (new or empty): images, masks, index.csv.")],
    count: Annotated[int, typer.Option(min=1, help="Stills to render.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
) -> None:
    """Render synthetic stills with exact aponeurosis masks: a DATA folder for `sarco measure train`."""
    from model_build.measure.synthetic import write_synthetic_pairs
    from model_build.measure.data import check_out

    with reported_errors(exit_code=USER_ERROR):
        check_out(out)
        with CommandProgress(CliConsole(stderr=True)) as progress:
            task = progress.add_task("rendering", total=count)
            write_synthetic_pairs(out, count, seed, lambda done, total: progress.update(task, completed=done))
    CliConsole().print(f"{count} synthetic image/mask pairs written to {out}", markup=False)


@measure_app.command("run")
def run(
    paths: Annotated[list[Path], typer.Argument(
        help="[MODEL] then images (PNG, JPEG, BMP, TIFF), DICOMs, videos or folders of them; MODEL (a folder "
             "with aponeurosis.json) may be left out: the shipped model is used.")],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write (one row per image or sampled frame).")],
    as_json: Annotated[bool, typer.Option("--json", help="Also print the rows as JSON on stdout.")] = False,
    frames: Annotated[int, typer.Option(min=1, help="Frames sampled per video or cine DICOM.")] = 20,
    mm_per_pixel: Annotated[Optional[float], typer.Option(
        min=0.001, help="Pixel size in mm, when no DICOM region gives it.")] = None,
    depth_mm: Annotated[Optional[float], typer.Option(
        min=1.0, help="Imaging depth in mm spanning the scan region's height.")] = None,
    major_tick_mm: Annotated[Optional[float], typer.Option(
        min=0.1, help="Spacing in mm of the depth ruler's major ticks beside the scan (read on every frame).")] = None,
    threads: Threads = None,
) -> None:
    """Measure muscle thickness, pennation angle and echo intensity; write a CSV."""
    from model_build.measure.infer import AponeurosisModel
    from model_build.measure.run import MeasureRunError, ScaleOptions, run_measurements

    with reported_errors(exit_code=USER_ERROR):
        model_path, inputs = _split_model(paths)
        if not inputs:
            raise MeasureRunError("no image, DICOM or video given; fix: name files or folders after MODEL")
        model = AponeurosisModel(model_path, threads=threads)
        with CommandProgress(CliConsole(stderr=True)) as progress:
            task = progress.add_task("measuring", total=None)

            def report(done: int, total: int, path: Path) -> None:
                progress.update(task, total=total, completed=done)

            rows = run_measurements(model, inputs, out, ScaleOptions(mm_per_pixel, depth_mm, major_tick_mm),
                                    frames, report)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    counted = sum(1 for r in rows if r["frame"] != "session")
    measured = sum(1 for r in rows if r["frame"] != "session" and r["muscle_thickness_px"] != "")
    CliConsole(stderr=as_json).print(f"{counted} row(s), {measured} with a thickness, written to {out} "
                                     f"(model {model.bundle.model_name})", markup=False)


@measure_app.command("evaluate")
def evaluate(
    paths: Annotated[list[Path], typer.Argument(
        help="[MODEL] DATA: DATA is a folder with index.csv of image,mask pairs, or the muscle-us-timtrack folder "
             "(observer sheets); MODEL may be left out: the shipped model is used.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for metrics.json, per_image.csv and the figures.")],
    threads: Threads = None,
) -> None:
    """Compare the model with masks or with the TimTrack observers; write metrics.json and Bland-Altman plots."""
    from model_build.measure.evaluate import evaluate_folder, print_mask_metrics, print_timtrack
    from model_build.measure.infer import AponeurosisModel
    from model_build.measure.run import MeasureRunError

    with reported_errors(exit_code=USER_ERROR):
        model_path, rest = _split_model(paths)
        if len(rest) != 1:
            raise MeasureRunError(f"give one DATA folder (got {len(rest)}: {', '.join(map(str, rest)) or 'none'}); "
                                  "fix: `sarco measure evaluate [MODEL] DATA --out DIR`")
        data = rest[0]
        if not data.is_dir():
            raise MeasureRunError(f"{data}: not a folder; fix: give a folder with index.csv, or muscle-us-timtrack")
        model = AponeurosisModel(model_path, threads=threads)
        with CommandProgress(CliConsole(stderr=True)) as progress:
            task = progress.add_task("evaluating", total=None)
            metrics = evaluate_folder(model, data, out,
                                      lambda done, total: progress.update(task, total=total, completed=done))
    if metrics["reference"] == "masks":
        print_mask_metrics(f"{data} ({metrics['images']} images)", metrics)
    else:
        print_timtrack(metrics)
    CliConsole().print(f"metrics.json, per_image.csv and Bland-Altman plots written to {out}", markup=False)


@measure_app.command("quantize")
def quantize(
    model: Annotated[Path, typer.Argument(help="Float measurement model folder (e.g. models/aponeurosis).")],
    data: Annotated[Path, typer.Argument(
        help="Images to calibrate on and to hold out for the gate: a folder with index.csv (e.g. "
             "../shared/data/dl-track-aponeuroses) or a folder of images.")],
    out: Annotated[Path, typer.Option("--out", help="INT8 model folder to write (new or empty).")],
    target: Annotated[Literal[GRAPH_TARGETS], typer.Option(
        help="Who runs the INT8 graph: tensorrt (Model Optimizer's Q/DQ graph) or cpu (ONNX Runtime QDQ).")]
    = "tensorrt",
    n: Annotated[int, typer.Option("--n", min=1, help="Calibration images (a quarter of DATA is held out first).")]
    = 128,
    seed: Annotated[int, typer.Option(help="Seed of the hold-out and of the draw.")] = 0,
    rounds: Annotated[int, typer.Option(
        min=0, help="Sensitivity loop: most re-quantizations keeping more layer groups in float (0: once).")] = 3,
) -> None:
    """Quantize MODEL to INT8 on images of DATA; exit 1 when its measurements leave the gate's limits."""
    from model_build.measure.quantize import quantize_measurement_model

    with reported_errors(exit_code=USER_ERROR):
        with CommandProgress(CliConsole(stderr=True)) as progress:
            task = progress.add_task("starting", total=None)
            result = quantize_measurement_model(model, data, out, target, n, seed, rounds,
                                                lambda text: progress.update(task, description=text))
    _print_quantization(result)
    if not result.accepted:
        print_error(f"the INT8 model fails its accuracy gate: {'; '.join(result.gate['failures'])} (written to "
                    f"{out} marked rejected; the loader refuses it)", CliConsole(stderr=True))
        raise typer.Exit(code=REJECTED)


def _print_quantization(result) -> None:
    from rich.table import Table

    console = CliConsole()
    for number, step in enumerate(result.rounds, start=1):
        console.print(f"round {number}: {step.int8_tensors} INT8 tensors, {len(step.excluded)} layers kept in float, "
                      f"calibration images disagreeing {step.calibration_flip_rate:.1%}, logit RMS error "
                      f"{step.logit_rms_error:.4f}", markup=False)
    figures, limits = result.gate["figures"], result.gate["limits"]
    table = Table("figure", "value", "limit", title=f"float vs INT8 on {figures['images']} held-out images "
                  f"({len(result.split.calibration)} calibrated on)")
    for name, value, limit in (
            ("median |thickness difference| %", figures["thickness_abs_diff_pct_median"],
             f"<= {limits['max_median_thickness_pct']:g}"),
            ("p95 |thickness difference| %", figures["thickness_abs_diff_pct_p95"],
             f"<= {limits['max_p95_thickness_pct']:g}"),
            ("share measured, float", figures["measured_share_float"], ""),
            ("share measured, INT8", figures["measured_share_int8"],
             f">= float - {limits['max_measured_share_drop']:g}"),
            ("mean Dice of the label maps", figures["dice_mean"], f">= {limits['min_dice']:g}"),
            ("median |pennation difference| deg", figures["pennation_abs_diff_deg_median"], "reported")):
        table.add_row(name, "n/a" if value is None else f"{value:.3f}", limit)
    console.print(table)
    for f in result.footprint:
        console.print(f"{f['name']}: {f['megabytes']:.2f} MB, ONNX Runtime CPU {f['latency_ms_median']:.2f} ms median "
                      f"(p90 {f['latency_ms_p90']:.2f}) per frame, {f['threads']} thread", markup=False)
    if result.accepted:
        console.print(f"ACCEPTED: INT8 measurement model written to {result.out}", markup=False)
