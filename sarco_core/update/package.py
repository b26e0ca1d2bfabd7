"""The update package: one plain tar file that carries a signed bundle over a URL or a USB
stick, ``signature.json`` plus ``bundle/<file>`` for each file of the (flat) bundle folder.

Reading it never trusts the archive: only regular files with plain names are accepted (no
paths, links, devices or ``..``), sizes are capped, and each member is streamed into a fresh
folder by this code rather than by ``tarfile.extractall``. Authenticity is checked afterwards
(:func:`sarco_core.update.signing.verify_bundle`) on what was written.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

from sarco_core.files import atomic_write
from sarco_core.update import DeployError
from sarco_core.update.signing import SIGNATURE_FILE, Signature, SignatureError

SUFFIX = ".sarco-bundle.tar"
BUNDLE_DIR = "bundle"
MAX_PACKAGE_BYTES = 2 << 30  # far above any bundle (tens of MB); stops a runaway download
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class PackageError(DeployError):
    """The file is not a usable update package; the message says what is wrong with it."""


def write_package(bundle: Path, signature: Signature, out: Path) -> Path:
    """Write ``out`` atomically; reproducible (sorted members, fixed times and owners)."""
    bundle = Path(bundle)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add(archive, SIGNATURE_FILE,
             (json.dumps(signature.to_dict(), indent=2, sort_keys=True) + "\n").encode())
        for path in sorted(bundle.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                _add(archive, f"{BUNDLE_DIR}/{path.name}", path.read_bytes())
    atomic_write(Path(out), buffer.getvalue())
    return Path(out)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    archive.addfile(info, io.BytesIO(data))


def unpack_package(package: Path, destination: Path) -> Signature:
    """Write the package's bundle into ``destination/bundle`` (which must not exist) and
    return its signature, unverified."""
    package = Path(package)
    if not package.is_file():
        raise PackageError(f"update package {package}: no such file")
    if package.stat().st_size > MAX_PACKAGE_BYTES:
        raise PackageError(f"update package {package}: larger than {MAX_PACKAGE_BYTES >> 20} MB")
    target = Path(destination) / BUNDLE_DIR
    target.mkdir(parents=True)
    signature: Signature | None = None
    seen: set[str] = set()
    try:
        with tarfile.open(package, mode="r:") as archive:
            for member in archive:
                name = _checked_name(package, member, seen)
                handle = archive.extractfile(member)
                assert handle is not None  # a regular file, checked above
                if name == SIGNATURE_FILE:
                    signature = _read_signature(package, handle.read(1 << 16))
                else:
                    with (target / name).open("xb") as out:
                        while chunk := handle.read(1 << 20):
                            out.write(chunk)
    except (tarfile.TarError, EOFError) as exc:
        raise PackageError(f"update package {package}: not a readable tar file ({exc}); fix: "
                           "copy or download it again") from None
    if signature is None:
        raise PackageError(f"update package {package}: has no {SIGNATURE_FILE}; only signed "
                           "packages (`sarco sign`) are accepted")
    if not seen - {SIGNATURE_FILE}:
        raise PackageError(f"update package {package}: has no bundle files")
    return signature


def _checked_name(package: Path, member: tarfile.TarInfo, seen: set[str]) -> str:
    if not member.isfile():
        raise PackageError(f"update package {package}: member {member.name!r} is not a regular "
                           "file (links and folders are refused)")
    if member.name == SIGNATURE_FILE:
        name = SIGNATURE_FILE
    else:
        folder, _, name = member.name.partition("/")
        if folder != BUNDLE_DIR or not _PLAIN_NAME.match(name):
            raise PackageError(f"update package {package}: member {member.name!r} is not "
                               f"{BUNDLE_DIR}/<plain file name>")
    if member.name in seen:
        raise PackageError(f"update package {package}: member {member.name!r} appears twice")
    seen.add(member.name)
    return name


def _read_signature(package: Path, data: bytes) -> Signature:
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError(f"update package {package}: {SIGNATURE_FILE} is not JSON "
                             f"({exc})") from None
    if not isinstance(payload, dict):
        raise SignatureError(f"update package {package}: {SIGNATURE_FILE} is not an object")
    return Signature.from_dict(payload, f"{package}:{SIGNATURE_FILE}")
