"""`sarco-calibrate quantize BUNDLE CALIB --target T --method M --out BUNDLE_INT8`.

Targets:

- ``tensorrt``: explicit quantization, the form TensorRT 10 wants (implicit calibration is
  deprecated since 10.1 and gone in 11): a Q/DQ INT8 ONNX made by NVIDIA Model Optimizer's ONNX
  PTQ, which places Q/DQ pairs by TensorRT's fusion rules (conv/gemm inputs and weights,
  per-channel symmetric weights, no output quantization). Layers left out keep ``--high-precision``
  (fp32 by default; see docs/calibration.md for fp16). Build the engine on the device with
  ``trtexec --onnx=model.onnx --stronglyTyped``.
- ``cpu``: ONNX Runtime static quantization (QDQ, signed 8-bit activations, per-channel 7-bit
  weights) for devices without TensorRT; ONNX Runtime runs it as fused integer kernels.
- ``tensorrt-cache``: a TensorRT 8.x calibration cache (model_build.calibration.trt_cache; needs a GPU).

Sensitivity loop (tensorrt and cpu): after quantizing, the float and INT8 graphs are compared on
the calibration frames (decisions at the frozen threshold, logit error). While more than
``max_flip_rate`` of those frames change decision, the ``exclude_per_round`` layer groups
(blocks) whose float bypass lowers the logit error most (model_build.calibration.sensitivity.float_groups)
are kept in float and the graph is quantized again, for at most ``rounds`` rounds; the round
that agreed best is kept. Only calibration frames are used, never
the cohorts the gate evaluates on, so `sarco-calibrate verify` stays an independent check.

The loop itself (:func:`quantize_graph`) knows nothing of classifiers: it takes a graph, its
calibration inputs and what counts as a flip, so the aponeurosis model's INT8 path
(`sarco measure quantize`, model_build.measure.quantize) runs the same quantizers and loop with
its own flip, an image whose measurement INT8 changes.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np

from model_build.calibration import HIGH_PRECISION, METHODS, TARGETS, CalibrationError
from model_build.calibration.bundles import SourceBundle, write_int8_bundle
from model_build.calibration.onnx_run import INPUT_NAME, logits, int8_tensor_count, runs_fused
from model_build.calibration.ranges import ArrayReader, check_scales, percentile_ranges, read_cache_text, stride, write_cache_text
from model_build.calibration.select import INPUTS, CalibrationSet
from model_build.calibration.sensitivity import FloatGroup, float_groups
from sarco_core.bundle import ONNX
from sarco_core.readout import ProbabilityReadout

LAYER_SAMPLE = 64  # calibration frames used to choose the layer groups kept in float (one run per trial)


@dataclass(frozen=True)
class QuantizeOptions:
    target: str = "tensorrt"
    method: str = "entropy"
    high_precision: str = "fp32"
    percentile: float = 99.999
    max_flip_rate: float = 0.02
    rounds: int = 3
    exclude_per_round: int = 2

    def __post_init__(self) -> None:
        for value, allowed, option in ((self.target, TARGETS, "--target"), (self.method, METHODS, "--method"),
                                       (self.high_precision, HIGH_PRECISION, "--high-precision")):
            if value not in allowed:
                raise CalibrationError(f"{option} {value}: use one of {', '.join(allowed)}")
        if self.target == "tensorrt-cache" and self.method != "entropy":
            raise CalibrationError(f"--method {self.method}: the tensorrt-cache target is TensorRT's "
                                   "IInt8EntropyCalibrator2, i.e. entropy; fix: use --method entropy")
        if not 50.0 < self.percentile <= 100.0:
            raise CalibrationError(f"--percentile {self.percentile}: use a value in (50, 100], e.g. 99.999")
        if not 0.0 <= self.max_flip_rate < 1.0 or self.rounds < 0 or self.exclude_per_round < 1:
            raise CalibrationError("--max-flip-rate must be in [0, 1), --rounds >= 0, --exclude-per-round >= 1")


@dataclass
class Round:
    """One quantization pass of the sensitivity loop."""

    excluded: list[str]
    int8_tensors: int
    calibration_flip_rate: float
    logit_rms_error: float
    kept_in_float_next: list[FloatGroup] = field(default_factory=list)  # chosen for the next round

    def to_dict(self) -> dict:
        return asdict(self)


def quantize_bundle(source: SourceBundle, calibration: CalibrationSet, out: Path, options: QuantizeOptions,
                    on_step: Callable[[str], None] = lambda _: None) -> tuple[Path, list[Round]]:
    """Write the INT8 bundle ``out``; returns it and the sensitivity loop's rounds."""
    calibration.check_fits(source)
    if calibration.metadata.get("frame_state", "ok") != "ok":
        on_step(f"warning: the calibration set holds {calibration.metadata['frame_state']!r} frames, not frames "
                "that pass the quality gate; expect `verify` to reject the result")
    if options.target == "tensorrt-cache":
        from model_build.calibration.trt_cache import quantize_to_cache

        return quantize_to_cache(source, calibration, out, _metadata(source, calibration, options, [], None)), []
    readout, threshold = ProbabilityReadout(source.device.readout), source.device.threshold

    def flips(float_logits: np.ndarray, quantized_logits: np.ndarray) -> np.ndarray:
        """A frame flips when its decision at the frozen threshold changes."""
        return (readout.probability(float_logits) >= threshold) != (readout.probability(quantized_logits) >= threshold)

    with tempfile.TemporaryDirectory(prefix="sarco-quantize-") as work_dir:
        work = Path(work_dir)
        rounds, best = quantize_graph(source.onnx_path, calibration.inputs, options, flips, work, on_step)
        metadata = _metadata(source, calibration, options, rounds, best)
        return write_int8_bundle(source, round_path(work, best), metadata, out), rounds


