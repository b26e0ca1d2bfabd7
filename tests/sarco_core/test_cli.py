"""The one way every sarco command line reports a user's error."""

from __future__ import annotations

from typer.testing import CliRunner

from sarco_core.cli import CommandGroup, command_group
from sarco_core.errors import CommandFailed, SarcoError


class _Refused(SarcoError):
    exit_code = 3


def _app() -> CommandGroup:
    app = command_group("demo", "A demo group.")
    nested = CommandGroup(help="A nested group.")
    app.add_typer(nested, name="nested")

    @app.command("refuse")
    def refuse(code: int = 2) -> None:
        """Fails the way a worker that gave up does."""
        raise CommandFailed("the worker gave up", code)

    @app.command("own-code")
    def own_code() -> None:
        raise _Refused("[model] bundle: missing")

    @nested.command("crash")
    def crash() -> None:
        raise RuntimeError("a bug, not a user's error")

    return app


def test_an_error_escaping_any_command_is_one_line_with_its_exit_code():
    runner = CliRunner()
    done = runner.invoke(_app(), ["refuse", "--code", "1"])
    assert done.exit_code == 1
    assert done.output.strip() == "error: the worker gave up"
    done = runner.invoke(_app(), ["own-code"])
    assert done.exit_code == 3
    assert done.output.strip() == "error: [model] bundle: missing"  # brackets kept, not markup


def test_the_options_come_from_the_wrapped_command_and_bugs_still_raise():
    runner = CliRunner()
    assert "--code" in runner.invoke(_app(), ["refuse", "--help"]).output
    done = runner.invoke(_app(), ["nested", "crash"])
    assert isinstance(done.exception, RuntimeError)
