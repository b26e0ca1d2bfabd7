"""Where a cohort's files may be: inside the cohort folder, and regular files only.

Every file of a cohort (schema.yaml, the CSVs, each listed image and video) is opened through
:func:`cohort_file`, which resolves symbolic links first. A link that leads out of the folder
would let a cohort carry (and `sarco validate` report as "usable") a file that is not in it
and that de-identification and copying never see, or make validation read any file on the
machine (``/etc/passwd``); a device, pipe or socket can block a reader forever or never end.
Links that stay inside the folder are fine.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sarco_core.errors import SarcoError

_NOT_REGULAR = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
                stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket"}
_COPY_IN = "copy the file into the cohort folder and write its path relative to the folder"


class CohortPathError(SarcoError, ValueError):
    """A cohort path that must not be opened: ``message`` says why, ``hint`` how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message}; fix: {hint}")
        self.message = message
        self.hint = hint


def cohort_file(root: Path, relative: str,
                folder_hint: str = "list the files inside it, one row each") -> Path:
    """The real location of the regular file ``relative`` names inside the cohort folder
    ``root`` (links resolved). Raises :class:`CohortPathError` when it does not exist, is a
    folder (``folder_hint`` says what to do), leads out of the folder, or is not a regular
    file."""
    folder = root.resolve()
    listed = folder / relative
    try:
        real = listed.resolve()  # follows every link, also one in a parent folder of the file
    except (OSError, RuntimeError):  # RuntimeError: a loop of links (Python < 3.13)
        raise CohortPathError("is a link that leads nowhere (a loop of links)", _COPY_IN) from None
    if not real.is_relative_to(folder):
        raise CohortPathError(f"is a link to {real}, outside the cohort folder",
                              f"{_COPY_IN} instead of linking to it")
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise CohortPathError("file not found", _missing_hint(listed)) from None
    except OSError as error:
        raise CohortPathError(f"cannot be read ({error.strerror})",
                              "check that the file is readable") from None
    if stat.S_ISDIR(mode):
        raise CohortPathError("is a folder, not a file", folder_hint)
    for is_kind, kind in _NOT_REGULAR.items():
        if is_kind(mode):
            raise CohortPathError(f"is {kind}, not a file: it is not opened",
                                  f"replace it with the file itself ({_COPY_IN})")
    return real


def _missing_hint(path: Path) -> str:
    """Suggest a file whose name differs only in letter case, a common copy-from-Windows slip."""
    if path.parent.is_dir():
        for sibling in path.parent.iterdir():
            if sibling.name.lower() == path.name.lower():
                return f"the folder has {sibling.name!r}: correct the letter case of the path"
    return "copy the file into the cohort folder, or correct its path (relative to the cohort folder)"
