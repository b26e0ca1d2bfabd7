"""`sarco evaluate BUNDLE COHORT --cohort external --out DIR`: a bundle's performance on a cohort.

Writes ``DIR/metrics.json`` (n, n_positive, auc, auc_ci, sensitivity, specificity, accuracy, f1,
threshold, plus each modality's AUC, the evidence shares and, for synthetic cohorts, the oracle
AUCs from truth.csv) and ``DIR/predictions.csv`` (participant_id, label, probability,
uncertainty, contribution_<modality>). The threshold is the bundle's, frozen on development
data; nothing is tuned on the evaluated cohort. The work is :mod:`model_build.models.evaluation`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from model_build.commands.options import Bundle, Device, Threads, USER_ERROR
from sarco_core.cli import CliConsole, reported_errors
from sarco_core.progress import CommandProgress


def register(app: typer.Typer) -> None:
    """Add `sarco evaluate` to the CLI."""

    @app.command("evaluate")
    def evaluate(
        bundle: Bundle,
        cohort: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Cohort folder.")],
        out: Annotated[Path, typer.Option("--out", help="Folder for metrics.json and predictions.csv.")],
        cohort_name: Annotated[str, typer.Option("--cohort", help="participants.csv `cohort` value.")] = "external",
        threads: Threads = None,
        device: Device = "auto",
    ) -> None:
        """Predict every participant of one cohort and score the predictions."""

        from model_build.models.evaluation import run_evaluation

        with reported_errors(exit_code=USER_ERROR), CommandProgress(CliConsole(stderr=True)) as progress:
            metrics = run_evaluation(bundle, cohort, cohort_name, out, threads, device, progress)
        _print(metrics, CliConsole())


def _print(metrics: dict, console: Console) -> None:
    table = Table(title=f"{metrics['cohort']}: n = {metrics['n']}, {metrics['n_positive']} with sarcopenia")
    for name in ("", "AUC", "95% CI", "oracle AUC"):
        table.add_column(name)
    oracle = metrics.get("oracle_auc", {})
    modalities = metrics["modalities"]
    same_inputs = "all" if len(modalities) == 3 else modalities[0] if len(modalities) == 1 else None
    ci = metrics["auc_ci"]
    table.add_row("model", f"{metrics['auc']:.3f}", "" if ci is None else f"{ci[0]:.3f}-{ci[1]:.3f}",
                  f"{oracle[same_inputs]:.3f}" if same_inputs in oracle else "")
    for modality, auc in metrics["per_modality_auc"].items():
        table.add_row(modality, "" if auc is None else f"{auc:.3f}", "",
                      f"{oracle[modality]:.3f}" if modality in oracle else "")
    console.print(table)
    console.print(f"at threshold {metrics['threshold']:.4f}: sensitivity {metrics['sensitivity']:.3f}, "
                  f"specificity {metrics['specificity']:.3f}, accuracy {metrics['accuracy']:.3f}, "
                  f"F1 {metrics['f1']:.3f}")
