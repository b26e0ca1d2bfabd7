"""`sarco synth OUT --size {small,paper,large,consortium} --seed N`: write a synthetic cohort
(or, for `consortium`, one cohort folder per development site and one for evaluation)."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sarco_core.cli import CliConsole, print_error
from sarco_core.progress import CommandProgress

from model_build.synth.generate import POOLED, SynthError, SynthOptions, SynthSummary, synthesize
from model_build.synth.latent import ORACLE_MODALITIES


class Size(str, Enum):
    small = "small"
    paper = "paper"
    large = "large"
    consortium = "consortium"


def _oracle_table(summary: SynthSummary) -> Table:
    table = Table(title="Oracle AUC (Bayes-optimal given the latent variables)")
    table.add_column("cohort")
    table.add_column("n", justify="right")
    table.add_column("positives", justify="right")
    for modality in ORACLE_MODALITIES:
        table.add_column(modality, justify="right")
    for cohort, aucs in summary.oracle_aucs.items():
        if cohort == POOLED:
            n = sum(count for count, _ in summary.counts.values())
            k = sum(positives for _, positives in summary.counts.values())
            name = "pooled (likelihood ratio)"
        else:
            (n, k), name = summary.counts[cohort], cohort
        table.add_row(name, str(n), str(k), *(f"{aucs[m]:.3f}" for m in ORACLE_MODALITIES))
    table.add_row("population (exact)", "", "", *(f"{summary.population_aucs[m]:.3f}" for m in ORACLE_MODALITIES))
    return table


def register(app: typer.Typer) -> None:
    """Add `sarco synth` to the CLI."""

    @app.command("synth")
    def synth(
        out: Path = typer.Argument(..., help="Cohort folder to create (refused if it exists and is "
                                             "not empty, unless --force)."),
        size: Size = typer.Option(Size.paper, "--size", help="small (~60, tests), paper (357/145/82 "
                                  "as in the study), large (357/2000/500, precise benchmarks) or "
                                  "consortium (OUT/sites/<center>/: six development sites, 357 in all; "
                                  "OUT/evaluation/: external and poc)."),
        seed: int = typer.Option(1, "--seed", help="Random seed: the same seed gives the same cohort."),
        videos: Optional[bool] = typer.Option(None, "--videos/--no-videos", help="Write one scanner "
                                              "video per participant [default: off for large, "
                                              "on for the others]."),
        workers: int = typer.Option(2, "--workers", min=1, help="Processes rendering media; the "
                                    "output does not depend on it."),
        force: bool = typer.Option(False, "--force", help="Replace an existing OUT (only an earlier "
                                   "synthetic cohort: a folder with synth.json)."),
    ) -> None:
        """Write a synthetic cohort (participants, images, videos, schema) and its Bayes oracle;
        with --size consortium, one such cohort folder per site and one for evaluation."""
        console, errors = CliConsole(), CliConsole(stderr=True)
        options = SynthOptions(size=size.value, seed=seed, videos=videos, workers=workers)
        started = time.perf_counter()
        try:
            with CommandProgress(errors) as progress:
                task = progress.add_task("rendering media", total=None)
                summary = synthesize(out, options, force=force,
                                     progress=lambda done, total: progress.update(task, completed=done, total=total))
        except SynthError as error:
            print_error(error, errors)
            raise typer.Exit(code=1) from None
        except OSError as error:
            print_error(f"cannot write {out}: {error.strerror or error}; "
                        "fix: choose a folder you can write to, with free disk space", errors)
            raise typer.Exit(code=1) from None
        console.print(_oracle_table(summary))
        folders = "" if summary.folders == ("",) else \
            f" in {len(summary.folders)} cohort folders ({', '.join(summary.folders)})"
        console.print(f"wrote {out}: {sum(n for n, _ in summary.counts.values())} participants{folders}, "
                      f"{summary.n_images} images, {summary.n_videos} videos "
                      f"(size {options.size}, seed {seed}) in {time.perf_counter() - started:.0f} s")
