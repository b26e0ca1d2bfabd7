"""`sarco label` (being built; see its issue)."""

import typer


def register(app: typer.Typer) -> None:
    """Add `sarco label` to the CLI."""

    @app.command("label")
    def _not_yet() -> None:
        raise typer.Exit(code=2)
