"""`sarco` in this process for the `sarco synth` tests (test_cohort, test_consortium)."""

from __future__ import annotations

from click.testing import Result
from typer.testing import CliRunner

from model_build.cli import app


def run_cli(*args: str) -> Result:
    """Run ``sarco ARGS`` (wide, so that tables and messages are not wrapped); an exception
    other than the command's own exit fails the test."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "240"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result
