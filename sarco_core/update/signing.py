"""Ed25519 signatures over a bundle's SHA-256 manifest.

What is signed is a short canonical text: a domain line, the bundle version and the manifest
(``<sha256>  <file>`` lines sorted by file name). The manifest already fixes the content of
every file, and the device checks every file against it before it checks the signature, so a
changed byte anywhere, an added or a removed file, a renamed version or a re-signed manifest
from an untrusted key all fail. Binding the version stops a signed bundle from being replayed
under another version name.

The workstation signs with a private key (``sarco sign``, PKCS#8 PEM, optionally encrypted);
the device trusts the public keys (SubjectPublicKeyInfo PEM) in ``/etc/sarco-edge/trusted_keys``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sarco_core.bundle import BundleError, verify_manifest
from sarco_core.files import atomic_write
from sarco_core.update import DeployError
from sarco_core.wire.schema import utc_timestamp

SIGNATURE_FILE = "signature.json"
SIGNATURE_FORMAT = 1
DOMAIN = b"sarco model bundle signature v1\n"
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RESERVED_VERSIONS = {"current", "previous"}
KEY_SUFFIXES = (".pub", ".pem")


class SignatureError(DeployError):
    """A bundle whose signature is missing, malformed, from an untrusted key or wrong."""


def check_version(version: str) -> str:
    """Versions name folders on the device: letters, digits, '.', '_' and '-' only."""
    if not VERSION_PATTERN.match(version) or version in RESERVED_VERSIONS:
        raise DeployError(f"version {version!r}: use 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit (not 'current' or 'previous')")
    return version


def canonical_manifest(bundle: Path) -> bytes:
    """The manifest lines sorted by file name, after checking every file against them."""
    try:
        digests = verify_manifest(Path(bundle))
    except BundleError as exc:
        raise SignatureError(str(exc)) from None
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests)).encode()


def signed_message(version: str, manifest: bytes) -> bytes:
    return DOMAIN + f"version {check_version(version)}\n".encode() + manifest


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw 32-byte key: names the key in messages."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signature:
    """``signature.json``, shipped beside the bundle."""

    version: str
    key_id: str
    manifest_sha256: str
    signature: str  # base64 of the 64-byte Ed25519 signature
    signed_at: str
    format_version: int = SIGNATURE_FORMAT
    algorithm: str = "ed25519"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str) -> Signature:
        fields = {"version", "key_id", "manifest_sha256", "signature", "signed_at",
                  "format_version", "algorithm"}
        if set(data) != fields:
            raise SignatureError(f"{where}: expected the fields {sorted(fields)}, got "
                                 f"{sorted(data)}")
        if data["format_version"] != SIGNATURE_FORMAT or data["algorithm"] != "ed25519":
            raise SignatureError(f"{where}: format {data['format_version']!r} / algorithm "
                                 f"{data['algorithm']!r} is not {SIGNATURE_FORMAT} / ed25519; "
                                 "fix: update the device software")
        if not all(isinstance(data[k], str) for k in fields - {"format_version"}):
            raise SignatureError(f"{where}: every field but format_version must be a string")
        return cls(**data)


def sign_bundle(bundle: Path, private_key: Ed25519PrivateKey, version: str) -> Signature:
    manifest = canonical_manifest(bundle)
    signature = private_key.sign(signed_message(version, manifest))
    return Signature(version=version, key_id=key_id(private_key.public_key()),
                     manifest_sha256=hashlib.sha256(manifest).hexdigest(),
                     signature=base64.b64encode(signature).decode(),
                     signed_at=utc_timestamp(time.time()))


def verify_bundle(bundle: Path, signature: Signature,
                  trusted: dict[str, Ed25519PublicKey]) -> None:
    """Raise SignatureError unless every file matches the manifest and a trusted key signed
    that manifest under ``signature.version``."""
    if not trusted:
        raise SignatureError("no trusted keys: copy the workstation's public key into the "
                             "device's trusted_keys folder (jetson/setup.sh --trusted-key)")
    public_key = trusted.get(signature.key_id)
    if public_key is None:
        raise SignatureError(f"{bundle}: signed with key {signature.key_id}, which this device "
                             f"does not trust (trusted: {', '.join(sorted(trusted))})")
    manifest = canonical_manifest(bundle)
    try:
        raw = base64.b64decode(signature.signature, validate=True)
        public_key.verify(raw, signed_message(signature.version, manifest))
    except (InvalidSignature, binascii.Error, ValueError):
        raise SignatureError(f"{bundle}: the signature does not match its manifest and version "
                             f"{signature.version!r} (tampered, or signed for other content); "
                             "fix: get the bundle again from its source") from None


# --------------------------------------------------------------------------- keys


def generate_keypair(private_path: Path, public_path: Path, passphrase: bytes | None) -> str:
    """Write a new key pair (the private key readable by its owner only); returns its key id."""
    key = Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    atomic_write(Path(private_path), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption), mode=0o600)
    atomic_write(Path(public_path), key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(key.public_key())


def load_private_key(path: Path, passphrase: bytes | None) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), passphrase)
    except OSError as exc:
        raise DeployError(f"private key {path}: cannot be read ({exc.strerror})") from None
    except TypeError:
        raise DeployError(f"private key {path}: is encrypted; give --passphrase-file") from None
    except ValueError as exc:
        raise DeployError(f"private key {path}: not a usable PEM key or wrong passphrase "
                          f"({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise DeployError(f"private key {path}: not an Ed25519 key; make one with `sarco keygen`")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise DeployError(f"public key {path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise DeployError(f"public key {path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise DeployError(f"public key {path}: not an Ed25519 key")
    return key


def load_trusted_keys(folder: Path) -> dict[str, Ed25519PublicKey]:
    """key id -> key for every ``*.pub`` / ``*.pem`` file in ``folder`` (none if it is absent)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    keys = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in KEY_SUFFIXES:
            key = load_public_key(path)
            keys[key_id(key)] = key
    return keys
