"""Files every stage writes and reads: one atomic write, JSON objects, SHA-256.

Every write goes through :func:`atomic_path`: a temporary file in the target's folder, flushed
to disk, then renamed over the target, so a crash or a power cut during a write leaves the old
file or the new one, never half of one (a bundle, a cohort table, an engine, a figure).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sarco_core.errors import SarcoError


@contextmanager
def atomic_path(path: str | Path, mode: int | None = 0o644,
                durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; when the block ends without an error it
    is flushed to disk and renamed over ``path``, otherwise removed.

    The temporary keeps the target's suffix (OpenCV and matplotlib choose the format from it).
    ``mode``: the file's permissions; None keeps those of the file it replaces (0o644 if new).
    ``durable`` False skips the fsync, for files rewritten every second that a crash may lose
    (the display's snapshots): the rename still shows the old file or the new one, never half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                        suffix=path.suffix or ".tmp")
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        if durable:
            with temporary.open("rb+") as handle:
                os.fsync(handle.fileno())
        if mode is None:
            mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
        os.chmod(temporary, mode)  # mkstemp makes it private
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str, mode: int | None = 0o644,
                 durable: bool = True) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (see atomic_path)."""
    with atomic_path(path, mode, durable) as temporary:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_json(path: str | Path, payload: Any, *, sort_keys: bool = False,
               mode: int | None = 0o644) -> None:
    """``payload`` as indented JSON with a final newline, atomically (numpy scalars as numbers)."""
    atomic_write(path, json.dumps(payload, indent=2, sort_keys=sort_keys, default=_plain) + "\n",
                 mode)


def _plain(value: object) -> object:
    if hasattr(value, "item"):  # a numpy scalar
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_json(path: str | Path, error: type[SarcoError] = SarcoError, missing: str = "") -> dict:
    """A JSON object from ``path``; ``error`` naming the file when it is missing (``missing``:
    the fix to add), unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: not found{'; ' + missing if missing else ''}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    return data


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (bundles hold models of tens of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_secret(path: Path, setting: str) -> str:
    """The secret on the first line of ``path`` (a password or key file readable only by its
    service); ValueError naming ``setting`` and the file when it is unreadable or empty."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{setting} {path}: cannot be read ({exc.strerror})") from None
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise ValueError(f"{setting} {path}: is empty; write the secret on its first line")
    return secret