def quantize_graph(float_path: Path, inputs: np.ndarray, options: QuantizeOptions,
                   disagrees: Callable[[np.ndarray, np.ndarray], np.ndarray], work: Path,
                   on_step: Callable[[str], None] = lambda _: None) -> tuple[list[Round], int]:
    """The sensitivity loop (module docstring) on any graph whose one input is ``image``, for the
    tensorrt and cpu targets: the classifier's bundle and the aponeurosis model
    (model_build.measure.quantize) share it. ``disagrees(float_outputs, int8_outputs)`` says, per
    calibration input, whether INT8 changed what the model decides (a frame's decision, an
    image's measurement); its share is the round's ``calibration_flip_rate``. Returns the rounds
    and the one that agreed best, whose graph is ``round_path(work, best)``."""
    # Model Optimizer writes back to the graph it is given: it only ever sees a copy.
    float_copy = work / "model.float.onnx"
    shutil.copy2(float_path, float_copy)
    inputs_path = work / INPUTS
    np.save(inputs_path, inputs, allow_pickle=False)
    cache = _percentile_cache(float_copy, inputs, work, options, on_step) \
        if options.method == "percentile" and options.target == "tensorrt" else None
    spread = _spread(len(inputs), LAYER_SAMPLE)
    float_logits = logits(float_path, inputs)
    rounds: list[Round] = []
    excluded: list[str] = []
    while True:
        candidate = round_path(work, len(rounds))
        on_step(f"round {len(rounds) + 1}: quantizing ({options.target}, {options.method}"
                + (f", {len(excluded)} layers kept in float" if excluded else "") + ")")
        _quantize_once(float_copy, inputs_path, inputs, candidate, options, excluded, cache, work)
        on_step(f"round {len(rounds) + 1}: comparing float and INT8 on the calibration inputs")
        last = _compare(candidate, inputs, float_logits, disagrees, excluded, runs_fused(options.target))
        rounds.append(last)
        if last.calibration_flip_rate <= options.max_flip_rate or len(rounds) > options.rounds:
            break
        on_step(f"round {len(rounds)}: choosing the layer groups to keep in float")
        last.kept_in_float_next = float_groups(candidate, inputs[spread], float_logits[spread],
                                               options.exclude_per_round, frozenset(excluded))
        if not last.kept_in_float_next:
            break
        excluded = excluded + [node for group in last.kept_in_float_next for node in group.nodes]
    # The round whose graph agrees best on the calibration inputs (fewest flips, then fewer
    # layers in float): keeping more layers in float does not always help.
    best = min(range(len(rounds)), key=lambda k: (rounds[k].calibration_flip_rate, len(rounds[k].excluded)))
    return rounds, best


