"""select -> quantize -> verify on a tiny real-file cohort (tests/support/calibration.py):
the calibration set is drawn only from the training participants, a good set gives an INT8
bundle the gate accepts, and a set of probe-in-the-air frames gives one it rejects, for the cpu
target (ONNX Runtime) and the tensorrt target (Model Optimizer's Q/DQ graph)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from model_build.calibration import CalibrationError
from model_build.calibration.bundles import QUANTIZATION, load_float_bundle, load_int8_bundle
from model_build.calibration.cli import app
from model_build.calibration.onnx_run import int8_tensor_count
from model_build.calibration.quantize import QuantizeOptions, quantize_bundle
from model_build.calibration.select import load_calibration_set, save_calibration_set, select_calibration_set
from model_build.calibration.verify import FlipTest, GateLimits, record, verify
from model_build.cohort import load_cohort
from tests.support.calibration import COHORTS, make_bundle, make_cohort

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("calibration")
    cohort = make_cohort(root / "cohort")
    bundle = make_bundle(root / "bundle", cohort)
    return {"root": root, "cohort": cohort, "bundle": bundle, "source": load_float_bundle(bundle),
            "loaded": load_cohort(cohort)}


@pytest.fixture(scope="module")
def good_set(world: dict) -> Path:
    result = runner.invoke(app, ["select", str(world["bundle"]), str(world["cohort"]), "--n", "48",
                                 "--out", str(world["root"] / "calib_good")])
    assert result.exit_code == 0, result.output
    return world["root"] / "calib_good"


@pytest.fixture(scope="module")
def air_set(world: dict) -> Path:
    """Only frames with the probe in the air (the gate's no_tissue)."""
    chosen = select_calibration_set(world["source"], world["loaded"], "development", 48, frame_state="no_tissue")
    return save_calibration_set(chosen, world["root"] / "calib_air")


def test_calibration_frames_come_from_training_participants_only(world: dict, good_set: Path) -> None:
    from model_build.calibration.cohorts import development_split

    calibration = load_calibration_set(good_set)
    train, held_out = development_split(world["source"], world["loaded"])
    used = set(calibration.frames["participant_id"])
    assert used <= set(train["participant_id"]) and not used & set(held_out["participant_id"])
    assert len(held_out) == 4 and len(train) == COHORTS["development"] - 4
    assert len(calibration.inputs) == 48 and calibration.inputs.shape[1:] == (1, 32, 32)
    assert set(calibration.frames["state"]) == {"ok"} and set(calibration.frames["kind"]) == {"still", "video"}
    strata = calibration.metadata["strata"]
    assert {(s["label"], s["kind"]) for s in strata} == {("0", "still"), ("0", "video"), ("1", "still"), ("1", "video")}
    # Four strata of 6 files each would take 12 inputs each, but a still stratum holds only its
    # 6 stills: it takes them all and the recordings take the rest.
    assert all(s["files"] == 6 for s in strata)
    assert [s["chosen"] for s in strata if s["kind"] == "still"] == [6, 6]
    assert [s["chosen"] for s in strata if s["kind"] == "video"] == [18, 18]
    # Each input is the frame it names, preprocessed as the device does.
    from model_build.calibration.frames import prepared_inputs, video_states
    from model_build.models.data import media_rows

    row = calibration.frames[calibration.frames["kind"] == "video"].iloc[0]
    media = next(m for m in media_rows(world["loaded"], [row["participant_id"]])[row["participant_id"]]
                 if m.listing == "videos.csv")
    state = video_states(media.path, media.format)[int(row["frame"])]
    assert state.state == "ok"
    expected = prepared_inputs(media, [state], world["source"].device.preprocess)[0]
    position = calibration.frames.index[(calibration.frames["path"] == row["path"])
                                        & (calibration.frames["frame"] == row["frame"])][0]
    assert np.array_equal(calibration.inputs[position], expected)


def test_probe_in_air_set_holds_only_dark_frames(air_set: Path, good_set: Path) -> None:
    air, good = load_calibration_set(air_set), load_calibration_set(good_set)
    assert set(air.frames["state"]) == {"no_tissue"} and set(air.frames["kind"]) == {"video"}
    assert air.inputs.mean() < good.inputs.mean() - 0.5


def test_selection_refuses_evaluation_cohorts_and_is_deterministic(world: dict) -> None:
    with pytest.raises(CalibrationError, match="for evaluation only"):
        select_calibration_set(world["source"], world["loaded"], "external", 16)
    with pytest.raises(CalibrationError, match="--frame-state lifted: use one of ok, "):
        select_calibration_set(world["source"], world["loaded"], "development", 16, frame_state="lifted")
    first = select_calibration_set(world["source"], world["loaded"], "development", 10, seed=3)
    second = select_calibration_set(world["source"], world["loaded"], "development", 10, seed=3)
    assert first.frames.equals(second.frames) and np.array_equal(first.inputs, second.inputs)
    result = runner.invoke(app, ["select", str(world["bundle"]), str(world["cohort"]), "--cohort", "poc",
                                 "--out", str(world["root"] / "never")])
    assert result.exit_code == 2 and "evaluation only" in result.output and "Traceback" not in result.output
    assert not (world["root"] / "never").exists()


def test_damaged_calibration_set_is_refused(world: dict, good_set: Path, tmp_path: Path) -> None:
    copy = tmp_path / "calib"
    shutil.copytree(good_set, copy)
    data = bytearray((copy / "inputs.npy").read_bytes())
    data[-1] ^= 0xFF
    (copy / "inputs.npy").write_bytes(bytes(data))
    with pytest.raises(CalibrationError, match="inputs.npy: content differs"):
        load_calibration_set(copy)


def _quantize_and_verify(world: dict, calib: Path, target: str, name: str):
    out = world["root"] / name
    bundle, _ = quantize_bundle(world["source"], load_calibration_set(calib), out, QuantizeOptions(target=target))
    quantized = load_int8_bundle(bundle, world["source"])  # manifest checked
    result = verify(world["source"], quantized, world["loaded"], GateLimits(), latency_runs=3)
    record(result, world["root"] / f"{name}-report")
    return bundle, result


@pytest.fixture(scope="module")
def cpu_good(world: dict, good_set: Path):
    return _quantize_and_verify(world, good_set, "cpu", "int8_cpu")


@pytest.fixture(scope="module")
def cpu_air(world: dict, air_set: Path):
    return _quantize_and_verify(world, air_set, "cpu", "int8_cpu_air")


def test_cpu_target_good_set_is_accepted(world: dict, cpu_good) -> None:
    bundle, result = cpu_good
    assert int8_tensor_count(bundle / "model.onnx") > 0
    assert result.accepted, [c.failures for c in result.cohorts]
    assert [c.name for c in result.cohorts] == ["development hold-out", "external", "poc"]
    assert all(c.flips == 0 and c.auc_float == c.auc_int8 for c in result.cohorts)
    gate = json.loads((bundle / QUANTIZATION).read_text())["gate"]
    assert gate["status"] == "accepted" and set(gate["cohorts"]) == {"development hold-out", "external", "poc"}
    load_int8_bundle(bundle, world["source"])  # the re-signed manifest still verifies


def test_verify_html_cites_paths_that_survive_renaming_the_run(world: dict, cpu_good, tmp_path: Path) -> None:
    """`sarco study` verifies inside RUN.partial and then renames it to RUN: every path the page
    shows is relative to the page's folder, so it still leads to the bundles and the cohort."""
    from model_build.calibration.report import write_html

    _, result = cpu_good
    partial = tmp_path / "study.partial"
    for bundle in (result.float_bundle, result.int8_bundle):
        shutil.copytree(bundle, partial / "bundles" / bundle.name)
    shutil.copytree(result.cohort_path, tmp_path / "cohort")
    moved = dataclasses.replace(result, float_bundle=partial / "bundles" / result.float_bundle.name,
                                int8_bundle=partial / "bundles" / result.int8_bundle.name,
                                cohort_path=tmp_path / "cohort")
    (partial / "int8").mkdir()
    write_html(moved, partial / "int8" / "verify.html")
    run = partial.rename(tmp_path / "study")
    cited = re.findall(r"<code>([^<]*)</code>", (run / "int8" / "verify.html").read_text(encoding="utf-8"))
    assert cited == [f"../bundles/{result.float_bundle.name}", f"../bundles/{result.int8_bundle.name}", "../../cohort"]
    assert all((run / "int8" / path).is_dir() for path in cited)


def test_cpu_target_probe_in_air_set_is_rejected(world: dict, cpu_air) -> None:
    """Rejected because its flip rate is significantly above 2 %, not merely above it."""
    bundle, result = cpu_air
    assert not result.accepted
    flipped = [c for c in result.cohorts if any("decisions flip" in failure for failure in c.failures)]
    assert flipped and all(c.flips > c.flips_allowed and c.flip_p < 0.05 and c.flip_rate_lower > 0.02
                           for c in flipped)
    gate = json.loads((bundle / QUANTIZATION).read_text())["gate"]
    assert gate["status"] == "rejected" and gate["limits"]["flip_confidence"] == 0.95
    report = json.loads((world["root"] / "int8_cpu_air-report" / "verify.json").read_text())
    assert report["accepted"] is False
    for name, cohort in report["cohorts"].items():
        assert {"auc_float", "auc_int8", "p", "flip_rate", "n", "flips", "flip_p", "flip_rate_lower",
                "flips_allowed"} <= set(cohort)
        assert set(gate["cohorts"][name]) >= {"n", "flips", "flip_rate", "flip_p", "flip_rate_lower", "flips_allowed"}
    assert "REJECTED" in (world["root"] / "int8_cpu_air-report" / "verify.html").read_text()


def test_sensitivity_loop_keeps_the_most_damaging_layers_in_float(world: dict, good_set: Path) -> None:
    """Percentile 60 clips every activation: the calibration frames flip whatever stays INT8, so
    the loop runs all its rounds, each keeping the layer group in float whose bypass helped most,
    and the bundle keeps the round that agreed best."""
    options = QuantizeOptions(target="cpu", method="percentile", percentile=60.0, max_flip_rate=0.0, rounds=2,
                              exclude_per_round=1)
    bundle, rounds = quantize_bundle(world["source"], load_calibration_set(good_set), world["root"] / "int8_loop",
                                     options)
    assert len(rounds) == 3 and rounds[0].excluded == [] and rounds[0].calibration_flip_rate > 0
    for before, after in zip(rounds, rounds[1:]):
        assert len(before.kept_in_float_next) == 1
        kept = before.kept_in_float_next[0]
        assert kept.nodes and not set(kept.nodes) & set(before.excluded)
        assert kept.logit_rms_error <= before.logit_rms_error + 1e-9
        assert after.excluded == before.excluded + kept.nodes
        assert after.int8_tensors < before.int8_tensors
    sensitivity = json.loads((bundle / QUANTIZATION).read_text())["sensitivity"]
    best = min(range(3), key=lambda k: (rounds[k].calibration_flip_rate, len(rounds[k].excluded)))
    assert sensitivity["chosen_round"] == best and sensitivity["converged"] is False
    assert json.loads((bundle / QUANTIZATION).read_text())["excluded_nodes"] == rounds[best].excluded
    assert int8_tensor_count(bundle / "model.onnx") == rounds[best].int8_tensors


@pytest.mark.slow
def test_tensorrt_target_good_set_is_accepted_and_air_set_rejected(world: dict, good_set: Path, air_set: Path) -> None:
    """Model Optimizer's Q/DQ graph (two child processes of a few seconds each)."""
    import onnx

    bundle, result = _quantize_and_verify(world, good_set, "tensorrt", "int8_trt")
    assert result.accepted, [c.failures for c in result.cohorts]
    graph = onnx.load(str(bundle / "model.onnx"))
    quantized_convs = {n.name for n in graph.graph.node if n.op_type == "Conv"
                       and any(i.endswith("DequantizeLinear_Output") for i in n.input)}
    assert {"conv1", "conv2"} <= quantized_convs
    # TensorRT's rule: no Q/DQ on outputs, so the graph output comes straight from the head.
    assert next(n for n in graph.graph.node if "logits" in n.output).op_type == "Gemm"
    meta = json.loads((bundle / QUANTIZATION).read_text())
    assert meta["target"] == "tensorrt" and meta["calibration"]["n"] == 48 and "--stronglyTyped" in meta["engine_build"]
    _, rejected = _quantize_and_verify(world, air_set, "tensorrt", "int8_trt_air")
    assert not rejected.accepted
    load_float_bundle(world["bundle"])  # the float bundle is untouched (its manifest still verifies)


def test_verify_cli_exit_codes_and_report(world: dict, cpu_good, cpu_air) -> None:
    out = world["root"] / "cli-report"
    result = runner.invoke(app, ["verify", str(world["bundle"]), str(cpu_good[0]), str(world["cohort"]),
                                 "--out", str(out), "--latency-runs", "2"])
    assert result.exit_code == 0, result.output
    assert "ACCEPTED" in result.output and "CPU median ms" in result.output
    assert json.loads((out / "verify.json").read_text())["accepted"] is True
    rejected = runner.invoke(app, ["verify", str(world["bundle"]), str(cpu_air[0]), str(world["cohort"]),
                                   "--latency-runs", "2"])
    assert rejected.exit_code == 1 and "REJECTED" in rejected.output
    wrong = runner.invoke(app, ["verify", str(world["bundle"]), str(world["bundle"]), str(world["cohort"])])
    assert wrong.exit_code == 2 and "quantization.json" in wrong.output
    bad_option = runner.invoke(app, ["verify", str(world["bundle"]), str(cpu_air[0]), str(world["cohort"]),
                                     "--flip-confidence", "1.5"])
    assert bad_option.exit_code == 2 and "--flip-confidence 1.5" in bad_option.output


def test_flip_confidence_reaches_the_verdict(world: dict, cpu_air, tmp_path: Path) -> None:
    """At 99.9 % confidence the probe-in-the-air bundle's flips are judged again, on a copy (the
    verdict is written into the bundle): the verdict is what the flip test says at that level."""
    copy = tmp_path / "int8"
    shutil.copytree(cpu_air[0], copy)
    result = runner.invoke(app, ["verify", str(world["bundle"]), str(copy), str(world["cohort"]), "--flip-confidence",
                                 "0.999", "--latency-runs", "2", "--out", str(tmp_path / "report")])
    report = json.loads((tmp_path / "report" / "verify.json").read_text())
    tests = {c.name: FlipTest.run(c.flips, c.n, 0.02, 0.999) for c in cpu_air[1].cohorts}
    auc_failures = [f for c in cpu_air[1].cohorts for f in c.failures if "AUC" in f]
    assert report["limits"]["flip_confidence"] == 0.999
    assert {name: c["flips_allowed"] for name, c in report["cohorts"].items()} == \
        {name: test.allowed for name, test in tests.items()}
    accepted = not auc_failures and not any(test.significant for test in tests.values())
    assert report["accepted"] is accepted and result.exit_code == (0 if accepted else 1)
