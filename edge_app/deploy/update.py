"""Signed model updates: fetch, verify, install, build engines, switch, self-test, and roll
back when the self-test fails. Every outcome is recorded in ``update/last-update.json`` (the
app reports it in its MQTT status) and appended to ``update/history.jsonl``.

    fetch (URL or USB path) -> unpack into a staging folder -> verify signature + manifest
    -> install as bundles/<version> -> build engines (TensorRT devices) -> stop the service
    -> switch `current` -> model self-test -> pass: keep | fail: switch back -> start the service

Nothing the service uses changes before the switch, and the switch is one atomic rename, so a
refused or broken package never touches the running model, and a power cut at any point
leaves either the old or the new model in place.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from edge_app.deploy.layout import DeviceLayout
from edge_app.deploy.selftest import SelftestReport
from edge_app.deploy.slots import BundleStore
from sarco_core.bundle import ONNX, BundleError, load_device_bundle, verify_manifest
from sarco_core.files import atomic_path, read_json, sha256_file, write_json
from sarco_core.update import DeployError
from sarco_core.update.golden import load_golden
from sarco_core.update.package import BUNDLE_DIR, MAX_PACKAGE_BYTES, unpack_package
from sarco_core.update.signing import load_trusted_keys, verify_bundle
from sarco_core.wire.schema import utc_timestamp

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URL = re.compile(r"^https?://", re.IGNORECASE)


@dataclass(frozen=True)
class UpdateOutcome:
    outcome: str  # installed | rolled_back | refused | failed
    version: str | None
    reason: str
    at: str
    model_sha256: str | None  # of the model.onnx now current

    def to_dict(self) -> dict:
        return asdict(self)


class ServiceControl(Protocol):
    def stop(self) -> None: ...

    def start(self) -> None: ...


class SystemdService:
    """Stops and starts the app's unit around the switch (the camera and the GPU are free
    for the self-test, and the app loads the new model when it starts)."""

    def __init__(self, unit: str = "sarco-edge.service") -> None:
        self.unit = unit

    def stop(self) -> None:
        self._systemctl("stop")

    def start(self) -> None:
        self._systemctl("start")

    def _systemctl(self, verb: str) -> None:
        try:
            done = subprocess.run(["systemctl", verb, self.unit], capture_output=True,
                                  text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeployError(f"systemctl {verb} {self.unit}: {exc}") from None
        if done.returncode != 0:
            raise DeployError(f"systemctl {verb} {self.unit} failed: {done.stderr.strip()}")


class NoService:
    """For ``--no-restart``: the caller restarts the app (or it is not running)."""

    def stop(self) -> None:
        return None

    def start(self) -> None:
        return None


# --------------------------------------------------------------------------- requests


def write_request(layout: DeviceLayout, source: str, sha256: str | None) -> None:
    """Queue an update (the app does this on an MQTT command); the systemd path unit
    jetson/sarco-edge-update.path notices the file and runs ``sarco-edge update
    --from-request``."""
    check_source(source)
    if sha256 is not None and not _SHA256.match(sha256):
        raise DeployError(f"sha256 {sha256!r}: must be 64 lower-case hex digits")
    write_json(layout.request_file, {"source": source, "sha256": sha256}, mode=0o640, sort_keys=True)


def take_request(layout: DeviceLayout) -> tuple[str, str | None]:
    """Read and remove the queued request (a request is acted on once)."""
    request = read_json(layout.request_file, DeployError)
    layout.request_file.unlink()
    source, sha256 = request.get("source"), request.get("sha256")
    if not isinstance(source, str):
        raise DeployError(f"{layout.request_file}: no 'source'")
    return check_source(source), sha256 if isinstance(sha256, str) else None


def check_source(source: str) -> str:
    if not (_URL.match(source) or source.startswith("/")):
        raise DeployError(f"update source {source!r}: give an http(s):// URL or an absolute "
                          "path (a USB stick: /media/...)")
    return source


def fetch_package(source: str, downloads: Path, expected_sha256: str | None,
                  timeout_s: float = 60.0) -> Path:
    """Download (URL) or copy (path) the package into ``downloads``; a copy means the USB
    stick can be pulled out and the file sits on the same disk as the bundles."""
    check_source(source)
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / "package.tar"
    try:
        with atomic_path(target) as partial:
            if _URL.match(source):
                with urllib.request.urlopen(source, timeout=timeout_s) as response, \
                        partial.open("wb") as out:
                    _copy_capped(response, out, source)
            else:
                with Path(source).open("rb") as handle, partial.open("wb") as out:
                    _copy_capped(handle, out, source)
    except (urllib.error.URLError, OSError) as exc:
        raise DeployError(f"update source {source}: cannot be read ({exc})") from None
    if expected_sha256 is not None and sha256_file(target) != expected_sha256:
        raise DeployError(f"update package from {source}: SHA-256 differs from the one in the "
                          "command (incomplete download or another file)")
    return target


def _copy_capped(source, out, name: str) -> None:  # noqa: ANN001 - any readable binary stream
    total = 0
    while chunk := source.read(1 << 20):
        total += len(chunk)
        if total > MAX_PACKAGE_BYTES:
            raise DeployError(f"update source {name}: larger than {MAX_PACKAGE_BYTES >> 20} MB")
        out.write(chunk)


# --------------------------------------------------------------------------- the update


class Updater:
    """``apply(source)`` and ``rollback()``; the engine build, the self-test and the service
    are passed in, so tests run the real flow with ONNX Runtime and without systemd."""

    def __init__(self, layout: DeviceLayout, service: ServiceControl,
                 build_engines: Callable[[Path], list[str]],
                 selftest: Callable[[Path], SelftestReport]) -> None:
        self.layout = layout
        self.store = BundleStore(layout.bundles)
        self.service = service
        self.build_engines = build_engines
        self.selftest = selftest

    def apply(self, source: str, expected_sha256: str | None = None) -> UpdateOutcome:
        staging: Path | None = None
        version = None
        self.store.prune()  # failed or superseded versions from earlier updates
        try:
            package = fetch_package(source, self.layout.update_dir / "downloads", expected_sha256)
            staging = self.store.staging()
            signature = unpack_package(package, staging)
            version = signature.version
            bundle = staging / BUNDLE_DIR
            verify_bundle(bundle, signature, load_trusted_keys(self.layout.trusted_keys))
            load_device_bundle(bundle)
            load_golden(bundle)
            if version == self.store.current():
                raise DeployError(f"version {version} is already the current model")
        except (DeployError, BundleError, OSError) as exc:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            return self._record("refused", version, str(exc))
        try:
            slot = self.store.install(staging, signature)
            notes = self.build_engines(slot / BUNDLE_DIR)
        # TensorRT may raise anything (its bindings differ between releases); whatever it is,
        # nothing was switched and the outcome must still be recorded
        except Exception as exc:  # noqa: BLE001
            return self._record("failed", version, f"not switched: {type(exc).__name__}: {exc}")
        return self._switch_and_test(version, notes)

    def _switch_and_test(self, version: str, notes: list[str]) -> UpdateOutcome:
        try:
            self.service.stop()
        except DeployError as exc:
            return self._record("failed", version, f"not switched: {exc}")
        outcome, reason = self._switch_and_selftest(version, notes)
        try:
            self.service.start()
        except DeployError as exc:
            reason = f"{reason}; but the service did not start: {exc}"
        return self._record(outcome, version, reason)

    def _switch_and_selftest(self, version: str, notes: list[str]) -> tuple[str, str]:
        try:
            switch = self.store.switch_to(version)
        except DeployError as exc:
            return "failed", f"not switched: {exc}"
        try:
            report = self.selftest(self.layout.current_bundle)
            failed = {c.name: c.detail for c in report.checks if c.name in report.model_failed}
        except Exception as exc:  # noqa: BLE001 - a crashing self-test is a failing one
            failed = {"selftest": f"{type(exc).__name__}: {exc}"}
        if failed:
            self.store.undo(switch)
            return "rolled_back", "self-test failed: " + "; ".join(
                f"{name}: {detail}" for name, detail in failed.items())
        engine = report.selected or "none (ONNX Runtime)"
        return "installed", "; ".join([f"self-test passed, engine {engine}", *notes])

    def rollback(self) -> UpdateOutcome:
        """Go back to ``previous`` (by hand, e.g. after a bad day with a new model)."""
        try:
            self.service.stop()
        except DeployError as exc:
            return self._record("failed", self.store.current(), f"not rolled back: {exc}")
        try:
            version, outcome, reason = self.store.rollback(), "rolled_back", "rolled back by hand"
        except DeployError as exc:
            version, outcome, reason = self.store.current(), "failed", str(exc)
        try:
            self.service.start()
        except DeployError as exc:
            reason = f"{reason}; but the service did not start: {exc}"
        return self._record(outcome, version, reason)

    def _record(self, outcome: str, version: str | None, reason: str) -> UpdateOutcome:
        result = UpdateOutcome(outcome, version, reason[:300], utc_timestamp(time.time()),
                               self._current_model_sha256())
        write_json(self.layout.last_update, result.to_dict(), sort_keys=True)
        self.layout.history.parent.mkdir(parents=True, exist_ok=True)
        with self.layout.history.open("a", encoding="utf-8") as history:
            history.write(json.dumps(result.to_dict(), sort_keys=True) + "\n")
        return result

    def _current_model_sha256(self) -> str | None:
        current = self.layout.current_bundle
        if not current.is_dir():
            return None
        try:
            return verify_manifest(current).get(ONNX)
        except BundleError:
            return None
