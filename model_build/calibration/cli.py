"""`sarco-calibrate`: select a calibration set, quantize a bundle to INT8, verify it (docs/calibration.md).

Exit codes: 0 done (verify: accepted); 1 verify rejected the INT8 bundle; 2 the input cannot be
used (the message names the file or option and the fix).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.table import Table

from model_build.calibration import FRAME_STATES, HIGH_PRECISION, METHODS, TARGETS
from sarco_core.cli import CliConsole, command_group, reported_errors
from sarco_core.progress import CommandProgress

app = command_group("sarco-calibrate", "INT8 calibration: representative frames, Q/DQ quantization, and an accuracy gate.")
REJECTED = 1  # verify: the gate rejected the INT8 bundle (bad input: the error's own code, 2)
errors = CliConsole(stderr=True)


def _load_cohort(path: Path):
    from model_build.cohort import load_cohort

    return load_cohort(path)


@app.command("select")
def select(
    bundle: Annotated[Path, typer.Argument(help="Float model bundle (from `sarco train`).")],
    cohort: Annotated[Path, typer.Argument(help="Cohort folder the model was trained on.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (inputs.npy, frames.csv, calibration.json).")],
    cohort_name: Annotated[str, typer.Option("--cohort", help="participants.csv `cohort` value: the training cohort.")]
    = "development",
    n: Annotated[int, typer.Option("--n", min=1, help="Number of inputs.")] = 512,
    seed: Annotated[int, typer.Option(help="Seed of the draw.")] = 0,
    frame_state: Annotated[Literal[FRAME_STATES], typer.Option(
        help="Quality state of the frames to take. Anything but `ok` builds a deliberately unrepresentative "
             "set, e.g. `no_tissue` (probe in the air), to see the gate reject it.")] = "ok",
) -> None:
    """Pick representative preprocessed inputs from the training cohort (hold-out excluded)."""
    from model_build.calibration.bundles import load_float_bundle
    from model_build.calibration.cohorts import calibration_rows
    from model_build.calibration.select import file_count, save_calibration_set, select_calibration_set

    with reported_errors(errors):
        source = load_float_bundle(bundle)
        loaded = _load_cohort(cohort)
        total = file_count(loaded, calibration_rows(source, loaded, cohort_name))
        with CommandProgress(errors) as progress:
            task = progress.add_task("quality gate on every file", total=total)
            chosen = select_calibration_set(source, loaded, cohort_name, n, seed, frame_state,
                                            lambda k: progress.advance(task, k))
        save_calibration_set(chosen, out)
    meta = chosen.metadata
    table = Table("center", "scanner", "label", "muscle", "kind", "files", "candidate frames", "chosen",
                  title=f"{meta['n']} inputs ({meta['n_requested']} asked) -> {out}")
    for stratum in meta["strata"]:
        table.add_row(*(str(stratum[k]) for k in ("center", "scanner", "label", "muscle", "kind", "files",
                                                  "candidate_frames", "chosen")))
    CliConsole().print(table)
    if meta["skipped"]:
        errors.print(f"{len(meta['skipped'])} files skipped (see calibration.json -> skipped)")


@app.command("quantize")
def quantize(
    bundle: Annotated[Path, typer.Argument(help="Float model bundle.")],
    calib: Annotated[Path, typer.Argument(help="Calibration set from `sarco-calibrate select`.")],
    out: Annotated[Path, typer.Option("--out", help="INT8 bundle folder to write.")],
    target: Annotated[Literal[TARGETS], typer.Option(
        help="Who runs the INT8 graph: TensorRT (Q/DQ), ONNX Runtime on CPUs, or a TensorRT 8.x "
             "calibration cache.")] = "tensorrt",
    method: Annotated[Literal[METHODS], typer.Option(help="How activation ranges are calibrated.")] = "entropy",
    high_precision: Annotated[Literal[HIGH_PRECISION], typer.Option(
        help="Precision of the layers left out of INT8.")] = "fp32",
    percentile: Annotated[float, typer.Option(help="Percentile for --method percentile.")] = 99.999,
    max_flip_rate: Annotated[float, typer.Option(
        help="Sensitivity loop: keep layers in float while more calibration frames than this flip.")] = 0.02,
    rounds: Annotated[int, typer.Option(min=0, help="Sensitivity loop: most re-quantizations.")] = 3,
    exclude_per_round: Annotated[int, typer.Option(
        min=1, help="Sensitivity loop: layer groups (network blocks) kept in float per round.")] = 2,
) -> None:
    """Quantize BUNDLE's model.onnx to INT8 with the calibration set CALIB."""
    from model_build.calibration.bundles import load_float_bundle
    from model_build.calibration.quantize import QuantizeOptions, quantize_bundle
    from model_build.calibration.select import load_calibration_set

    with reported_errors(errors):
        options = QuantizeOptions(target, method, high_precision, percentile, max_flip_rate, rounds, exclude_per_round)
        source, calibration = load_float_bundle(bundle), load_calibration_set(calib)
        with CommandProgress(errors) as progress:
            task = progress.add_task("starting", total=None)
            written, history = quantize_bundle(source, calibration, out, options,
                                               lambda text: progress.update(task, description=text))
    console = CliConsole()
    for number, step in enumerate(history, start=1):
        console.print(f"round {number}: {step.int8_tensors} INT8 tensors, {len(step.excluded)} layers kept in float, "
                      f"calibration frames flipping {step.calibration_flip_rate:.2%}, logit RMS error "
                      f"{step.logit_rms_error:.4f}")
    if history:
        kept = json.loads((written / "quantization.json").read_text(encoding="utf-8"))["sensitivity"]["chosen_round"]
        console.print(f"kept round {kept + 1}")
    console.print(f"INT8 bundle written to {written} (gate: pending; run `sarco-calibrate verify`)")


