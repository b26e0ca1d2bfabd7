"""`sarco criteria` (being built; see its issue)."""

import typer


def register(app: typer.Typer) -> None:
    """Add `sarco criteria` to the CLI."""

    @app.command("criteria")
    def _not_yet() -> None:
        raise typer.Exit(code=2)
