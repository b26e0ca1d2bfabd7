"""Engine planning and staleness (pure Python; the TensorRT build itself is verified on the
device only). A stand-in builder records what it is asked to build."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edge_app.deploy.engines import (
    BuildPlan,
    BuiltEngine,
    Platform,
    engine_path,
    ensure_engines,
    meta_path,
    plan_builds,
    stale_reason,
)
from edge_app.deploy.selftest import choose_engine
from edge_app.deploy.tensorrt_build import batch_profile, calibrator_kind
from sarco_core.bundle import load_device_bundle
from sarco_core.update import DeployError
from tests.support.deploy import add_int8
from tests.support.edge import make_bundle, make_onnx_model

ORIN_JP6 = Platform("10.3.0", "Orin", "8.7")
ORIN_JP5 = Platform("8.5.2.2", "Orin", "8.7")


class RecordingBuilder:
    """Returns distinct bytes per call, as a real build's output differs per plan."""

    def __init__(self) -> None:
        self.built: list[str] = []

    def __call__(self, plan: BuildPlan) -> BuiltEngine:
        self.built.append(plan.precision)
        return BuiltEngine(f"engine {plan.precision} {plan.source} #{len(self.built)}".encode(),
                           1.5, (f"[INFO] built {plan.precision}",))


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A float bundle carrying a Q/DQ graph the accuracy gate accepted, as `sarco sign --int8`
    ships it."""
    return add_int8(make_bundle(tmp_path / "bundle"))


def test_plans_follow_the_tensorrt_version_and_what_the_bundle_ships(tmp_path) -> None:
    plain = make_bundle(tmp_path / "plain")
    plans, notes = plan_builds(plain, ORIN_JP6)
    assert [p.precision for p in plans] == ["fp16"] and "neither" in notes[0]

    (plain / "calibration.cache").write_bytes(b"TRT-8502-EntropyCalibration2\nimage: 3c010a14\n")
    plans, _ = plan_builds(plain, ORIN_JP5)
    assert plans[1] == BuildPlan("int8", plain / "model.onnx", "float-onnx+calibration-cache",
                                 strongly_typed=False,
                                 calibration_cache=plain / "calibration.cache")
    plans, notes = plan_builds(plain, ORIN_JP6)  # TensorRT 10 wants the Q/DQ graph
    assert len(plans) == 1 and "Q/DQ" in notes[0]

    make_onnx_model(plain / "model.qdq.onnx")
    plans, notes = plan_builds(plain, ORIN_JP6)
    assert plans[1].source == "qdq-onnx" and plans[1].strongly_typed is True
    assert plans[0].strongly_typed is False and notes == []
    # TensorRT 8.x: its ONNX parser reads opsets <= 17, the Q/DQ graph is opset 19, so INT8
    # comes from the calibration cache even when the bundle also carries the Q/DQ graph
    plans, notes = plan_builds(plain, ORIN_JP5)
    assert [p.source for p in plans] == ["float-onnx", "float-onnx+calibration-cache"]
    (plain / "calibration.cache").unlink()
    plans, notes = plan_builds(plain, ORIN_JP5)
    assert [p.precision for p in plans] == ["fp16"] and "opset-19" in notes[0]
    for too_old in ("7.1.3", "8.4.1"):
        with pytest.raises(DeployError, match="too old"):
            plan_builds(plain, Platform(too_old, "Xavier", "7.2"))


def test_tensorrt_11_plans_no_engine_that_needs_the_removed_fp16_flag(tmp_path) -> None:
    bundle = add_int8(make_bundle(tmp_path / "bundle"))
    plans, notes = plan_builds(bundle, Platform("11.0.0", "Thor", "11.0"))
    assert [(p.precision, p.strongly_typed) for p in plans] == [("int8", True)]
    assert "no FP16 builder flag" in notes[0]


def test_engines_are_built_once_and_rebuilt_when_anything_they_depend_on_changes(
        bundle, tmp_path) -> None:
    builder = RecordingBuilder()
    statuses, _ = ensure_engines(bundle, ORIN_JP6, builder)
    assert [(s.precision, s.action, s.reason) for s in statuses] == [
        ("fp16", "built", "not built yet"), ("int8", "built", "not built yet")]
    meta = json.loads(meta_path(engine_path(bundle, "int8")).read_text())
    assert (meta["tensorrt_version"], meta["gpu_name"], meta["compute_capability"],
            meta["source"], meta["strongly_typed"]) == ("10.3.0", "Orin", "8.7", "qdq-onnx", True)

    statuses, _ = ensure_engines(bundle, ORIN_JP6, builder)
    assert [s.action for s in statuses] == ["up-to-date", "up-to-date"] and len(builder.built) == 2

    plans = {p.precision: p for p in plan_builds(bundle, ORIN_JP6)[0]}
    upgraded = replace(ORIN_JP6, tensorrt_version="10.7.0")
    assert stale_reason(bundle, plans["fp16"], upgraded) == \
        "TensorRT version changed (10.3.0 -> 10.7.0)"
    assert stale_reason(bundle, plans["fp16"], replace(ORIN_JP6, gpu_name="Xavier")) == \
        "GPU changed (Orin -> Xavier)"
    assert "compute capability" in stale_reason(bundle, plans["fp16"],
                                                replace(ORIN_JP6, compute_capability="7.2"))

    make_onnx_model(bundle / "model.qdq.onnx", slope=2.0)  # a new calibration
    assert stale_reason(bundle, plans["int8"], ORIN_JP6).startswith("graph changed")
    assert stale_reason(bundle, plans["fp16"], ORIN_JP6) is None
    engine_path(bundle, "fp16").write_bytes(b"truncated")
    assert "damaged" in stale_reason(bundle, plans["fp16"], ORIN_JP6)
    statuses, _ = ensure_engines(bundle, ORIN_JP6, builder)
    assert [s.reason.split(" (")[0] for s in statuses] == ["engine file damaged", "graph changed"]

    meta_path(engine_path(bundle, "fp16")).unlink()  # a crash between engine and metadata
    assert stale_reason(bundle, plans["fp16"], ORIN_JP6) == "no readable metadata"
    statuses, _ = ensure_engines(bundle, ORIN_JP6, builder, force=True)
    assert {s.reason for s in statuses} == {"forced"} and len(builder.built) == 6


def test_engines_sit_beside_the_bundle_where_its_manifest_does_not_look(bundle) -> None:
    ensure_engines(bundle, ORIN_JP6, RecordingBuilder())
    assert engine_path(bundle, "fp16").parent == bundle.parent / "bundle.engines"
    load_device_bundle(bundle)  # still verifies: nothing was added inside it


@pytest.mark.parametrize("passed, chosen", [
    ({"fp16": 0.004, "int8": 0.003}, "int8"),   # INT8 within its gap and faster
    ({"fp16": 0.004, "int8": 0.0041}, "fp16"),  # INT8 no faster: FP16 (small depthwise CNNs)
    ({"fp16": 0.004}, "fp16"),                  # INT8 beyond its gap or not built
    ({"int8": 0.003}, "int8"),                  # FP16 beyond its gap
    ({}, None),                                 # no engine: ONNX Runtime
])
def test_int8_is_used_only_when_it_passed_and_is_faster(passed, chosen) -> None:
    assert choose_engine(passed) == chosen


def test_calibration_cache_headers_name_their_calibrator() -> None:
    assert calibrator_kind(b"TRT-8502-EntropyCalibration2\ninput: 3c010a14\n") == \
        "IInt8EntropyCalibrator2"
    assert calibrator_kind(b"TRT-8510-MinMaxCalibration\n") == "IInt8MinMaxCalibrator"
    with pytest.raises(DeployError, match="not a TensorRT cache"):
        calibrator_kind(b"\x89PNG\r\n")


def test_only_the_batch_axis_may_be_dynamic() -> None:
    assert batch_profile((-1, 1, 128, 128), 8) == ((1, 1, 128, 128), (1, 1, 128, 128),
                                                   (8, 1, 128, 128))
    assert batch_profile((1, 1, 128, 128), 8) is None
    with pytest.raises(DeployError, match="batch axis"):
        batch_profile((-1, 1, -1, 128), 8)
