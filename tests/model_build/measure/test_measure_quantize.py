"""`sarco measure quantize`: the shipped aponeurosis model in INT8 on committed real scans (TimTrack
datasets 2 and 3: two scanners, two layouts), its calibration images drawn and held out as
documented, the gate's figures recomputed here from the two bundles, the INT8 bundle loaded and
measuring, a gate that fails (an impossible Dice limit) refused with exit 1 and the figure named,
and mistakes answered with one `error:` line. Both targets run in seconds on these images: the
cpu target (ONNX Runtime) and the tensorrt target (Model Optimizer, about 15 s)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from model_build.cli import app
from model_build.measure import int8_gate
from model_build.measure.calibration import HOLDOUT_BLOCKS, image_paths, split_images
from model_build.measure.infer import AponeurosisModel
from model_build.measure.run import read_image
from sarco_core.bundle import (APONEUROSIS_ONNX, MANIFEST, QUANTIZATION, SHIPPED_APONEUROSIS_MODEL, BundleError,
                               load_measurement_bundle, write_manifest)
from sarco_core.measure import DEEP, SUPERFICIAL
from tests.support.calibration import tiny_network
from tests.support.measure_models import REAL_PAIRS, real_pairs_folder
from tests.support.real_data import REAL_DATA

runner = CliRunner()
TIMTRACK = REAL_DATA / "muscle-us-timtrack"


def quantize(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["measure", "quantize", *args])
    return result.exit_code, result.output


def error_lines(output: str) -> list[str]:
    assert "Traceback" not in output
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two scanners' real images: GE Logiq 800x600 (dataset 2), Telemed 1665x921 (dataset 3)."""
    folder = tmp_path_factory.mktemp("data") / "timtrack-2-3"
    for dataset in ("dataset2", "dataset3"):
        shutil.copytree(TIMTRACK / dataset, folder / dataset)
    return folder


