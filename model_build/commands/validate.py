"""`sarco validate` (being built; see its issue)."""

import typer


def register(app: typer.Typer) -> None:
    """Add `sarco validate` to the CLI."""

    @app.command("validate")
    def _not_yet() -> None:
        raise typer.Exit(code=2)
