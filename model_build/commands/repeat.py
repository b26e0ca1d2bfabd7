"""`sarco repeat spread | compare`: how far the study's headline figures move (docs/study.md,
"Reproducible numbers").

- ``spread RESULTS... --doc docs/study.md [--keep docs/results/seeds.json] [--check]``: the
  headline figures of one demo per seed, with mean, SD and range, written between the
  ``<!-- seed-spread:start/end -->`` markers (exit 1 with ``--check`` when the page is stale);
- ``compare A B --seeds docs/results/seeds.json``: two runs of one seed (two machines, or two
  thread counts) figure by figure, with the provenance that differs: where the provenance says
  they took the same float path every figure and section must be equal, else each figure must
  stay within the seeds' range, and a word figure (the selected model, the INT8 gate) may differ
  only between values the seeds gave it (exit 1 otherwise).
RESULTS may be a study's results.json or a kept seeds.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from model_build.commands.options import USER_ERROR
from sarco_core.cli import CliConsole, CommandGroup, reported_errors

repeat_app = CommandGroup(help="How far the study's headline figures move over seeds, and between two runs of "
                               "one seed.")
OUTSIDE = 1  # compare: a figure moved more than its bound, or a section differs on the same float path


def register(app: typer.Typer) -> None:
    """Add `sarco repeat ...` to the CLI."""
    app.add_typer(repeat_app, name="repeat")


@repeat_app.command("spread")
def spread(
    sources: Annotated[list[Path], typer.Argument(help="results.json of one demo per seed, or a kept seeds.json.")],
    doc: Annotated[Path, typer.Option("--doc", help="Page whose seed-spread section is rewritten.")]
    = Path("docs/study.md"),
    keep: Annotated[Path | None, typer.Option("--keep", help="Keep the runs' headline figures and provenance "
                                                             "here, e.g. docs/results/seeds.json.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if the page is stale.")] = False,
) -> None:
    """Tabulate the headline figures over seeds (mean, SD, range) into DOC."""
    from model_build.study.repeat import regenerate_spread

    console = CliConsole()
    with reported_errors(exit_code=USER_ERROR):
        current = regenerate_spread(sources, doc, keep, check)
    if check and not current:
        console.print(f"{doc}: its seed-spread table differs from {', '.join(map(str, sources))}; fix: sarco repeat "
                      f"spread {' '.join(map(str, sources))} --doc {doc}")
        raise typer.Exit(code=1)
    console.print(f"{doc}: seed-spread table {'already current' if current else 'rewritten'}")


@repeat_app.command("compare")
def compare(
    first: Annotated[Path, typer.Argument(help="results.json of one run.")],
    second: Annotated[Path, typer.Argument(help="results.json of a run of the same seed elsewhere.")],
    seeds: Annotated[Path, typer.Option("--seeds", help="seeds.json kept by `sarco repeat spread`, or "
                                                        "results.json files of other seeds, comma-separated.")]
    = Path("docs/results/seeds.json"),
) -> None:
    """Compare two runs of one seed: equal on the same float path, else within the seeds' range."""
    from model_build.study.formatting import format_number
    from model_build.study.repeat import compare as compare_runs, differing_sections, load_runs
    from sarco_core.files import read_json

    console = CliConsole()
    with reported_errors(exit_code=USER_ERROR):
        (a,), (b,) = load_runs([first]), load_runs([second])
        found = compare_runs(a, b, load_runs([Path(p) for p in str(seeds).split(",")]))
        sections = differing_sections(read_json(first), read_json(second)) if found.same_path else []
    table = Table(title=f"seed {a['seed']}: {first} vs {second}")
    bound = "bound (same path)" if found.same_path else "seeds' range"
    for column in ("figure", "first", "second", "difference", bound, "within"):
        table.add_column(column)
    show = (lambda v: "n/a" if v is None else format_number(v) if isinstance(v, float) else str(v))
    for row in found.rows:
        numeric = isinstance(row.first, float) and isinstance(row.second, float)
        table.add_row(row.figure, show(row.first), show(row.second),
                      format_number(row.second - row.first) if numeric else "",
                      " / ".join(row.seen) if row.bound is None else format_number(row.bound),
                      "yes" if row.within else "[red]NO[/]")
    console.print(table)
    console.print("provenance that differs: " + ("; ".join(f"{key} {x} -> {y}" for key, (x, y) in
                                                           found.provenance.items()) or "none"))
    if found.same_path:
        console.print("same float path (same threads, CPU, kernels and libraries): results.json must be equal; "
                      + (f"[red]sections that differ: {', '.join(sections)}[/]" if sections else
                         "every section is (created, timings, provenance and the cohort's folder aside)"))
    if not all(row.within for row in found.rows):
        console.print("[red]a figure moved more than " + ("nothing: the same float path must give the same figures"
                                                          if found.same_path else "the seeds' range: not explained "
                                                          "by the float order") + "; compare the two runs' options, "
                      "cohort data_hash and provenance[/]")
        raise typer.Exit(code=OUTSIDE)
    if sections:
        raise typer.Exit(code=OUTSIDE)
