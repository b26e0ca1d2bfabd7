"""``sarco measure quantize MODEL DATA --out MODEL_INT8``: the aponeurosis model in INT8, judged by
what it measures.

The classifier's INT8 path does the quantizing (model_build.calibration.quantize.quantize_graph:
Model Optimizer's Q/DQ graph for the ``tensorrt`` target, ONNX Runtime's QDQ static quantization
for ``cpu``, and the sensitivity loop that keeps the layer groups INT8 hurts most, the Resize
and final layers included, in float). Here it gets:

- calibration inputs: images of DATA prepared as the device prepares them, balanced over the
  layouts, with a quarter held out (model_build.measure.calibration);
- its flip: a calibration image whose measurement INT8 changes (model_build.measure.int8_gate);
- the gate: float and INT8 compared on the held-out images through the same recipe and geometry,
  the INT8 graph run as its target computes it (fused integer kernels for ``cpu``; Q/DQ as
  written, standing for TensorRT, for ``tensorrt``).

The result is a measurement bundle: the float one copied with ``aponeurosis.onnx`` quantized,
``quantization.json`` (how it was made, the gate's figures and per-image rows, the verdict, ONNX
Runtime's CPU time per frame of both graphs) and a README section, sealed by the manifest. It is
written whatever the verdict; :func:`sarco_core.bundle.load_measurement_bundle` refuses it unless
the gate accepted it.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_build.calibration import GRAPH_TARGETS
from model_build.calibration.bundles import write_int8_folder
from model_build.calibration.footprint import compare
from model_build.calibration.onnx_run import cpu_session, run_batches, runs_fused
from model_build.calibration.quantize import QuantizeOptions, Round, quantization_record, quantize_graph, round_path
from model_build.calibration.sensitivity import layer_group
from model_build.measure.calibration import ImageSplit, PreparedImage, split_images
from model_build.measure.data import MeasureDataError, check_out
from model_build.measure.int8_gate import (MAX_DISAGREEING, ImageAgreement, compare_image, gate_failures,
                                           gate_figures, gate_limits)
from sarco_core.bundle import (APONEUROSIS_ONNX, APONEUROSIS_README, GATE_ACCEPTED, GATE_REJECTED, QUANTIZATION,
                               MeasurementBundle, load_measurement_bundle)

LATENCY_RUNS = 30  # timed one-frame runs per graph (ONNX Runtime, CPU, one thread)


@dataclass(frozen=True)
class MeasureQuantization:
    """What `sarco measure quantize` made: the bundle, the loop's rounds and the gate's record."""

    out: Path
    rounds: list[Round]
    gate: dict
    footprint: list[dict]
    split: ImageSplit

    @property
    def accepted(self) -> bool:
        return self.gate["status"] == GATE_ACCEPTED


def quantize_measurement_model(model: Path, data: Path, out: Path, target: str = "tensorrt", n: int = 128,
                               seed: int = 0, rounds: int = 3,
                               on_step: Callable[[str], None] = lambda _: None) -> MeasureQuantization:
    """Quantize, judge and write (module docstring); ``rounds``: the sensitivity loop's most
    re-quantizations (0: quantize once)."""
    if target not in GRAPH_TARGETS:
        raise MeasureDataError(f"--target {target}: use one of {', '.join(GRAPH_TARGETS)}")
    bundle = load_measurement_bundle(model)
    if (bundle.path / QUANTIZATION).is_file():
        raise MeasureDataError(f"{bundle.path}: already INT8 ({QUANTIZATION}); quantizing twice compounds the "
                               "error; fix: give the float model (e.g. models/aponeurosis)")
    check_out(out)
    on_step(f"reading and preparing the images of {data}")
    split = split_images(data, bundle.recipe, n, seed)
    if not split.calibration or not split.held_out:
        raise MeasureDataError(f"{data}: {len(split.calibration)} calibration and {len(split.held_out)} held-out "
                               "images with a scan region; fix: give a folder with at least 4 such images of one "
                               "size (a quarter of each size is held out for the gate)")
    options = QuantizeOptions(target=target, max_flip_rate=MAX_DISAGREEING, rounds=rounds)

    def disagrees(float_logits: np.ndarray, int8_logits: np.ndarray) -> np.ndarray:
        return np.array([not _compare(image, f, q, bundle).agrees()
                         for image, f, q in zip(split.calibration, float_logits, int8_logits)])

    with tempfile.TemporaryDirectory(prefix="sarco-measure-quantize-") as work_dir:
        work = Path(work_dir)
        inputs = split.inputs
        history, best = quantize_graph(bundle.onnx_path, inputs, options, disagrees, work, on_step)
        graph = round_path(work, best)
        on_step(f"gate: float and INT8 on {len(split.held_out)} held-out images")
        gate = _judge(bundle, graph, split.held_out, target)
        on_step("timing both graphs on the CPU (ONNX Runtime, 1 thread)")
        footprint = [f.to_dict() for f in compare(bundle.onnx_path, graph, LATENCY_RUNS, threads=1)]
        metadata = {**quantization_record(options, history, best, APONEUROSIS_ONNX),
                    "source": {"path": str(bundle.path), "model_sha256": bundle.model_sha256},
                    "calibration": _calibration_record(data, n, seed, split, inputs),
                    "cpu_latency": footprint}
        write_int8_folder(bundle.path, out, metadata, {APONEUROSIS_ONNX: graph},
                          (APONEUROSIS_README, _readme_section(metadata, gate)), gate)
    return MeasureQuantization(out, history, gate, footprint, split)


def _compare(image: PreparedImage, float_logits: np.ndarray, int8_logits: np.ndarray,
             bundle: MeasurementBundle) -> ImageAgreement:
    return compare_image(image.prepared, float_logits, int8_logits, bundle.recipe, image.path.name, image.layout)


def _judge(bundle: MeasurementBundle, graph: Path, held_out: list[PreparedImage], target: str) -> dict:
    """The gate's record: status, limits, figures, failures and one row per held-out image."""
    inputs = np.concatenate([image.prepared.tensor for image in held_out]).astype(np.float32)
    float_logits = run_batches(cpu_session(bundle.onnx_path), inputs, batch_size=16)[0]
    int8_logits = run_batches(cpu_session(graph, optimized=runs_fused(target)), inputs, batch_size=16)[0]
    rows = [_compare(image, f, q, bundle) for image, f, q in zip(held_out, float_logits, int8_logits)]
    figures = gate_figures(rows)
    failures = gate_failures(figures)
    return {"status": GATE_REJECTED if failures else GATE_ACCEPTED, "limits": gate_limits(), "figures": figures,
            "failures": failures, "int8_run_as": "fused integer kernels (ONNX Runtime, all optimizations)"
            if runs_fused(target) else "Q/DQ as written (ONNX Runtime, basic optimizations), standing for TensorRT",
            "per_image": [row.to_dict() for row in rows]}


