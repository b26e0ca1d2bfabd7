"""Installed bundles and the atomic switch between them.

Each version lives in its own folder (``bundles/<version>/bundle`` with its signature and
engines); ``current`` and ``previous`` are symbolic links to version folders. A switch writes a
new link under a temporary name and renames it over the old one (``os.replace`` is atomic on
POSIX), so the service sees either the old model or the new one, never a mix, whenever the
power goes. Nothing is copied at switch time. Nor is a version made current that the app would
refuse to load (a damaged bundle, an INT8 model the accuracy gate has not accepted).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sarco_core.bundle import BundleError, load_device_bundle
from sarco_core.files import read_json, write_json
from sarco_core.update import DeployError
from sarco_core.update.signing import SIGNATURE_FILE, Signature, check_version

CURRENT, PREVIOUS = "current", "previous"
BUNDLE = "bundle"


@dataclass(frozen=True)
class Switch:
    """What the links pointed to before a switch, so :meth:`BundleStore.undo` can restore it."""

    to: str
    old_current: str | None
    old_previous: str | None


class BundleStore:
    """The ``bundles`` folder: ``install``, ``switch_to``, ``undo``, ``rollback``, ``prune``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ reading

    def slot(self, version: str) -> Path:
        return self.root / check_version(version)

    def bundle(self, version: str) -> Path:
        return self.slot(version) / BUNDLE

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))

    def current(self) -> str | None:
        return self._target(CURRENT)

    def previous(self) -> str | None:
        return self._target(PREVIOUS)

    def _target(self, link: str) -> str | None:
        path = self.root / link
        if not path.is_symlink():
            return None
        return Path(os.readlink(path)).name

    # ------------------------------------------------------------------ installing

    def staging(self) -> Path:
        """A fresh folder on the same file system as the slots (so installing is a rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        staging.chmod(0o755)  # the update runs as root; the service user must read the slot
        return staging

    def install(self, staged: Path, signature: Signature) -> Path:
        """Move a verified staging folder (holding ``bundle/``) into ``<version>/``; the same
        signed content delivered twice is accepted once and reused."""
        slot = self.slot(signature.version)
        write_json(Path(staged) / SIGNATURE_FILE, signature.to_dict(), sort_keys=True)
        if slot.exists():
            installed = read_json(slot / SIGNATURE_FILE, DeployError)
            shutil.rmtree(staged)
            if installed.get("manifest_sha256") != signature.manifest_sha256:
                raise DeployError(f"version {signature.version} is already installed with other "
                                  f"content ({slot}); sign the new bundle with a new version")
            return slot
        os.rename(staged, slot)  # a whole folder: not sarco_core.files.atomic_path (one file)
        return slot

    # ------------------------------------------------------------------ switching

    def switch_to(self, version: str) -> Switch:
        """``current`` -> version; the old current becomes ``previous``."""
        self._check_usable(version)
        record = Switch(version, self.current(), self.previous())
        if record.old_current != version:
            self._point(PREVIOUS, record.old_current)
        self._point(CURRENT, version)
        return record

    def undo(self, switch: Switch) -> None:
        """Put both links back as they were before ``switch``."""
        self._point(CURRENT, switch.old_current)
        self._point(PREVIOUS, switch.old_previous)

    def rollback(self) -> str:
        """Swap ``current`` and ``previous``; returns the version now current."""
        current, previous = self.current(), self.previous()
        if previous is None or not self.bundle(previous).is_dir():
            raise DeployError(f"no previous bundle to roll back to under {self.root}")
        self._check_usable(previous)
        self._point(PREVIOUS, current)
        self._point(CURRENT, previous)
        return previous

    def _check_usable(self, version: str) -> None:
        """What the app checks when it loads the bundle, before the link points at it."""
        if not self.bundle(version).is_dir():
            raise DeployError(f"version {version}: not installed under {self.root}")
        try:
            load_device_bundle(self.bundle(version))
        except BundleError as exc:
            raise DeployError(f"version {version} not switched to: {exc}") from None

    def prune(self) -> list[str]:
        """Delete every version that is neither current nor previous (and stale staging
        folders); returns the versions removed."""
        keep = {self.current(), self.previous()}
        removed = [v for v in self.versions() if v not in keep]
        for version in removed:
            shutil.rmtree(self.root / version)
        for staging in self.root.glob(".staging-*"):
            shutil.rmtree(staging, ignore_errors=True)
        return removed

    def _point(self, link: str, version: str | None) -> None:
        path = self.root / link
        if version is None:
            path.unlink(missing_ok=True)
            return
        temporary = self.root / f".{link}.{os.getpid()}.tmp"
        temporary.unlink(missing_ok=True)
        os.symlink(check_version(version), temporary)  # relative: the folder can move
        os.replace(temporary, path)  # a symbolic link, so not sarco_core.files.atomic_path
        directory = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself reaches the disk
        finally:
            os.close(directory)


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
