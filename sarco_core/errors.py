"""The one error base of every sarco package.

Each package keeps its own error classes (``BundleError``, ``CohortError``, ``DeployError``...),
whose messages name the file or value and the fix; all of them derive from :class:`SarcoError`,
so a command line reports any of them the same way (:func:`sarco_core.cli.reported_errors`) and
exits with the code the error carries.
"""

from __future__ import annotations


class SarcoError(Exception):
    """Something a user can fix: the message names the place and the fix.

    ``exit_code`` is what a command line exits with when it reports the error: 2 (the input
    cannot be used) unless a subclass says otherwise.
    """

    exit_code: int = 2


class CommandFailed(SarcoError):
    """A command line's own failure (a worker that gave up, a key that does not exist), with
    the exit code that command documents."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def reportable(error: Exception) -> SarcoError:
    """``error`` as an error a command group reports: a SarcoError as it is, an error a command
    expects from the system (an OSError, a ValueError from a library) with its message."""
    return error if isinstance(error, SarcoError) else CommandFailed(str(error))