@pytest.fixture(scope="module")
def int8_cpu(data, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("int8") / "cpu"
    code, output = quantize(str(SHIPPED_APONEUROSIS_MODEL), str(data), "--out", str(out), "--target", "cpu",
                            "--n", "8", "--rounds", "0")
    assert code == 0, output
    return out, output


def test_calibration_images_are_balanced_over_layouts_and_a_block_per_layout_is_held_out():
    recipe = load_measurement_bundle(SHIPPED_APONEUROSIS_MODEL).recipe
    split = split_images(TIMTRACK, recipe, 12, seed=3)
    again = split_images(TIMTRACK, recipe, 12, seed=3)
    assert [i.path for i in split.calibration] == [i.path for i in again.calibration]
    assert [i.path for i in split.held_out] == [i.path for i in again.held_out]
    assert len(split.calibration) == 12 and not {i.path for i in split.calibration} & {i.path for i in split.held_out}
    counts = {row["layout"]: row for row in split.layouts}
    assert sum(row["images"] for row in split.layouts) == len(image_paths(TIMTRACK)) and not split.skipped
    # balanced: no layout gets more than one image over another that still had some to give
    given = [row["calibration"] for row in split.layouts if row["images"] - row["held_out"] > row["calibration"]]
    assert max(row["calibration"] for row in split.layouts) - min(given, default=99) <= 1
    layout_of = {p: "{1}x{0}".format(*read_image(p).shape[:2]) for p in image_paths(TIMTRACK)}
    for layout, row in counts.items():
        paths = sorted(p for p, named in layout_of.items() if named == layout)
        held = [paths.index(i.path) for i in split.held_out if i.layout == layout]
        if held:  # one run of consecutive images, at most a quarter of the layout's
            assert held == list(range(held[0], held[0] + len(held)))
        assert len(held) <= -(-row["images"] // HOLDOUT_BLOCKS)
    assert split.inputs.shape == (12, 1, recipe.size, recipe.size) and split.inputs.dtype == np.float32


def test_an_index_folder_gives_its_images_not_its_masks(tmp_path):
    folder = real_pairs_folder(tmp_path / "pairs")
    assert [p.name for p in image_paths(folder)] == sorted(REAL_PAIRS)
    assert all(p.parent.name == "images" for p in image_paths(folder))


def test_cpu_target_writes_a_sealed_int8_bundle_whose_gate_figures_recompute(int8_cpu, data):
    out, output = int8_cpu
    assert "ACCEPTED" in output and "median |thickness difference| %" in output and "ms median" in output
    record = json.loads((out / QUANTIZATION).read_text())
    gate = record["gate"]
    assert gate["status"] == "accepted" and gate["failures"] == []
    assert gate["limits"] == {"max_median_thickness_pct": 1.0, "max_p95_thickness_pct": 3.0,
                              "max_measured_share_drop": 0.01, "min_dice": 0.95}
    calibration = record["calibration"]
    assert calibration["n"] == 8 and calibration["held_out"] == gate["figures"]["images"] == len(gate["per_image"]) > 0
    assert {row["layout"] for row in calibration["layouts"]} == {"800x600", "1665x921"}
    assert not {Path(p).name for p in calibration["images"]} & {row["image"] for row in gate["per_image"]}
    assert record["source"]["model_sha256"] == load_measurement_bundle(SHIPPED_APONEUROSIS_MODEL).model_sha256
    assert {f["name"] for f in record["cpu_latency"]} == {"float", "int8"} and record["target"] == "cpu"
    assert QUANTIZATION in (out / MANIFEST).read_text() and "## INT8 model" in (out / "README.md").read_text()
    assert any(node.op_type == "DequantizeLinear" for node in onnx.load(str(out / APONEUROSIS_ONNX)).graph.node)

    # Independently: both bundles through `AponeurosisModel`, the median |thickness difference|
    # and one image's Dice computed here.
    float_model, int8_model = AponeurosisModel(threads=1), AponeurosisModel(out, threads=1)
    differences = []
    for row in gate["per_image"]:
        pixels = read_image(next(data.rglob(row["image"])))
        reference, quantized = float_model.measure(pixels), int8_model.measure(pixels)
        a, b = reference.measurement.muscle_thickness_px, quantized.measurement.muscle_thickness_px
        assert (a, b) == pytest.approx((row["thickness_float_px"], row["thickness_int8_px"]))
        differences.append(100 * abs(b - a) / a)
        scores = [2 * np.sum((reference.labels == k) & (quantized.labels == k))
                  / (np.sum(reference.labels == k) + np.sum(quantized.labels == k)) for k in (SUPERFICIAL, DEEP)]
        assert np.mean(scores) == pytest.approx(row["dice"], abs=1e-6)
    assert np.median(differences) == pytest.approx(gate["figures"]["thickness_abs_diff_pct_median"], abs=1e-9)


def test_the_int8_bundle_loads_and_measures(int8_cpu, tmp_path):
    out, _ = int8_cpu
    bundle = load_measurement_bundle(out)
    assert bundle.model_name != load_measurement_bundle(SHIPPED_APONEUROSIS_MODEL).model_name
    csv_path = tmp_path / "m.csv"
    result = runner.invoke(app, ["measure", "run", str(out), str(TIMTRACK / "dataset3"), "--out", str(csv_path),
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["muscle_thickness_px"] != "" and row["model"] == bundle.model_name for row in rows)


def test_a_failing_gate_exits_1_naming_the_figure_and_the_bundle_is_refused(data, tmp_path, monkeypatch):
    """A Dice limit no model can meet: the gate must reject, whatever the graph."""
    monkeypatch.setattr(int8_gate, "MIN_DICE", 1.01)
    out = tmp_path / "int8"
    code, output = quantize(str(SHIPPED_APONEUROSIS_MODEL), str(data / "dataset3"), "--out", str(out), "--target",
                            "cpu", "--n", "4", "--rounds", "0")
    assert code == 1
    (line,) = error_lines(output)
    assert "fails its accuracy gate" in line and "mean Dice of the label maps" in line and "< 1.01" in line
    assert json.loads((out / QUANTIZATION).read_text())["gate"]["status"] == "rejected"
    with pytest.raises(BundleError, match="accuracy gate status 'rejected'.*sarco measure quantize"):
        load_measurement_bundle(out)


def test_help_and_mistakes_give_one_error_line(int8_cpu, data, tmp_path):
    code, output = quantize("--help")
    assert code == 0 and all(option in output for option in ("--out", "--target", "--n", "--seed", "DATA"))

    code, output = quantize(str(SHIPPED_APONEUROSIS_MODEL), str(tmp_path / "nowhere"), "--out", str(tmp_path / "a"))
    (line,) = error_lines(output)
    assert code == 1 and "nowhere: not a folder" in line

    classifier = tmp_path / "classifier"
    classifier.mkdir()
    tiny_network(classifier / "model.onnx")
    (classifier / "config.json").write_text("{}")
    write_manifest(classifier)
    code, output = quantize(str(classifier), str(data), "--out", str(tmp_path / "b"))
    (line,) = error_lines(output)
    assert code == 1 and "not a measurement model" in line

    code, output = quantize(str(int8_cpu[0]), str(data), "--out", str(tmp_path / "c"))
    (line,) = error_lines(output)
    assert code == 1 and "already INT8" in line

    code, output = quantize(str(SHIPPED_APONEUROSIS_MODEL), str(data), "--out", str(int8_cpu[0]))
    (line,) = error_lines(output)
    assert code == 1 and "not an empty folder" in line


def test_tensorrt_target_is_model_optimizers_qdq_graph_and_passes_its_gate(data, tmp_path):
    out = tmp_path / "int8-trt"
    code, output = quantize(str(SHIPPED_APONEUROSIS_MODEL), str(data), "--out", str(out), "--n", "8",
                            "--rounds", "0")
    assert code == 0, output
    record = json.loads((out / QUANTIZATION).read_text())
    assert record["target"] == "tensorrt" and record["gate"]["status"] == "accepted"
    assert "trtexec --onnx=aponeurosis.onnx" in record["engine_build"] and "--stronglyTyped" in record["engine_build"]
    assert "Q/DQ as written" in record["gate"]["int8_run_as"]
    graph = onnx.load(str(out / APONEUROSIS_ONNX)).graph
    assert sum(node.op_type == "QuantizeLinear" for node in graph.node) > 0
    # TensorRT's rule: no Q/DQ on outputs; the logits come straight from a float layer.
    assert next(n for n in graph.node if "logits" in n.output).op_type not in ("DequantizeLinear", "QuantizeLinear")
    load_measurement_bundle(out)