def round_path(work: Path, number: int) -> Path:
    """The graph :func:`quantize_graph` wrote in round ``number`` (from 0)."""
    return work / f"model.round{number}.onnx"


def _quantize_once(float_path: Path, inputs_path: Path, inputs: np.ndarray, output: Path, options: QuantizeOptions,
                   excluded: list[str], cache: tuple[Path, dict] | None, work: Path) -> None:
    if options.target == "tensorrt":
        _modelopt(float_path, inputs_path, output, options, excluded, None if cache is None else cache[0], work)
        if cache is not None:
            check_scales(output, cache[1])
    else:
        _onnxruntime_static(float_path, inputs, output, options, excluded, work)
    if int8_tensor_count(output) == 0:
        raise CalibrationError(f"{float_path}: the quantizer inserted no DequantizeLinear node, so nothing would "
                               "run in INT8; check that the graph holds Conv / Gemm layers")


def _modelopt(float_path: Path, inputs_path: Path, output: Path, options: QuantizeOptions, excluded: list[str],
              cache: Path | None, work: Path) -> None:
    """Model Optimizer in a child process (see model_build.calibration.modelopt_worker)."""
    request = work / "modelopt-request.json"
    request.write_text(json.dumps({
        "onnx_path": str(float_path), "output_path": str(output), "calibration_data": str(inputs_path),
        "input_name": INPUT_NAME, "method": "entropy" if options.method == "entropy" else "max",
        "calibration_cache": None if cache is None else str(cache), "high_precision": options.high_precision,
        "nodes_to_exclude": [f"^{re.escape(name)}$" for name in excluded],  # Model Optimizer takes regexes
    }), encoding="utf-8")
    log = work / "modelopt.log"
    with log.open("w", encoding="utf-8") as handle:
        code = subprocess.run([sys.executable, "-m", "model_build.calibration.modelopt_worker", str(request)], stdout=handle,
                              stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2]).returncode
    if code != 0 or not output.is_file():
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-8:])
        hint = "install it with `pip install 'nvidia-modelopt[onnx]'`" if "No module named 'modelopt'" in tail \
            else "see the lines above"
        raise CalibrationError(f"Model Optimizer failed on {float_path} (exit {code}); fix: {hint}\n{tail}")


def _onnxruntime_static(float_path: Path, inputs: np.ndarray, output: Path, options: QuantizeOptions,
                        excluded: list[str], work: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    prepared = work / "model.prepared.onnx"
    if not prepared.is_file():
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    reader = ArrayReader(inputs, INPUT_NAME)
    method = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
              "percentile": CalibrationMethod.Percentile}[options.method]
    # reduce_range: 7-bit weights. x86 CPUs without VNNI multiply int8 pairs into saturating int16
    # sums (VPMADDUBSW); with full-range weights the fused kernels gave wrong outputs here.
    with contextlib.redirect_stdout(io.StringIO()):  # its calibrators print every step
        quantize_static(str(prepared), str(output), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method, nodes_to_exclude=excluded,
                        extra_options={"CalibStridedMinMax": stride(len(reader)),
                                       "CalibPercentile": options.percentile, "ActivationSymmetric": True})


