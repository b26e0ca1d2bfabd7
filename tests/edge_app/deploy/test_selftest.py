"""The self-test logic, with ONNX Runtime standing in for TensorRT (engines here are ONNX files
ONNX Runtime opens), a real video file as the camera and a real Mosquitto as the broker."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_app.config import load_config
from edge_app.deploy.engines import BuiltEngine, Platform, engine_path, plan_builds, save_engine
from edge_app.deploy.selftest import MODEL_CHECKS, check_broker, check_camera, check_display, model_checks
from edge_app.deploy.slots import BundleStore
from edge_app.inference.onnx_runtime import OnnxRuntimeBackend
from sarco_core.bundle import write_manifest
from sarco_core.update.golden import SelftestSpec, load_golden, write_golden
from sarco_core.update.package import unpack_package
from testkit.mosquitto import MosquittoBroker, free_port, requires_mosquitto
from tests.support.deploy import (
    add_int8,
    device_layout,
    edge_app_with_deploy,
    golden_video,
    signed_package,
    signing_key,
    stand_in_engines,
    write_edge_config,
)
from tests.support.edge import make_bundle

ORT = OnnxRuntimeBackend  # opens the ONNX files that stand in for engines


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("release")
    private, public = signing_key(folder / "keys")
    return {"public": public, "package": signed_package(folder, private, "v1"),
            "video": golden_video(folder / "frames")}


@pytest.fixture
def installed(release, tmp_path):  # noqa: ANN201
    """A device with v1 installed and current; returns (layout, bundle path)."""
    layout = device_layout(tmp_path / "device", trusted=release["public"])
    store = BundleStore(layout.bundles)
    staging = store.staging()
    store.install(staging, unpack_package(release["package"], staging))
    store.switch_to("v1")
    return layout, layout.current_bundle


def by_name(report) -> dict:  # noqa: ANN001
    return {c.name: c for c in report.checks}


def test_engines_are_judged_against_onnx_runtime_and_the_choice_recorded(installed) -> None:
    layout, bundle = installed
    stand_in_engines(bundle, int8="wrong")
    report = model_checks(bundle, layout.trusted_keys, ORT, runs=5)
    checks = by_name(report)
    assert report.failed == [] and report.selected == "fp16"
    assert checks["bundle"].status == "pass" and "signature (key" in checks["bundle"].detail
    assert checks["reference"].figures["max_probability_gap"] < 1e-5
    assert checks["engine-fp16"].status == "pass"
    assert checks["engine-int8"].status == "warn" and "not used" in checks["engine-int8"].detail
    assert checks["engine-int8"].figures["max_probability_gap"] > 0.05
    assert os.readlink(bundle.parent / "bundle.engines" / "selected.engine") == \
        "model.fp16.engine"
    assert checks["fps"].status == "pass" and checks["fps"].figures["fps"] > 0

    stand_in_engines(bundle, fp16="wrong", int8="wrong")  # no engine within its gap
    report = model_checks(bundle, layout.trusted_keys, ORT, runs=5)
    assert report.selected is None and report.failed == []
    assert not (bundle.parent / "bundle.engines" / "selected.engine").exists()


def test_golden_logits_that_the_model_does_not_give_fail_the_reference(tmp_path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    inputs = np.random.default_rng(3).uniform(-1, 1, (4, 1, 64, 64)).astype(np.float32)
    true_logits = ORT(bundle / "model.onnx").outputs(inputs)
    shifted = true_logits + np.array([0.0, 1.0])  # as if signed with another model
    write_golden(bundle, inputs, shifted, SelftestSpec())
    write_manifest(bundle)
    report = model_checks(bundle, None, ORT, runs=5)
    checks = by_name(report)
    assert report.model_failed == ["reference"]
    def p_sarcopenia(logits: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0])))

    expected_gap = float(np.max(np.abs(p_sarcopenia(shifted) - p_sarcopenia(true_logits))))
    assert checks["reference"].figures["max_probability_gap"] == pytest.approx(expected_gap,
                                                                                rel=1e-4)
    assert load_golden(bundle).spec.max_probability_gap["fp32"] < expected_gap


def test_a_bundle_without_golden_set_or_with_a_bad_signature_fails(installed,
                                                                   tmp_path) -> None:
    plain = make_bundle(tmp_path / "plain")
    report = model_checks(plain, None, ORT)
    assert "golden-frames" in by_name(report)["reference"].detail
    assert set(report.model_failed) == {"reference", "engine-fp16", "engine-int8", "fps"}

    layout, bundle = installed
    signature_path = bundle.parent / "signature.json"
    signature = json.loads(signature_path.read_text())
    signature["version"] = "v7"
    signature_path.write_text(json.dumps(signature))
    report = model_checks(bundle, layout.trusted_keys, ORT)
    assert report.model_failed[0] == "bundle" and "signature does not match" in \
        by_name(report)["bundle"].detail


def test_a_bundle_whose_int8_model_the_gate_rejected_fails(release, tmp_path) -> None:
    bundle = add_int8(make_bundle(tmp_path / "bundle"), status="rejected")
    report = model_checks(bundle, None, ORT, runs=5)
    assert report.model_failed == list(MODEL_CHECKS)
    assert "INT8 model with accuracy gate status 'rejected'" in by_name(report)["bundle"].detail
    layout = device_layout(tmp_path / "device")
    config = write_edge_config(tmp_path / "edge.toml", layout, release["video"])
    result = CliRunner().invoke(edge_app_with_deploy(), [
        "selftest", "--config", str(config), "--bundle", str(bundle), "--runs", "5"])
    assert result.exit_code == 1 and "FAILED: bundle" in result.output
    assert "sarco-calibrate verify" in result.output


def test_a_stale_engine_fails_with_the_rebuild_hint(installed) -> None:
    layout, bundle = installed
    stand_in_engines(bundle)
    built_on = Platform("10.3.0", "Orin", "8.7")
    for plan in plan_builds(bundle, built_on)[0]:
        save_engine(bundle, plan, built_on,
                    BuiltEngine(engine_path(bundle, plan.precision).read_bytes(), 1.0))
    report = model_checks(bundle, layout.trusted_keys, ORT, runs=5, platform=built_on)
    assert report.failed == [] and report.selected == "fp16"
    # the bundle has no Q/DQ graph: an INT8 engine lying there is never used
    assert by_name(report)["engine-int8"].status == "warn"
    after_upgrade = Platform("10.7.0", "Orin", "8.7")
    report = model_checks(bundle, layout.trusted_keys, ORT, runs=5, platform=after_upgrade)
    assert report.model_failed == ["engine-fp16"]
    assert "TensorRT version changed (10.3.0 -> 10.7.0)" in by_name(report)["engine-fp16"].detail


def test_camera_and_display_checks(release, tmp_path) -> None:
    layout = device_layout(tmp_path)
    config = load_config(write_edge_config(tmp_path / "a.toml", layout, release["video"]))
    camera = check_camera(config, timeout_s=5)
    assert camera.status == "pass" and camera.figures == {"width": 320.0, "height": 240.0}
    missing = load_config(write_edge_config(tmp_path / "b.toml", layout, "/dev/video99"))
    assert check_camera(missing, 1).status == "fail"
    assert "/dev/video99" in check_camera(missing, 1).detail

    assert check_display(config).status == "skip"  # headless
    windowed = load_config(write_edge_config(tmp_path / "c.toml", layout, release["video"],
                                             display={"headless": False}))
    assert check_display(windowed, {}).status == "fail"
    no_server = check_display(windowed, {"DISPLAY": ":97"})
    assert no_server.status == "fail" and "X97" in no_server.detail
    assert check_display(windowed, {"WAYLAND_DISPLAY": "wayland-0"}).status == "pass"


@requires_mosquitto
def test_broker_check_logs_in_with_the_device_credentials(release, tmp_path) -> None:
    layout = device_layout(tmp_path)
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    with MosquittoBroker(tmp_path / "broker", {"edge-01": "s3cret"}) as broker:
        good = load_config(write_edge_config(
            tmp_path / "a.toml", layout, release["video"],
            mqtt={"broker": broker.url, "username": "edge-01", "password_file": str(password)}))
        assert check_broker(good, 5).status == "pass"
        password.write_text("wrong\n")
        refused = check_broker(good, 5)
        assert refused.status == "fail" and "refused the login as edge-01" in refused.detail
    nobody = load_config(write_edge_config(
        tmp_path / "b.toml", layout, release["video"],
        mqtt={"broker": f"mqtt://127.0.0.1:{free_port()}", "username": "edge-01"}))
    assert check_broker(nobody, 2).status == "fail"
    assert "cannot reach" in check_broker(nobody, 2).detail


def test_selftest_command_names_what_failed(installed, release, tmp_path) -> None:
    layout, bundle = installed
    runner = CliRunner()
    good = write_edge_config(layout.config_dir / "edge.toml", layout, release["video"])
    report_path = tmp_path / "report.json"
    result = runner.invoke(edge_app_with_deploy(), [
        "selftest", "--config", str(good), "--runs", "5", "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output
    assert json.loads(report_path.read_text())["selected_engine"] is None  # no engines built

    bad = write_edge_config(layout.config_dir / "edge.toml", layout, tmp_path / "gone.mp4")
    result = runner.invoke(edge_app_with_deploy(), ["selftest", "--config", str(bad),
                                                    "--runs", "5"])
    assert result.exit_code == 1 and "FAILED: camera" in result.output
    unknown = runner.invoke(edge_app_with_deploy(), ["selftest", "--config", str(bad),
                                                     "--skip", "bundle"])
    assert unknown.exit_code == 2
    assert "'bundle' is not one of 'tensorrt', 'folders', 'camera', 'display', 'broker'" in unknown.output
