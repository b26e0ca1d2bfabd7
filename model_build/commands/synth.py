"""`sarco synth` (being built; see its issue)."""

import typer


def register(app: typer.Typer) -> None:
    """Add `sarco synth` to the CLI."""

    @app.command("synth")
    def _not_yet() -> None:
        raise typer.Exit(code=2)
