"""`sarco validate COHORT`: is this cohort folder usable, and if not, what exactly to fix.

Exit codes: 0 usable (warnings allowed), 1 not usable, 2 usage error (COHORT is not a folder).
Human output goes to stdout as one table per file, errors first, then one line per listing
counting what the media show (a cohort has thousands of files: ``--media-table`` prints them
all); ``--json`` prints only the report's JSON on stdout, media table included. Progress (a
bar, or plain lines when redirected) is on stderr so it never mixes with either; redirected
stdout is never wrapped, so each file name stays whole on its line for grep.
"""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from model_build.cohort.findings import ValidationReport
from model_build.cohort.validate import validate_cohort
from sarco_core.cli import CliConsole
from sarco_core.progress import CommandProgress

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
        media_table: Annotated[bool, typer.Option(
            "--media-table", help="Also print one line per image and video: format, size, frames, "
                                  "scan box, pixel size, burned-in text (--json always has them).")] = False,
    ) -> None:
        """Check a cohort folder; exit 0 if usable (warnings allowed), 1 if not."""
        report = _run(cohort, media=not no_media)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))  # ASCII-escaped: safe on any terminal
        else:
            console = CliConsole()
            _print_report(report, console)
            if media_table and report.media:
                console.print(_media_table(report.media))
            _print_summary(report, console)
        raise typer.Exit(code=0 if report.ok else 1)


def _run(cohort: Path, media: bool) -> ValidationReport:
    with CommandProgress(CliConsole(stderr=True)) as progress:
        task = progress.add_task("checking media", total=None, visible=media)

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


def _media_table(rows: list[dict]) -> Table:
    table = Table(title="media", title_justify="left", expand=False)
    for name in ("file", "row", "participant", "path", "format", "size", "frames", "scan box",
                 "mm/pixel", "burned-in text"):
        table.add_column(name, overflow="fold")
    for row in rows:
        if not row["described"]:
            table.add_row(row["file"], str(row["row"]), Text(row["participant_id"]), Text(row["path"]),
                          row["format"], Text("not readable", style=_STYLE["error"]), "", "", "", "")
            continue
        box = row["scan_box"]
        size = row["mm_per_pixel"]
        table.add_row(
            row["file"], str(row["row"]), Text(row["participant_id"]), Text(row["path"]), row["format"],
            f"{row['width']}x{row['height']}", str(row["frames"]),
            Text("not found", style=_STYLE["warning"]) if box is None
            else f"{box[0]},{box[1]},{box[2]},{box[3]} ({row['scan_box_source']})",
            Text("unknown", style=_STYLE["warning"]) if size is None
            else f"{size[0]:.4g} x {size[1]:.4g} ({row['pixel_size_source']})",
            "yes" if row["burned_in_text"] else "no")
    return table


def _print_summary(report: ValidationReport, console: Console) -> None:
    for file, counts in report.summary.get("media", {}).items():
        console.print(_media_line(file, counts), soft_wrap=True)
    console.print(_summary_line(report), soft_wrap=True)  # one line, easy to grep in logs


def _media_line(file: str, counts: dict) -> str:
    described = counts["described"]
    unreadable = counts["files"] - described
    return (f"{file}: {counts['files']} files" + (f" ({unreadable} not readable)" if unreadable else "")
            + f"; scan box found {counts['scan_box_found']}/{described}, "
            f"pixel size known {counts['pixel_size_known']}/{described}, "
            f"burned-in text {counts['burned_in_text']}")


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
