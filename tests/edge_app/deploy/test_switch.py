"""Installing versions, the atomic switch, automatic rollback when the self-test fails, and
the outcome records. The real update flow runs, with ONNX Runtime standing in for TensorRT
engines and a recorder standing in for systemctl."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_app.deploy.engines import engine_path
from edge_app.deploy.selftest import model_checks
from edge_app.deploy.slots import BundleStore
from edge_app.deploy.update import Updater, take_request, write_request
from edge_app.inference.onnx_runtime import OnnxRuntimeBackend
from sarco_core.update import DeployError
from sarco_core.update.golden import SelftestSpec, write_golden
from sarco_core.update.package import unpack_package, write_package
from sarco_core.update.signing import load_private_key, sign_bundle
from tests.support.deploy import (
    add_int8,
    device_layout,
    edge_app_with_deploy,
    signed_package,
    signing_key,
    write_edge_config,
)
from tests.support.edge import make_bundle, make_onnx_model


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict:
    """Two signed versions of the tiny model, and the key."""
    folder = tmp_path_factory.mktemp("release")
    private, public = signing_key(folder / "keys")
    return {"public": public, "v1": signed_package(folder, private, "v1"),
            "v2": signed_package(folder, private, "v2", bias=-0.5),
            # no device reaches this floor: its self-test must fail
            "v3-slow": signed_package(folder, private, "v3-slow", "--min-fps", "1e9")}


class RecordingService:
    """Stands in for systemctl: records what the updater asked, in order."""

    def __init__(self, fail_stop: bool = False) -> None:
        self.calls: list[str] = []
        self.fail_stop = fail_stop

    def stop(self) -> None:
        self.calls.append("stop")
        if self.fail_stop:
            raise DeployError("systemctl stop sarco-edge.service failed: unit not found")

    def start(self) -> None:
        self.calls.append("start")


def engines_as_onnx(kinds: dict[str, str] | None = None):  # noqa: ANN201
    """An engine build that writes files ONNX Runtime opens in place of TensorRT engines:
    per precision the bundle's own graph ("good"), another model ("wrong": runs, but its
    outputs stray) or bytes no runtime can load ("garbage")."""
    kinds = kinds or {}

    def build(bundle: Path) -> list[str]:
        for precision in ("fp16", "int8"):
            path = engine_path(bundle, precision)
            path.parent.mkdir(parents=True, exist_ok=True)
            kind = kinds.get(precision, "good")
            if kind == "wrong":
                make_onnx_model(path, slope=-4.0, bias=2.0)
            elif kind == "garbage":
                path.write_bytes(b"\x00not an engine" * 64)
            else:
                shutil.copyfile(bundle / "model.onnx", path)
        return []

    return build


def updater(layout, service, kinds: dict[str, str] | None = None) -> Updater:  # noqa: ANN001
    def selftest(bundle: Path):  # noqa: ANN202
        return model_checks(bundle, layout.trusted_keys,
                            lambda path: OnnxRuntimeBackend(path), runs=5)

    return Updater(layout, service, engines_as_onnx(kinds), selftest)


def test_switch_keeps_previous_and_rollback_swaps_them(release, tmp_path) -> None:
    store = BundleStore(tmp_path / "bundles")
    for version in ("v1", "v2"):
        staging = store.staging()
        store.install(staging, unpack_package(release[version], staging))
    assert store.versions() == ["v1", "v2"] and store.current() is None
    store.switch_to("v1")
    with pytest.raises(DeployError, match="no previous bundle"):
        store.rollback()
    switch = store.switch_to("v2")
    assert (store.current(), store.previous()) == ("v2", "v1")
    assert (tmp_path / "bundles" / "current" / "bundle" / "model.onnx").is_file()
    assert os.readlink(tmp_path / "bundles" / "current") == "v2"  # relative: movable
    store.undo(switch)
    assert (store.current(), store.previous()) == ("v1", None)
    store.switch_to("v2")
    assert store.rollback() == "v1" and (store.current(), store.previous()) == ("v1", "v2")
    assert store.prune() == [] and store.versions() == ["v1", "v2"]


def test_a_crash_during_the_switch_leaves_the_old_model_current(release, tmp_path,
                                                                monkeypatch) -> None:
    store = BundleStore(tmp_path / "bundles")
    for version in ("v1", "v2"):
        staging = store.staging()
        store.install(staging, unpack_package(release[version], staging))
    store.switch_to("v1")
    real_replace = os.replace

    def power_cut(source, target):  # noqa: ANN001, ANN202
        if Path(target).name == "current":
            raise OSError("power cut")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError):
        store.switch_to("v2")
    monkeypatch.setattr(os, "replace", real_replace)
    # 'current' was never missing nor half-written: it still names v1
    assert store.current() == "v1"
    assert (tmp_path / "bundles" / "current" / "bundle" / "config.json").is_file()


def test_the_same_version_with_other_content_is_refused(release, tmp_path) -> None:
    store = BundleStore(tmp_path / "bundles")
    staging = store.staging()
    store.install(staging, unpack_package(release["v1"], staging))
    again = store.staging()  # the same package twice is fine
    store.install(again, unpack_package(release["v1"], again))
    other = store.staging()
    signature = unpack_package(release["v2"], other)
    forged = type(signature)(**{**signature.to_dict(), "version": "v1"})
    with pytest.raises(DeployError, match="already installed with other content"):
        store.install(other, forged)


def test_update_installs_then_rolls_back_a_version_whose_selftest_fails(release,
                                                                         tmp_path) -> None:
    layout = device_layout(tmp_path, trusted=release["public"])
    service = RecordingService()
    first = updater(layout, service).apply(str(release["v1"]))
    assert first.outcome == "installed", first.reason
    assert "self-test passed, engine" in first.reason
    selected = engine_path(layout.current_bundle, "fp16").parent / "selected.engine"
    assert selected.is_symlink() and os.readlink(selected) in ("model.fp16.engine",
                                                               "model.int8.engine")

    slow = updater(layout, service).apply(str(release["v3-slow"]))
    assert slow.outcome == "rolled_back" and "fps" in slow.reason and "floor 1e+09" in slow.reason
    broken = updater(layout, service, {"fp16": "garbage"}).apply(str(release["v2"]))
    assert broken.outcome == "rolled_back" and "engine-fp16" in broken.reason
    store = BundleStore(layout.bundles)
    assert (store.current(), store.previous()) == ("v1", None)
    assert broken.model_sha256 == first.model_sha256  # v1's model is what runs
    assert service.calls == ["stop", "start"] * 3
    history = [json.loads(line) for line in layout.history.read_text().splitlines()]
    assert [h["outcome"] for h in history] == ["installed", "rolled_back", "rolled_back"]
    assert json.loads(layout.last_update.read_text())["version"] == "v2"


def test_an_engine_beyond_its_gap_is_not_used_but_the_update_goes_in(release,
                                                                    tmp_path) -> None:
    layout = device_layout(tmp_path, trusted=release["public"])
    service = RecordingService()
    assert updater(layout, service).apply(str(release["v1"])).outcome == "installed"
    second = updater(layout, service, {"int8": "wrong"}).apply(str(release["v2"]))
    assert second.outcome == "installed" and "engine fp16" in second.reason
    store = BundleStore(layout.bundles)
    assert (store.current(), store.previous()) == ("v2", "v1")
    selected = engine_path(layout.current_bundle, "fp16").parent / "selected.engine"
    assert os.readlink(selected) == "model.fp16.engine"
    again = updater(layout, service).apply(str(release["v2"]))
    assert again.outcome == "refused" and "already the current model" in again.reason
    assert again.model_sha256 is not None and again.model_sha256 == second.model_sha256


def test_a_crashing_engine_build_or_selftest_never_leaves_the_new_model_running(
        release, tmp_path) -> None:
    layout = device_layout(tmp_path, trusted=release["public"])
    service = RecordingService()
    assert updater(layout, service).apply(str(release["v1"])).outcome == "installed"

    def tensorrt_mismatch(bundle: Path) -> list[str]:
        raise AttributeError("'tensorrt.Builder' object has no attribute 'build_engine'")

    def crashing_selftest(bundle: Path):  # noqa: ANN202
        raise MemoryError("CUDA out of memory")

    built = Updater(layout, service, tensorrt_mismatch, crashing_selftest).apply(str(release["v2"]))
    assert built.outcome == "failed" and "AttributeError" in built.reason
    tested = Updater(layout, service, engines_as_onnx(), crashing_selftest).apply(
        str(release["v2"]))
    assert tested.outcome == "rolled_back" and "MemoryError" in tested.reason
    assert BundleStore(layout.bundles).current() == "v1"
    assert service.calls[-2:] == ["stop", "start"]


def test_a_service_that_cannot_stop_means_no_switch(release, tmp_path) -> None:
    layout = device_layout(tmp_path, trusted=release["public"])
    outcome = updater(layout, RecordingService(fail_stop=True)).apply(str(release["v1"]))
    assert outcome.outcome == "failed" and "unit not found" in outcome.reason
    assert BundleStore(layout.bundles).current() is None


def int8_package(folder: Path, key: Path, version: str, status: str) -> Path:
    """A package signed with the release key but not by `sarco sign` (which refuses an INT8
    model the gate did not accept): an older or altered tool. It carries a Q/DQ graph whose
    accuracy gate status is ``status``, and a golden set."""
    bundle = make_bundle(folder / f"bundle-{version}")
    inputs = np.random.default_rng(0).uniform(-1, 1, (4, 1, 64, 64)).astype(np.float32)
    write_golden(bundle, inputs, OnnxRuntimeBackend(bundle / "model.onnx").outputs(inputs),
                 SelftestSpec())
    add_int8(bundle, status=status)
    signature = sign_bundle(bundle, load_private_key(key, None), version)
    return write_package(bundle, signature, folder / f"{version}.sarco-bundle.tar")


@pytest.mark.parametrize("status", ["accepted", "pending", "rejected"])
def test_update_installs_an_int8_model_only_when_the_gate_accepted_it(release, tmp_path,
                                                                      status) -> None:
    layout = device_layout(tmp_path, trusted=release["public"])
    service = RecordingService()
    assert updater(layout, service).apply(str(release["v1"])).outcome == "installed"
    package = int8_package(tmp_path / "release", release["public"].with_suffix(".key"),
                           f"v4-{status}", status)
    outcome = updater(layout, service).apply(str(package))
    store = BundleStore(layout.bundles)
    if status == "accepted":
        assert outcome.outcome == "installed", outcome.reason
        assert store.current() == "v4-accepted"
        return
    assert outcome.outcome == "refused"
    assert f"INT8 model with accuracy gate status '{status}'" in outcome.reason
    assert store.current() == "v1" and store.versions() == ["v1"]
    assert service.calls == ["stop", "start"]  # only for v1: the refused package stopped nothing


def test_switch_and_rollback_refuse_a_version_the_app_would_not_load(release, tmp_path) -> None:
    store = BundleStore(tmp_path / "bundles")
    pending = int8_package(tmp_path / "release", release["public"].with_suffix(".key"),
                           "v4-pending", "pending")
    for package in (release["v1"], pending):  # installing a slot checks only the signature's
        staging = store.staging()              # version (update.py verifies before that)
        store.install(staging, unpack_package(package, staging))
    store.switch_to("v1")
    with pytest.raises(DeployError, match="version v4-pending not switched to: .*accuracy gate "
                                          "status 'pending'"):
        store.switch_to("v4-pending")
    os.symlink("v4-pending", tmp_path / "bundles" / "previous")  # left by an older release
    with pytest.raises(DeployError, match="sarco-calibrate verify"):
        store.rollback()
    assert (store.current(), store.previous()) == ("v1", "v4-pending")


def test_requests_are_taken_once_and_checked(tmp_path) -> None:
    layout = device_layout(tmp_path)
    with pytest.raises(DeployError, match="http"):
        write_request(layout, "ftp://example.org/model.tar", None)
    with pytest.raises(DeployError, match="64"):
        write_request(layout, "https://example.org/model.tar", "abc")
    write_request(layout, "https://example.org/model.tar", "0" * 64)
    assert take_request(layout) == ("https://example.org/model.tar", "0" * 64)
    assert not layout.request_file.exists()


def test_cli_update_from_a_request_then_rollback(release, tmp_path) -> None:
    layout = device_layout(tmp_path, trusted=release["public"])
    config = write_edge_config(layout.config_dir / "edge.toml", layout, tmp_path / "none.avi")
    runner = CliRunner()
    app = edge_app_with_deploy()
    for version in ("v1", "v2"):
        package_sha = hashlib.sha256(release[version].read_bytes()).hexdigest()
        write_request(layout, str(release[version]), package_sha)
        result = runner.invoke(app, ["update", "--from-request", "--config", str(config),
                                     "--no-restart", "--runs", "5"])
        assert result.exit_code == 0, result.output
        assert "installed" in result.output
    wrong = runner.invoke(app, ["update", str(release["v1"]), "--sha256", "1" * 64,
                                "--config", str(config), "--no-restart"])
    assert wrong.exit_code == 1 and "SHA-256 differs" in wrong.output
    result = runner.invoke(app, ["rollback", "--config", str(config), "--no-restart"])
    assert result.exit_code == 0, result.output
    assert BundleStore(layout.bundles).current() == "v1"
