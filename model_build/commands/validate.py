"""`sarco validate COHORT`: is this cohort folder usable, and if not, what exactly to fix.

Exit codes: 0 usable (warnings allowed), 1 not usable, 2 usage error (COHORT is not a folder).
Human output goes to stdout as one table per file, errors first; ``--json`` prints only the
report's JSON on stdout. The progress bar is on stderr so it never mixes with either.
"""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from model_build.cohort.findings import ValidationReport
from model_build.cohort.validate import validate_cohort

SHOWN_PER_FILE = 50
_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def register(app: typer.Typer) -> None:
    """Add `sarco validate` to the CLI."""

    @app.command("validate")
    def validate(
        cohort: Annotated[Path, typer.Argument(exists=True, file_okay=False, dir_okay=True,
                                               help="Cohort folder (see docs/cohort-format.md).")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
        no_media: Annotated[bool, typer.Option("--no-media",
                                               help="Skip opening images and videos (fast).")] = False,
    ) -> None:
        """Check a cohort folder; exit 0 if usable (warnings allowed), 1 if not."""
        report = _run(cohort, media=not no_media)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))  # ASCII-escaped: safe on any terminal
        else:
            _print_report(report, Console())
        raise typer.Exit(code=0 if report.ok else 1)


def _run(cohort: Path, media: bool) -> ValidationReport:
    stderr = Console(stderr=True)
    with Progress(TextColumn("checking media"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=stderr, transient=True, disable=not media) as progress:
        task = progress.add_task("media", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return validate_cohort(cohort, media=media, on_progress=advance)


def _print_report(report: ValidationReport, console: Console) -> None:
    for file, findings in groupby(report.findings, key=lambda finding: finding.file):
        findings = list(findings)
        table = Table(title=escape(file), title_justify="left", show_lines=False, expand=False)
        for name in ("", "row", "column", "problem", "fix"):
            table.add_column(name, overflow="fold")
        for finding in findings[:SHOWN_PER_FILE]:
            # Text, not markup: cells quote user data, which may contain [brackets].
            table.add_row(Text(finding.severity, style=_STYLE[finding.severity]),
                          Text("" if finding.row is None else str(finding.row)), Text(finding.column or ""),
                          Text(finding.message), Text(finding.hint))
        console.print(table)
        if len(findings) > SHOWN_PER_FILE:
            console.print(f"... and {len(findings) - SHOWN_PER_FILE} more in {escape(file)} (--json lists all)")
    console.print(_summary_line(report), soft_wrap=True)  # one line, easy to grep in logs


def _summary_line(report: ValidationReport) -> str:
    summary = report.summary
    cohorts = ", ".join(f"{escape(name) or '(no cohort)'} {counts['participants']}"
                        for name, counts in summary.get("cohorts", {}).items())
    labels = summary.get("labels", {})
    verdict = "[bold green]usable[/]" if report.ok else "[bold red]NOT usable[/]"
    media = "" if report.media_checked else " (media not opened: --no-media)"
    return (f"{summary.get('participants', 0)} participants ({cohorts or 'none'}); "
            f"labels 1: {labels.get('1', 0)}, 0: {labels.get('0', 0)}, unknown: {labels.get('unknown', 0)}; "
            f"{summary.get('images', 0)} images, {summary.get('videos', 0)} videos{media}; "
            f"{report.count('error')} errors, {report.count('warning')} warnings -> {verdict}")
