"""`sarco study COHORT --out RUN` and `sarco demo [--out DIR] [--quick]` (docs/study.md).

The demo is the README's main command: a paper-size synthetic cohort, the whole study on it,
then one synthetic scanner recording replayed through the edge app with the selected bundle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from model_build.cohort import CohortError
from model_build.cohort.paths import CohortPathError
from model_build.commands.options import Device, StudyThreads, USER_ERROR
from model_build.study import SELECTION_RULES, THRESHOLD_RULES
from sarco_core.cli import CliConsole, reported_errors
from sarco_core.progress import CommandProgress


def register(app: typer.Typer) -> None:
    """Add `sarco study` and `sarco demo` to the CLI."""

    @app.command("study")
    def study(
        cohort: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Cohort folder.")],
        out: Annotated[Path, typer.Option("--out", help="Run folder to write (replaced if it holds a run).")],
        quick: Annotated[bool, typer.Option("--quick", help="64 px, few epochs: the whole design in minutes.")] = False,
        seed: Annotated[int, typer.Option(help="Seed of the folds and of every training.")] = 0,
        folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds on development.")] = 5,
        selection: Annotated[Literal[SELECTION_RULES], typer.Option(
            help="Model selection rule: fewest-not-worse is the study's.")] = "fewest-not-worse",
        alpha: Annotated[float, typer.Option(help="Significance level of the selection rule.")] = 0.05,
        margin: Annotated[float, typer.Option(
            help="Non-inferiority margin on the AUC (--selection non-inferior).")] = 0.05,
        threshold_rule: Annotated[Literal[THRESHOLD_RULES], typer.Option(
            help="Threshold rule on the calibrated out-of-fold predictions.")] = "youden",
        threshold_target: Annotated[float | None, typer.Option(
            help="Sensitivity (or specificity) to reach, e.g. 0.85; for cost: a missed case's cost in false "
                 "alarms.")] = None,
        int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Quantize and verify an image-only selection.")]
        = True,
        tuning: Annotated[Path | None, typer.Option(
            exists=True, dir_okay=False, help="tuning.json from `sarco tune` on this cohort: the image settings "
                                              "chosen on development.")] = None,
        threads: StudyThreads = None,
        device: Device = "auto",
    ) -> None:
        """Run the SARCO study design on COHORT and write results.json, tables, figures and report.html."""
        from model_build.study.design import StudyOptions

        with _errors():
            options = StudyOptions(seed=seed, folds=folds, quick=quick, selection=selection, alpha=alpha,
                                   margin=margin, threshold_rule=threshold_rule, threshold_target=threshold_target,
                                   int8=int8, tuning=None if tuning is None else str(tuning), threads=threads,
                                   device=device)
        run = _run_study(cohort, out, options)
        print_summary(run, CliConsole())

    @app.command("demo")
    def demo(
        out: Annotated[Path, typer.Option("--out", help="Folder for the cohort, the study and the replay.")]
        = Path("demo"),
        quick: Annotated[bool, typer.Option("--quick", help="Small cohort and quick training (minutes).")] = False,
        seed: Annotated[int, typer.Option(help="Seed of the synthetic cohort and of the study.")] = 1,
    ) -> None:
        """Synthesize the paper-size cohort, run the study on it, replay a recording on the edge app."""
        from model_build.study.design import StudyOptions

        console = CliConsole()
        started = time.perf_counter()
        cohort = _demo_cohort(out / "cohort", "small" if quick else "paper", seed, console)
        run = _run_study(cohort, out / "study", StudyOptions(seed=seed, quick=quick))
        print_summary(run, console)
        replay_on_edge(cohort, run, out / "edge", console)
        console.print(f"demo finished in {time.perf_counter() - started:.0f} s: open {run / 'report.html'}")


def _errors():
    return reported_errors(exit_code=USER_ERROR)


def _run_study(cohort: Path, out: Path, options) -> Path:
    from model_build.study.runner import run_study

    with _errors(), CommandProgress(CliConsole(stderr=True)) as progress:
        return run_study(cohort, out, options, progress)


def _demo_cohort(folder: Path, size: str, seed: int, console: Console) -> Path:
    """The synthetic cohort, reused when an earlier demo already wrote the same one."""
    from model_build.synth.generate import GENERATOR_VERSION, SynthOptions, synthesize

    marker = folder / "synth.json"
    if marker.is_file():
        written = json.loads(marker.read_text(encoding="utf-8"))
        if (written.get("size"), written.get("seed"), written.get("generator_version")) == \
                (size, seed, GENERATOR_VERSION):
            console.print(f"reusing the synthetic cohort in {folder}")
            return folder
    console.print(f"synthesizing the {size} cohort (seed {seed}) into {folder}")
    with _errors(), CommandProgress(CliConsole(stderr=True)) as progress:
        task = progress.add_task("rendering media", total=None)
        synthesize(folder, SynthOptions(size=size, seed=seed), force=True,
                   progress=lambda done, total: progress.update(task, completed=done, total=total))
    return folder


def replay_on_edge(cohort: Path, run: Path, data_dir: Path, console: Console) -> None:
    """Replay an external participant's recording with the edge app, as a device would run it.

    The edge app is its own program (it never imports the workstation code), so it runs as a
    subprocess, headless and without a broker: the result lands in its local result log.
    """
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    selected, model = results["selected_model"], "image"
    if model not in results["models"]:
        console.print("[yellow]no image model in this study: nothing for the edge app to replay[/]")
        return
    try:
        video, mm_per_pixel = _first_recording(cohort)
    except (CohortError, CohortPathError) as error:
        console.print(f"[yellow]the recording to replay cannot be used: {escape(str(error))}[/]")
        return
    if video is None:
        console.print("[yellow]the cohort has no recording to replay[/]")
        return
    if model != selected:
        console.print(f"the selected model ({selected}) needs data a device does not have; replaying with the "
                      "image model")
    shutil.rmtree(data_dir, ignore_errors=True)
    command = [sys.executable, "-m", "edge_app.cli", "replay", str(video), "--bundle", str(run / "bundles" / model),
               "--data-dir", str(data_dir), "--headless", "--every-frame", "--screening-id", "DEMO-0001"]
    if mm_per_pixel is not None:  # the listing's pixel size: the muscle thickness in mm
        command += ["--mm-per-pixel", f"{mm_per_pixel:g}"]
    console.print(f"edge app: replaying {video.name} with bundles/{model}")
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    console.print(escape(finished.stdout.strip() or finished.stderr.strip()))  # quotes [device]
    if finished.returncode != 0:
        console.print(f"[bold red]the edge replay failed (exit {finished.returncode})[/]: {escape(finished.stderr.strip())}")
        raise typer.Exit(code=1)


def _first_recording(cohort: Path) -> tuple[Path | None, float | None]:
    """A recording of the first participant outside development (else any), read through the
    cohort loader so its tables get the same path checks as its media, with its listed pixel
    size (None where the listing has none)."""
    from model_build.cohort import load_cohort

    loaded = load_cohort(cohort)
    if loaded.videos is None or loaded.videos.empty:
        return None, None
    participants = loaded.participants
    external = set(participants.loc[participants["cohort"] != "development", "participant_id"])
    chosen = loaded.videos[loaded.videos["participant_id"].isin(external)]
    row = (chosen if not chosen.empty else loaded.videos).iloc[0]
    size = pd.to_numeric(row.get("mm_per_pixel"), errors="coerce")
    return loaded.media_path(row["path"]), float(size) if pd.notna(size) and size > 0 else None


def print_summary(run: Path, console: Console) -> None:
    """The AUC table on the terminal, worded as the report words it: the quick-run caution
    first, and "not estimable" for a zero-width interval."""
    from model_build.study.formatting import format_estimate
    from model_build.study.narrative import quick_banner

    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    caution = quick_banner(results)
    if caution:
        console.print(f"[bold red]{escape(caution)}[/]")
    cohorts = results["cohorts"]
    table = Table(title=f"AUC (95% CI) by model and cohort: {run}")
    table.add_column("model")
    for cohort in cohorts:
        table.add_column(cohort)
    for name, entry in results["models"].items():
        cells = []
        for cohort in cohorts:
            metrics = entry.get(cohort, {})
            auc, ci = metrics.get("auc"), metrics.get("auc_ci")
            cells.append("" if auc is None else format_estimate(auc, ci))
        table.add_row(name + (" *" if name == results["selected_model"] else ""), *cells)
    console.print(table)
    console.print(f"* selected: {results['selection']['reason']}")
    int8 = results.get("int8")
    if int8:
        verdict = "accepted" if int8["accepted"] else "REJECTED"
        console.print(f"INT8 ({int8['target']}, {int8['method']}): {verdict} by the accuracy gate "
                      f"(see {run / int8['report']})")
    else:
        console.print(f"INT8: not run ({results.get('int8_skipped')})")
    console.print(f"report: {run / 'report.html'}")
