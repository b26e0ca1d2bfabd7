"""`sarco deidentify IN OUT`: DICOM PS3.15 basic profile for headers, pixel cleaning for all."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from model_build.deidentify import Deidentifier, DeidentificationError, FileResult, deidentify_tree
from sarco_core.cli import CliConsole, print_error
from sarco_core.progress import CommandProgress

KEY_VARIABLE = "SARCO_DEID_KEY"


def register(app: typer.Typer) -> None:
    """Add `sarco deidentify` to the CLI."""

    @app.command("deidentify")
    def deidentify(
        source: Path = typer.Argument(..., help="A DICOM or image file, or a folder of them (only read)."),
        target: Path = typer.Argument(..., help="Output file or folder (mirrors the input's layout)."),
        key_file: Path | None = typer.Option(
            None, "--key-file", help=f"File holding the secret key (else ${KEY_VARIABLE}). Keep it in the hospital: "
                                     "with it the same patient always gets the same pseudonym."),
        shift_dates: bool = typer.Option(False, "--shift-dates",
                                         help="Move dates by a per-patient offset instead of emptying them."),
        keep_patient_characteristics: bool = typer.Option(
            False, "--keep-patient-characteristics", help="Keep sex, age, size and weight (needed by the criteria)."),
        no_pixels: bool = typer.Option(False, "--no-pixels", help="Leave DICOM pixels as they are (headers only); "
                                                                  "refused for files flagged with burned-in text."),
    ) -> None:
        """De-identify ultrasound so a cohort can leave the hospital."""
        console = CliConsole(stderr=True, soft_wrap=True)
        try:
            deidentifier = Deidentifier(_read_key(key_file), shift_dates=shift_dates,
                                        keep_patient_characteristics=keep_patient_characteristics,
                                        clean_pixels=not no_pixels)
            total = 1 if source.is_file() else sum(1 for path in source.rglob("*") if path.is_file())
            with CommandProgress(console) as progress:
                task = progress.add_task("de-identifying", total=total)
                results, errors = deidentify_tree(source, target, deidentifier,
                                                  on_file=lambda _: progress.advance(task))
        except DeidentificationError as error:
            print_error(error, console)
            raise typer.Exit(code=2) from None
        _summary(console, results, errors)
        raise typer.Exit(code=1 if errors else 0)


def _read_key(key_file: Path | None) -> bytes:
    if key_file is not None:
        try:
            return key_file.read_bytes().strip()
        except OSError as error:
            raise DeidentificationError(f"cannot read key file {key_file} ({error.strerror})") from None
    if os.environ.get(KEY_VARIABLE):
        return os.environ[KEY_VARIABLE].encode()
    raise DeidentificationError(
        f"no key: pass --key-file or set ${KEY_VARIABLE}. Create one once and keep it safe, e.g. "
        "python -c \"import secrets; print(secrets.token_hex(32))\" > deid.key")


def _summary(console: Console, results: list[FileResult], errors: list[DeidentificationError]) -> None:
    table = Table(title="sarco deidentify")
    table.add_column("kind")
    table.add_column("files", justify="right")
    for kind in ("dicom", "image", "skipped"):
        table.add_row(kind, str(sum(result.kind == kind for result in results)))
    table.add_row("not written (error)", str(len(errors)))
    console.print(table)
    for result in results:
        if result.kind == "skipped":
            console.print(f"skipped {result.source}: {result.note}", markup=False)
    for error in errors:
        console.print(f"[red]not written:[/red] {escape(str(error))}")