def _calibration_record(data: Path, n: int, seed: int, split: ImageSplit, inputs: np.ndarray) -> dict:
    return {"data": str(data), "n_requested": n, "n": len(split.calibration), "held_out": len(split.held_out),
            "seed": seed, "inputs_sha256": hashlib.sha256(np.ascontiguousarray(inputs).tobytes()).hexdigest(),
            "layouts": split.layouts, "skipped": split.skipped,
            "images": [str(image.path) for image in split.calibration]}


def _readme_section(metadata: dict, gate: dict) -> str:
    figures, calibration = gate["figures"], metadata["calibration"]
    excluded = metadata["excluded_nodes"]
    groups = sorted({layer_group(node) for node in excluded})
    latency = {f["name"]: f["latency_ms_median"] for f in metadata["cpu_latency"]}

    def shown(value: float | None, digits: int = 2) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    return "\n".join([
        "## INT8 model",
        f"- `{APONEUROSIS_ONNX}` here is INT8 (target `{metadata['target']}`, {metadata['method_implementation']}), "
        f"made by `sarco measure quantize` from the float model with SHA-256 "
        f"`{metadata['source']['model_sha256'][:16]}...`",
        f"- Calibration: {calibration['n']} images of `{calibration['data']}` (seed {calibration['seed']}, "
        f"balanced over {len(calibration['layouts'])} layouts); layers kept in float: "
        + (f"{len(excluded)}, in {', '.join(f'`{g}`' for g in groups)}" if excluded else "none"),
        f"- Accuracy gate on {figures['images']} held-out images: **{gate['status']}**; |thickness difference| "
        f"median {shown(figures['thickness_abs_diff_pct_median'])} %, p95 "
        f"{shown(figures['thickness_abs_diff_pct_p95'])} %; share measured "
        f"{shown(figures['measured_share_int8'], 3)} (float {shown(figures['measured_share_float'], 3)}); mean Dice "
        f"{shown(figures['dice_mean'], 3)}" + (f"; failed: {'; '.join(gate['failures'])}" if gate["failures"] else ""),
        f"- ONNX Runtime CPU, one thread, one frame, on the machine that made it: float {latency['float']:.1f} ms, "
        f"INT8 {latency['int8']:.1f} ms (a Q/DQ graph need not be faster there; INT8 pays off in TensorRT)",
        "- Details in `quantization.json`; the loader refuses this model unless the gate status is `accepted`.", ""])
