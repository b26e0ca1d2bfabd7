"""What the sarco command lines share: the group's settings and ``--version``, the one-line
error and the one way a command reports a user's error (:func:`reported_errors`), a console that
keeps lines whole when piped, and the hidden old name of a renamed option.

All four CLIs (``sarco``, ``sarco-calibrate``, ``sarco-edge``, ``sarco-dashboard``) use it, so it
lives in ``sarco_core``, which every install has.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from sarco_core import __version__
from sarco_core.errors import SarcoError

# Wider than any line a command prints, so that piped output is never wrapped.
UNWRAPPED_WIDTH = 10_000
T = TypeVar("T")


class CommandGroup(typer.Typer):
    """A Typer app whose every command reports a :class:`SarcoError` that escapes it the one
    way (:func:`reported_errors`): one ``error:`` line on stderr, the error's exit code.

    Rich markup is off: help texts quote config sections such as ``[capture] source``, which
    markup would swallow; usage errors then print in click's plain style, brackets and all.
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__(**{"no_args_is_help": True, "add_completion": False,
                            "pretty_exceptions_enable": False, "rich_markup_mode": None,
                            **settings})

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        register = super().command(*args, **kwargs)

        def decorator(function: Callable[..., T]) -> Callable[..., T]:
            @functools.wraps(function)  # Typer reads the options from the wrapped signature
            def reporting(*call_args: Any, **call_kwargs: Any) -> T:
                with reported_errors():
                    return function(*call_args, **call_kwargs)

            register(reporting)
            return function

        return decorator


def command_group(name: str, help_text: str) -> CommandGroup:
    """The top-level app of a sarco CLI: a :class:`CommandGroup` with ``--version``."""
    app = CommandGroup(name=name, help=help_text)
    app.callback()(_group_options)
    return app


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"sarco {__version__}")
        raise typer.Exit()


def _group_options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, expose_value=False,
        help="Print the sarco version and exit.")] = False,
) -> None:
    """Options given before the command name (the group's help comes from command_group)."""


class CliConsole(Console):
    """A Rich console that never wraps when its output is not a terminal.

    Piped or redirected, Rich still wraps at the width of whatever terminal it finds (or 80
    columns), so a table split ``images/development/D0001_1_rectus_femoris_R.png`` over two
    lines of a CI log and grep missed it. On a terminal nothing changes.
    """

    @property
    def size(self) -> ConsoleDimensions:
        measured = Console.size.fget(self)
        return measured if self.is_terminal else ConsoleDimensions(UNWRAPPED_WIDTH, measured.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


def print_error(message: object, console: Console) -> None:
    """``error: MESSAGE`` on one line. The message is escaped because it quotes user data and
    config sections in brackets (``[model] bundle``), which Rich would take for markup."""
    console.print(f"[bold red]error:[/] {escape(str(message))}", soft_wrap=True)


@contextmanager
def reported_errors(console: Console | None = None, exit_code: int | None = None) -> Iterator[None]:
    """A user's error (any :class:`SarcoError`) ends the command with one line on stderr and
    the error's own exit code (``exit_code``, when given, for every error: the CLI's documented
    code), never a traceback."""
    try:
        yield
    except SarcoError as error:
        print_error(error, console or CliConsole(stderr=True))
        raise typer.Exit(code=error.exit_code if exit_code is None else exit_code) from None


def old_option_name(old: str, new: str) -> object:
    """A hidden option for the name ``new`` replaced, so that existing scripts keep working."""
    return typer.Option(None, old, hidden=True, help=f"Deprecated: use {new}.")


def renamed_option(value: T | None, old_value: T | None, old: str, new: str) -> T | None:
    """The option's value whichever of its names was given; the old name prints a one-line note."""
    if old_value is None:
        return value
    if value is not None:
        raise typer.BadParameter(f"give {new} only ({old} is its old name)", param_hint=old)
    typer.echo(f"note: {old} is deprecated; use {new}", err=True)
    return old_value
