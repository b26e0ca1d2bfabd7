"""`sarco predict BUNDLE FILE... [--clinical KEY=VALUE...] [--lab KEY=VALUE...] [--json]`:
one participant's probability of sarcopenia, its uncertainty and what each input contributed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from model_build.commands.options import Bundle, Device, USER_ERROR
from sarco_core.cli import CliConsole, reported_errors


def register(app: typer.Typer) -> None:
    """Add `sarco predict` to the CLI."""

    @app.command("predict")
    def predict(
        bundle: Bundle,
        files: Annotated[Optional[list[Path]], typer.Argument(
            exists=True, dir_okay=False, help="Images or recordings of one participant.")] = None,
        clinical: Annotated[Optional[list[str]], typer.Option(
            "--clinical", help="KEY=VALUE, repeatable (e.g. --clinical age=81 --clinical sex=F).")] = None,
        lab: Annotated[Optional[list[str]], typer.Option("--lab", help="KEY=VALUE, repeatable.")] = None,
        mm_per_pixel: Annotated[Optional[float], typer.Option(
            min=0.001, help="Pixel size of the images (physically resampling models need it or --depth-mm).")] = None,
        depth_mm: Annotated[Optional[float], typer.Option(min=1.0, help="Imaging depth of the scan area.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        device: Device = "auto",
    ) -> None:
        """Predict one participant from images and/or clinical and lab values."""
        from model_build.api import load_model
        from model_build.models.predict import parse_key_values

        with reported_errors(exit_code=USER_ERROR):
            model = load_model(bundle, device)
            values = {m: parse_key_values(pairs or [], m, model.bundle.encoders.get(m))
                      for m, pairs in (("clinical", clinical), ("lab", lab))}
            result = model.predict(files or [], clinical=values["clinical"], lab=values["lab"],
                                   mm_per_pixel=mm_per_pixel, depth_mm=depth_mm)
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            _print(result, CliConsole())


def _print(result: dict, console: Console) -> None:
    uncertainty = "" if result["uncertainty"] is None else f", uncertainty {result['uncertainty']:.3f}"
    console.print(f"[bold]{result['decision']}[/]: P(sarcopenia) = {result['probability']:.3f} "
                  f"(threshold {result['threshold']:.3f}){uncertainty}; {result['frames']} frame(s)")
    table = Table()
    for name in ("input", "present", "P alone", "share of evidence: sarcopenia", "non-sarcopenia"):
        table.add_column(name)
    for modality, entry in result["modalities"].items():
        share = entry.get("contribution", {})
        table.add_row(modality, "yes" if entry["present"] else "no (vacuous)",
                      "" if entry["probability"] is None else f"{entry['probability']:.3f}",
                      f"{share['sarcopenia']:.3f}" if share else "",
                      f"{share['non_sarcopenia']:.3f}" if share else "")
    console.print(table)
