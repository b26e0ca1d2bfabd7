"""`sarco demo-readme RESULTS.json`: the README's section "The demo's results" from a demo's results.json.

Exit codes: 0 written (or, with ``--check``, already current); 1 with ``--check`` when the README
differs from what results.json says, or when results.json or the README's markers are wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from model_build.commands.options import USER_ERROR
from sarco_core.cli import CliConsole, reported_errors


def register(app: typer.Typer) -> None:
    """Add `sarco demo-readme` to the CLI."""

    @app.command("demo-readme")
    def demo_readme(
        results: Annotated[Path, typer.Argument(help="results.json of a `sarco demo` run (RUN/study/results.json).")],
        readme: Annotated[Path, typer.Option("--readme", help="README whose marked section is rewritten.")]
        = Path("README.md"),
        keep: Annotated[Path | None, typer.Option(
            "--keep", help="Copy results.json here first (its cohort path made relative) and link the README "
                           "to the copy, e.g. docs/results/demo-results.json.")] = None,
        check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if the README is stale.")]
        = False,
    ) -> None:
        """Rewrite the README's demo results (table and sentences) from results.json."""
        from model_build.study.readme import regenerate

        console = CliConsole()
        with reported_errors(exit_code=USER_ERROR):
            current = regenerate(results, readme, keep, check)
        if check and not current:
            console.print(f"{readme}: its demo results differ from {results}; fix: sarco demo-readme {results}")
            raise typer.Exit(code=1)
        console.print(f"{readme}: demo results {'already current' if current else 'rewritten'} from {results}")
