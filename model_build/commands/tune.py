"""`sarco tune COHORT --out tuning.json`: the study's image settings chosen on development alone.

Then `sarco study COHORT --tuning tuning.json --out RUN` trains with the chosen settings, and
results.json's ``choices`` records where they came from (docs/study.md, "The tuning rule").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from model_build.commands.options import Device, StudyThreads, USER_ERROR
from model_build.study import TUNING_RULES
from sarco_core.cli import CliConsole, reported_errors
from sarco_core.progress import CommandProgress


def register(app: typer.Typer) -> None:
    """Add `sarco tune` to the CLI."""

    @app.command("tune")
    def tune(
        cohort: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Cohort folder.")],
        out: Annotated[Path, typer.Option("--out", help="tuning.json to write (for `sarco study --tuning`).")],
        sizes: Annotated[str, typer.Option(help="Image sizes to try, in pixels.")] = "64,80,96",
        epochs: Annotated[str, typer.Option(help="Epoch budgets to try (early stopping may end sooner).")] = "4,8",
        folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds inside development.")] = 3,
        rule: Annotated[Literal[TUNING_RULES], typer.Option(
            help="one-se: the cheapest candidate within one standard error of the best; best: the best.")] = "one-se",
        seed: Annotated[int, typer.Option(help="Seed of the tuning folds and trainings.")] = 0,
        threads: StudyThreads = None,
        device: Device = "auto",
    ) -> None:
        """Score image settings by cross-validation on COHORT's development participants only."""
        from model_build.study.tuning import TuneOptions, tune as run_tuning
        from sarco_core.files import write_json

        console = CliConsole()
        with reported_errors(exit_code=USER_ERROR):
            options = TuneOptions(seed=seed, folds=folds, sizes=_integers(sizes, "--sizes"),
                                  epochs=_integers(epochs, "--epochs"), rule=rule, threads=threads, device=device)
            if out.suffix != ".json":
                raise typer.BadParameter(f"{out}: give a .json file, e.g. --out tuning.json", param_hint="--out")
            with CommandProgress(CliConsole(stderr=True)) as progress:
                tuning = run_tuning(cohort, options, progress)
            write_json(out, tuning)
        table = Table(title=f"Image settings, {folds}-fold cross-validation on development ({cohort})")
        for column in ("size (px)", "epochs", "mean fold AUC", "SE", "pooled AUC", "epochs run", "seconds"):
            table.add_column(column, justify="right")
        for candidate in tuning["candidates"]:
            mark = " *" if {k: candidate[k] for k in ("image_size", "epochs")} == tuning["chosen"] else ""
            table.add_row(f"{candidate['image_size']}{mark}", str(candidate["epochs"]), f"{candidate['mean_auc']:.3f}",
                          f"{candidate['se']:.3f}", f"{candidate['pooled_auc']:.3f}",
                          ",".join(map(str, candidate["epochs_run"])), f"{candidate['seconds']:.0f}")
        console.print(table)
        console.print(f"* chosen: {escape(tuning['reason'])}")
        console.print(f"wrote {out}: use it with `sarco study {cohort} --tuning {out} --out RUN`")


def _integers(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give whole numbers separated by commas, e.g. 64,80,96",
                                 param_hint=option) from None
    if not values:
        raise typer.BadParameter("give at least one value, e.g. 64,80,96", param_hint=option)
    return values