def _percentile_cache(float_path: Path, inputs: np.ndarray, work: Path, options: QuantizeOptions,
                      on_step: Callable[[str], None]) -> tuple[Path, dict]:
    on_step(f"percentile {options.percentile} ranges with ONNX Runtime's calibrator (Model Optimizer has none)")
    ranges = percentile_ranges(float_path, inputs, INPUT_NAME, options.percentile)
    path = write_cache_text(ranges, work / "percentile.cache")
    return path, read_cache_text(path)


def _compare(candidate: Path, inputs: np.ndarray, float_logits: np.ndarray,
             disagrees: Callable[[np.ndarray, np.ndarray], np.ndarray], excluded: list[str], fused: bool) -> Round:
    quantized_logits = logits(candidate, inputs, optimized=fused)
    return Round(excluded=list(excluded), int8_tensors=int8_tensor_count(candidate),
                 calibration_flip_rate=float(np.mean(disagrees(float_logits, quantized_logits))),
                 logit_rms_error=float(np.sqrt(np.mean((quantized_logits - float_logits) ** 2))))


def _spread(total: int, wanted: int) -> np.ndarray:
    return np.unique(np.linspace(0, total - 1, min(total, wanted)).round().astype(int))


def _metadata(source: SourceBundle, calibration: CalibrationSet, options: QuantizeOptions, rounds: list[Round],
              chosen: int | None) -> dict:
    meta = calibration.metadata
    return {
        **quantization_record(options, rounds, chosen, ONNX),
        "source": {"path": str(source.path), "model_sha256": source.device.model_sha256},
        "calibration": {"path": str(calibration.path), "inputs_sha256": meta["inputs_sha256"], "n": meta["n"],
                        "cohort": meta["cohort"]["name"], "frame_state": meta.get("frame_state", "ok"),
                        "seed": meta.get("seed")},
    }


def quantization_record(options: QuantizeOptions, rounds: list[Round], chosen: int | None, graph: str) -> dict:
    """What any INT8 record says of how its graph was made (target, method, layers kept in float,
    every round of the sensitivity loop, how to build the engine from ``graph``, tool versions);
    the caller adds where the float model and the calibration inputs came from."""
    return {
        "target": options.target, "method": options.method, "high_precision": options.high_precision,
        "percentile": options.percentile if options.method == "percentile" else None,
        "method_implementation": _implementation(options),
        "excluded_nodes": rounds[chosen].excluded if chosen is not None else [],
        "sensitivity": {"max_flip_rate": options.max_flip_rate, "rounds_allowed": options.rounds,
                        "exclude_per_round": options.exclude_per_round,
                        "rounds": [r.to_dict() for r in rounds], "chosen_round": chosen,
                        "converged": chosen is not None
                        and rounds[chosen].calibration_flip_rate <= options.max_flip_rate},
        "engine_build": _engine_hint(options, graph),
        "tools": _versions(),
    }


def _implementation(options: QuantizeOptions) -> str:
    if options.target == "tensorrt-cache":
        return "TensorRT IInt8EntropyCalibrator2 (model_build.calibration.trt_cache)"
    if options.target == "cpu":
        return f"onnxruntime.quantization.quantize_static, CalibrationMethod.{options.method.capitalize()}"
    if options.method == "percentile":
        return (f"ONNX Runtime percentile calibrator ({options.percentile}) ranges, imported into Model "
                "Optimizer's Q/DQ graph as a calibration cache")
    name = "entropy" if options.method == "entropy" else "max"
    return f"modelopt.onnx.quantization.quantize, calibration_method={name}"


def _engine_hint(options: QuantizeOptions, graph: str) -> str | None:
    engine = graph.removesuffix(".onnx") + ".engine"
    if options.target == "tensorrt":
        return f"trtexec --onnx={graph} --saveEngine={engine} --stronglyTyped (TensorRT 10)"
    if options.target == "tensorrt-cache":
        return (f"trtexec --onnx={graph} --int8 --fp16 --calib=calibration.cache --saveEngine={engine} "
                "(TensorRT 8.x)")
    return None


def _versions() -> dict:
    versions = {}
    for name in ("nvidia-modelopt", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy"):
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return versions
