"""Small file helpers shared by the deployment modules: every write is atomic (a temporary file
in the same folder, flushed to disk, then renamed over the target), so a power cut during an
update leaves the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edge_app.bundle import sha256_file  # noqa: F401  (the deployment modules hash through here)
from edge_app.deploy import DeployError


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: dict[str, Any], mode: int = 0o644) -> None:
    atomic_write(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; DeployError naming the file when it is missing or broken."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeployError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeployError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DeployError(f"{path}: expected a JSON object")
    return data



def match_owner(reference: Path, *paths: Path) -> None:
    """Give each path (a folder: with everything in it) the owner of ``reference``.

    Engines and version slots are made by root (the update unit, or a person with sudo) inside
    the service user's data folder; without this the service could not replace them, nor the
    self-test record its choice. A no-op unless run as root."""
    if os.geteuid() != 0:
        return
    owner = Path(reference).stat()
    for path in (Path(p).resolve() for p in paths):  # bundles/current is a link to the slot
        if not path.exists():
            continue
        for item in [path, *(path.rglob("*") if path.is_dir() else [])]:
            os.chown(item, owner.st_uid, owner.st_gid, follow_symlinks=False)