@app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="Float model bundle.")],
    bundle_int8: Annotated[Path, typer.Argument(help="INT8 bundle from `sarco-calibrate quantize`.")],
    cohort: Annotated[Path, typer.Argument(help="Cohort folder: the development hold-out and every other cohort.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for verify.json and verify.html.")] = None,
    max_auc_drop: Annotated[float, typer.Option(help="Reject when AUC(float) - AUC(INT8) exceeds this.")] = 0.005,
    max_flip_rate: Annotated[float, typer.Option(
        help="Reject when the share of decisions that flip is significantly above this.")] = 0.02,
    flip_confidence: Annotated[float, typer.Option(
        help="Reject on flips only when the flip rate is above --max-flip-rate at this confidence (one-sided "
             "exact binomial test per cohort).")] = 0.95,
    latency_runs: Annotated[int, typer.Option(min=1, help="Timed runs per graph for the CPU latency.")] = 30,
) -> None:
    """Compare float and INT8 on every cohort; exit 1 and mark the INT8 bundle rejected if it fails."""
    from model_build.calibration.bundles import load_float_bundle, load_int8_bundle
    from model_build.calibration.verify import GateLimits, record
    from model_build.calibration.verify import verify as run_verification

    with reported_errors(errors):
        limits = GateLimits(max_auc_drop, max_flip_rate, flip_confidence)
        source = load_float_bundle(bundle)
        quantized = load_int8_bundle(bundle_int8, source)
        loaded = _load_cohort(cohort)
        with CommandProgress(errors) as progress:
            task = progress.add_task("starting", total=None)
            result = run_verification(source, quantized, loaded, limits,
                                      lambda text: progress.update(task, description=text), latency_runs)
        record(result, out)
    _print_verification(result, out)
    if not result.accepted:
        raise typer.Exit(code=REJECTED)


def _print_verification(result, out: Path | None) -> None:
    console = CliConsole()
    limits = result.limits
    title = (f"float vs INT8 at threshold {result.threshold:.4f}; flips allowed: the most not significantly above "
             f"{limits.max_flip_rate:.1%} at {limits.flip_confidence * 100:g}% confidence")
    table = Table("cohort", "n (pos)", "AUC float", "AUC INT8", "drop", "p", "sens f/i", "spec f/i", "flips",
                  "flips allowed", "pass", title=title)
    for c in result.cohorts:
        table.add_row(c.name, f"{c.n} ({c.n_positive})", _fmt(c.auc_float), _fmt(c.auc_int8), _fmt(c.auc_drop),
                      _fmt(c.p, 3), f"{_fmt(c.sensitivity_float, 3)}/{_fmt(c.sensitivity_int8, 3)}",
                      f"{_fmt(c.specificity_float, 3)}/{_fmt(c.specificity_int8, 3)}",
                      f"{c.flips} ({c.flip_rate:.1%})", str(c.flips_allowed), "yes" if c.passed else "[red]NO[/]")
    console.print(table)
    layers = Table("node", "op", "INT8", "added error", "relative error", title="layers INT8 hurt most")
    for e in result.layers[:5]:
        layers.add_row(e.node, e.op_type, "yes" if e.quantized else "no", f"{e.added_error:.4f}",
                       f"{e.relative_error:.4f}")
    console.print(layers)
    sizes = Table("graph", "size MB", "CPU median ms", "CPU p90 ms", "threads", title="size and CPU latency (1 frame)")
    for f in result.footprint:
        sizes.add_row(f.name, f"{f.megabytes:.2f}", f"{f.latency_ms_median:.2f}", f"{f.latency_ms_p90:.2f}",
                      str(f.threads))
    console.print(sizes)
    verdict = "[green]ACCEPTED[/]" if result.accepted else "[red]REJECTED[/]: " + "; ".join(
        f"{c.name}: {', '.join(c.failures)}" for c in result.cohorts if c.failures)
    console.print(f"{verdict} (recorded in {result.int8_bundle / 'quantization.json'})"
                  + (f"; report in {out}" if out else ""))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    app()
