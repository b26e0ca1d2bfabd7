"""The TensorRT backend, the engine build and the self-test run end to end against the
TensorRT / cuda-python test doubles (tests/support/doubles: documented behaviour, not TensorRT). One
test per defect of the first-device review (issue #20); none of this is verified on a device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_app.deploy.engines import BuildPlan, Platform, engine_path, ensure_engines, log_path
from edge_app.deploy.layout import DeviceLayout
from edge_app.deploy.selftest import check_folders, model_checks
from edge_app.deploy.slots import BundleStore
from edge_app.inference import BackendError
from edge_app.inference.onnx_runtime import OnnxRuntimeBackend
from sarco_core.update import DeployError
from sarco_core.update.package import unpack_package
from tests.support.deploy import device_layout, golden_video, sarco_app, signing_key, write_edge_config
from tests.support.edge import make_bundle, make_onnx_model, write_video
from tests.support.paths import REPO
from tests.support.tensorrt_double import (
    JETPACK_62,
    UNPINNED_CUDA_PYTHON,
    double_environment,
    installed_double,
)

JP62 = Platform("10.3.0", "Orin", "8.7")
JP51 = Platform("8.5.2.2", "Orin", "8.7")
SARCO_EDGE = [sys.executable, "-c", "from edge_app.cli import app; app()"]


def build(plan: BuildPlan, platform: Platform, cache: Path, **options):  # noqa: ANN003, ANN201
    from edge_app.deploy.tensorrt_build import build_engine

    return build_engine(plan, platform, cache, **options)


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "model.onnx"
    make_onnx_model(path)
    return path


def frames(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 1, 64, 64), dtype=np.float32)


def test_a_batch_above_the_profile_is_run_in_chunks_the_engine_accepts(model, tmp_path) -> None:
    """Defect 1: the profile's max batch is 8, `sarco sign` keeps 16 golden frames, and the
    self-test sends them at once; TensorRT refuses the shape (set_input_shape -> False)."""
    with installed_double():
        built = build(BuildPlan("fp16", model, "float-onnx", False), JP62, tmp_path / "cache")
        (tmp_path / "e").write_bytes(built.serialized)
        from edge_app.inference.tensorrt_engine import TensorRTBackend

        backend = TensorRTBackend(tmp_path / "e")
        assert backend.max_batch == 8  # read back from the engine's profile
        batch = frames(19)
        expected = OnnxRuntimeBackend(model).outputs(batch)
        np.testing.assert_allclose(backend.outputs(batch), expected, rtol=1e-6)
        np.testing.assert_allclose(backend.outputs(batch[:1]), expected[:1], rtol=1e-6)
        # the double refuses as TensorRT does, and the backend says so instead of crashing
        assert backend._context.set_input_shape(backend._input, (9, 1, 64, 64)) is False
        backend.max_batch, backend._batch = 16, 0
        with pytest.raises(BackendError, match="refused input shape"):
            backend.outputs(frames(16))


def test_a_context_that_cannot_be_created_is_a_clear_backend_error(model, tmp_path) -> None:
    """Defect 5: create_execution_context() returning None fell into the removed bindings API
    (AttributeError)."""
    with installed_double(SARCO_FAKE_TRT_NO_CONTEXT="1"):
        built = build(BuildPlan("fp16", model, "float-onnx", False), JP62, tmp_path / "cache")
        (tmp_path / "e").write_bytes(built.serialized)
        from edge_app.inference.tensorrt_engine import TensorRTBackend

        with pytest.raises(BackendError, match="execution context"):
            TensorRTBackend(tmp_path / "e")
    os.environ.pop("SARCO_FAKE_TRT_NO_CONTEXT", None)


def test_an_engine_of_another_tensorrt_version_is_refused_with_the_rebuild_hint(
        model, tmp_path) -> None:
    with installed_double():
        built = build(BuildPlan("fp16", model, "float-onnx", False), JP62, tmp_path / "cache")
    (tmp_path / "e").write_bytes(built.serialized)
    with installed_double(SARCO_FAKE_TENSORRT="10.7.0"):
        from edge_app.inference.tensorrt_engine import TensorRTBackend

        with pytest.raises(BackendError, match="sarco-edge build-engine"):
            TensorRTBackend(tmp_path / "e")


def test_an_unpinned_cuda_python_is_named_as_a_driver_runtime_mismatch() -> None:
    """Defect 2: a cuda-python newer than JetPack's CUDA fails every call with error 35; the
    device must say so, not blame the video group and quietly use the CPU."""
    with installed_double(**UNPINNED_CUDA_PYTHON):
        from edge_app.deploy.tensorrt_build import detect_platform

        with pytest.raises(DeployError, match="driver/runtime mismatch") as caught:
            detect_platform()
    message = str(caught.value)
    assert "CUDA 13.0 runtime" in message and "supports CUDA 12.6" in message
    assert "cuda-python==12.6.*" in message and "video" not in message
    from edge_app.inference.cuda_runtime import cuda_python_for

    assert cuda_python_for(11040) == "cuda-python==11.8.*"  # none was published for 11.4
    with installed_double(SARCO_FAKE_GPU_COUNT="0"):
        from edge_app.deploy.tensorrt_build import detect_platform

        with pytest.raises(DeployError, match="'video'"):
            detect_platform()
    with installed_double(SARCO_FAKE_CUDA_LAYOUT="legacy"):  # cuda-python before 12.6.1
        from edge_app.deploy.tensorrt_build import detect_platform

        assert detect_platform() == JP62


@pytest.mark.parametrize("release, words", [
    ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64",
     "JetPack 6.1/6.2, TensorRT 10.3, CUDA 12.6 expected (cuda-python==12.6.*)"),
    ("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64",
     "JetPack 6.0, TensorRT 8.6, CUDA 12.2 expected (cuda-python==12.2.*)"),
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64",
     "JetPack 5.1.x, TensorRT 8.5, CUDA 11.4 expected (cuda-python==11.8.*)"),
])
def test_setup_maps_each_jetpack_to_its_tensorrt_and_cuda_and_pins_cuda_python(
        tmp_path, release, words) -> None:
    """Defects 2 and 3: JetPack 6.0 ships TensorRT 8.6 and CUDA 12.2, not TensorRT 10."""
    release_file = tmp_path / "nv_tegra_release"
    release_file.write_text(release + "\n")
    setup = REPO / "jetson" / "setup.sh"
    done = subprocess.run(["bash", str(setup), "--check-only"], capture_output=True, text=True,
                          env={**os.environ, "SARCO_L4T_RELEASE_FILE": str(release_file)})
    assert done.returncode == 0 and words in done.stdout
    recipe = (setup.parent / "container" / "Dockerfile").read_text()
    assert "l4t-jetpack:r36.4" in recipe and '"cuda-python==12.6.*"' in recipe


def test_tensorrt_8_parses_only_opset_17_and_builds_int8_from_the_calibration_cache(
        tmp_path) -> None:
    """Defect 4: the 8.5 parser reads opsets <= 17; the Q/DQ graph is opset 19."""
    bundle = make_bundle(tmp_path / "bundle")
    qdq = tmp_path / "qdq19.onnx"
    make_onnx_model(qdq)
    import onnx

    graph = onnx.load(qdq)
    graph.opset_import[0].version = 19
    onnx.save(graph, qdq)
    (bundle / "calibration.cache").write_bytes(b"TRT-8502-EntropyCalibration2\nimage: 3c010a14\n")
    with installed_double(SARCO_FAKE_TENSORRT="8.5.2.2", SARCO_FAKE_CUDA_DRIVER="11040",
                          SARCO_FAKE_CUDA_RUNTIME="11040"):
        with pytest.raises(DeployError, match="opset"):
            build(BuildPlan("int8", qdq, "qdq-onnx", False), JP51, tmp_path / "cache")
        statuses, _ = ensure_engines(bundle, JP51, lambda plan: build(plan, JP51,
                                                                      tmp_path / "cache"))
    assert [(s.precision, s.action, s.meta.source) for s in statuses] == [
        ("fp16", "built", "float-onnx"), ("int8", "built", "float-onnx+calibration-cache")]


def test_a_damaged_timing_cache_starts_afresh_and_says_so(model, tmp_path) -> None:
    """Defect 6: create_timing_cache() returns None for a damaged blob (was a TypeError)."""
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"\x00garbage")
    with installed_double():
        built = build(BuildPlan("fp16", model, "float-onnx", False), JP62, cache)
    assert any("timing cache" in line and "unusable" in line for line in built.log)
    assert cache.read_bytes().startswith(b"FAKE-TRT-TIMING")  # a new, usable cache


def test_tensorrt_11_without_precision_flags_builds_only_strongly_typed(model, tmp_path) -> None:
    """Defect 7: BuilderFlag.FP16/INT8 are removed in TensorRT 11."""
    thor = Platform("11.0.0", "Thor", "11.0")
    with installed_double(SARCO_FAKE_TENSORRT="11.0.0", SARCO_FAKE_CUDA_DRIVER="13000",
                          SARCO_FAKE_CUDA_RUNTIME="13000"):
        with pytest.raises(DeployError, match="no BuilderFlag.FP16"):
            build(BuildPlan("fp16", model, "float-onnx", False), thor, tmp_path / "cache")
        built = build(BuildPlan("int8", model, "qdq-onnx", True), thor, tmp_path / "cache")
    assert built.serialized.startswith(b"FAKE-TRT-ENGINE")


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")
def test_what_a_root_run_update_builds_is_given_to_the_service_user(tmp_path) -> None:
    """Defect 8: the update runs as root and makes the version slot, the engines and the timing
    cache; they stayed root's, and the self-test run as the service user then died of an
    uncaught PermissionError. Here `nobody` plays the service user that owns the data folder."""
    from edge_app.config import load_config
    from edge_app.deploy.cli import _updater

    video = tmp_path / "scan.avi"
    write_video(video, [("live", 24)], width=320, height=240)
    layout = install_signed(tmp_path, video)  # made by root, as the update makes it
    for folder in (layout.data_dir, layout.bundles):
        os.chown(folder, 65534, 65534)
    config = load_config(write_edge_config(layout.config_dir / "edge.toml", layout, video))
    bundle = layout.current_bundle
    failed = check_folders(layout.data_dir, bundle, user="nobody")
    assert failed.status == "fail" and "chown -R sarco-edge" in failed.detail
    with installed_double():
        notes = _updater(config, layout, True, 5).build_engines(bundle)
    assert notes[0] == "fp16 engine built"
    made = [bundle.parent, bundle, engine_path(bundle, "fp16"), *layout.data_dir.glob("tensorrt-*")]
    assert len(made) == 4 and {path.stat().st_uid for path in made} == {65534}
    assert check_folders(layout.data_dir, bundle, user="nobody").status == "pass"


def install_signed(tmp_path: Path, video: Path) -> DeviceLayout:
    """A device whose current version is the tiny model signed by `sarco sign` with its
    default golden count, golden frames taken from ``video``."""
    key, public = signing_key(tmp_path / "keys")
    package = tmp_path / "v1.tar"
    result = CliRunner().invoke(sarco_app(), [
        "sign", str(make_bundle(tmp_path / "bundle")), "--key", str(key), "--version", "v1",
        "--out", str(package), "--golden-frames", str(video)])
    assert result.exit_code == 0, result.output
    layout = device_layout(tmp_path / "device", trusted=public)
    store = BundleStore(layout.bundles)
    staging = store.staging()
    store.install(staging, unpack_package(package, staging))
    store.switch_to("v1")
    return layout


def test_a_folder_the_self_test_cannot_write_fails_one_check_instead_of_crashing(
        tmp_path, monkeypatch) -> None:
    from tests.support.deploy import stand_in_engines

    layout = install_signed(tmp_path, golden_video(tmp_path / "frames"))
    stand_in_engines(layout.current_bundle)

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "symlink", refuse)
    report = model_checks(layout.current_bundle, layout.trusted_keys, OnnxRuntimeBackend, runs=5)
    check = {c.name: c for c in report.checks}["engine-select"]
    assert check.status == "fail" and "Permission denied" in check.detail
    assert report.selected is None and report.model_failed == []


def test_selftest_runs_the_tensorrt_path_with_the_default_golden_count_and_reports(
        tmp_path) -> None:
    """Done when: with the double installed, build-engine then selftest on a bundle signed with
    the default golden count (16) passes on TensorRT; with an unpinned cuda-python it fails
    naming the mismatch."""
    video = tmp_path / "scan.avi"
    write_video(video, [("live", 24)], width=320, height=240)
    layout = install_signed(tmp_path, video)
    config = write_edge_config(layout.config_dir / "edge.toml", layout, video)
    bundle = layout.current_bundle
    assert len(np.load(bundle / "golden.npz")["inputs"]) == 16

    def edge(*args: str, **environment: str) -> subprocess.CompletedProcess:
        return subprocess.run([*SARCO_EDGE, *args], capture_output=True, text=True,
                              env=double_environment(**environment), timeout=300)

    built = edge("build-engine", str(bundle), "--config", str(config))
    assert built.returncode == 0, built.stdout + built.stderr
    assert "fp16: built" in built.stdout and log_path(engine_path(bundle, "fp16")).is_file()
    report_file = tmp_path / "first-device.json"
    passed = edge("selftest", "--config", str(config), "--runs", "5", "--report",
                  str(report_file))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "engine in use: fp16" in passed.stdout
    report = json.loads(report_file.read_text())
    checks = {c["name"]: c for c in report["selftest"]["checks"]}
    assert checks["engine-fp16"]["status"] == "pass" and checks["tensorrt"]["status"] == "pass"
    assert report["versions"]["tensorrt"] == JETPACK_62["SARCO_FAKE_TENSORRT"]
    assert report["cuda"] == {**report["cuda"], "ok": True, "driver": "12.6", "runtime": "12.6"}
    assert report["engines"]["fp16"]["build_log"] and report["timings"]["fps"]["fps"] > 0

    mismatched = edge("selftest", "--config", str(config), "--runs", "5",
                      **UNPINNED_CUDA_PYTHON)
    assert mismatched.returncode == 1
    assert "FAILED: engine-fp16, tensorrt" in mismatched.stdout  # the engine cannot run either
    assert "driver/runtime mismatch" in mismatched.stdout


def test_an_update_on_a_device_whose_cuda_cannot_run_says_so_loudly(tmp_path) -> None:
    """An update must not pass quietly on ONNX Runtime when TensorRT is there but CUDA fails."""
    from edge_app.config import load_config
    from edge_app.deploy.cli import _updater

    video = tmp_path / "scan.avi"
    write_video(video, [("live", 24)], width=320, height=240)
    layout = install_signed(tmp_path, video)
    config = load_config(write_edge_config(layout.config_dir / "edge.toml", layout, video))
    with installed_double(**UNPINNED_CUDA_PYTHON):
        notes = _updater(config, layout, True, 5).build_engines(layout.current_bundle)
    assert notes[0].startswith("WARNING: TensorRT is installed but cannot run")
    assert "driver/runtime mismatch" in notes[0]
