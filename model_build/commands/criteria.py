"""`sarco criteria`: one person's category and label at the point of care."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer
from rich.table import Table

from sarco_core.criteria import CUTOFFS, MEASURE_FIELDS, Diagnosis, Measurements, MeasurementError, diagnose
from sarco_core.cli import CliConsole

_FLAG_OF_FIELD = {field: "--" + measure.replace("_", "-") for measure, field in MEASURE_FIELDS.items()}
_FLAG_OF_FIELD["sex"] = "--sex"


def _number(help_text: str) -> object:
    return typer.Option(help=help_text, show_default=False)


def register(app: typer.Typer) -> None:
    """Add `sarco criteria` to the CLI."""

    @app.command("criteria")
    def criteria(
        standard: Annotated[Literal["awgs2019", "ewgsop2"], typer.Option(help="Diagnostic standard.")] = "awgs2019",
        sex: Annotated[Literal["M", "F"] | None, typer.Option(case_sensitive=False, help="M or F.")] = None,
        grip: Annotated[float | None, _number("Handgrip strength, kg.")] = None,
        gait_speed: Annotated[float | None, _number("Usual gait speed, m/s.")] = None,
        chair_stand: Annotated[float | None, _number("Five-time chair stand, s.")] = None,
        sppb: Annotated[float | None, _number("SPPB total, 0-12 points.")] = None,
        asmi: Annotated[float | None, _number("Appendicular skeletal muscle mass index, kg/m2.")] = None,
        asmi_method: Annotated[Literal["dxa", "bia"] | None,
                               typer.Option(case_sensitive=False, help="How ASMI was measured.")] = None,
        asm: Annotated[float | None, _number("Appendicular skeletal muscle mass, kg (EWGSOP2).")] = None,
        tug: Annotated[float | None, _number("Timed up-and-go, s (EWGSOP2).")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    ) -> None:
        """Category (no / possible / probable / confirmed / severe sarcopenia, or undetermined)
        and label from the measurements at hand; a missing measurement is never guessed."""
        try:
            measurements = Measurements(
                sex=sex, grip_kg=grip, gait_speed_m_s=gait_speed, chair_stand_s=chair_stand,
                sppb=sppb, asmi_kg_m2=asmi, asmi_method=asmi_method, asm_kg=asm, tug_s=tug)
            diagnosis = diagnose(measurements, standard)
        except MeasurementError as error:
            flag = _FLAG_OF_FIELD[error.field]
            shown = "missing" if error.value is None else error.value
            typer.echo(f"Error: {flag} {shown}: {error.problem}; fix: {error.fix}.", err=True)
            raise typer.Exit(code=2) from None
        if as_json:
            typer.echo(json.dumps(diagnosis.to_dict(), indent=2))
        else:
            _print_table(diagnosis)


def _print_table(diagnosis: Diagnosis) -> None:
    """The measures grouped by criterion, then the verdict: what a clinician reads at a glance."""
    marks = {True: "[red]low[/red]", False: "[green]normal[/green]", None: "[dim]unknown[/dim]"}
    table = Table(title=f"Sarcopenia criteria: {diagnosis.standard}")
    for column in ("criterion", "measure", "value", "low if", "result"):
        table.add_column(column)
    measures = diagnosis.criteria["measures"]
    for criterion, cutoffs in CUTOFFS[diagnosis.standard].items():
        table.add_row(criterion, "", "", "", marks[diagnosis.criteria[criterion]], style="bold")
        for measure in dict.fromkeys(cutoff.measure for cutoff in cutoffs):
            entry = measures[measure]
            if entry["value"] is None:
                table.add_row("", measure, "-", entry["cutoff"], "[dim]not measured[/dim]")
            else:
                table.add_row("", measure, str(entry["value"]), entry["cutoff"], marks[entry["low"]])
    console = CliConsole()
    console.print(table)
    label = "not determined" if diagnosis.label is None else str(diagnosis.label)
    console.print(f"category: [bold]{diagnosis.category}[/bold]   label: [bold]{label}[/bold]")
    console.print(diagnosis.criteria["reason"], markup=False)
    if diagnosis.criteria.get("ignored"):
        console.print(f"not used by {diagnosis.standard}: {', '.join(diagnosis.criteria['ignored'])}")
