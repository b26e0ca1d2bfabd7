"""Activation ranges with ONNX Runtime's calibrators, and TensorRT's calibration-cache text format.

Model Optimizer offers entropy and max calibration only. For ``--method percentile`` on the
tensorrt target, the ranges come from ONNX Runtime's percentile calibrator and reach Model
Optimizer as a TensorRT-format calibration cache (its ``calibration_cache_path``), which
overwrites the activation scales of the Q/DQ graph; :func:`check_scales` then confirms every
activation scale in the graph is the percentile one, so the method named is the method used.

The cache format (TensorRT 8.x, also read by Model Optimizer): a header line, then one line per
tensor ``name: <scale as big-endian float32 hex>``, scale = |range| / 127.
"""

from __future__ import annotations

import contextlib
import io
import struct
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, create_calibrator

from model_build.calibration import CalibrationError

PERCENTILE_CACHE_HEADER = "TRT-8501-EntropyCalibration2"  # Model Optimizer skips it; TensorRT checks it
INT8_MAX = 127.0


class ArrayReader(CalibrationDataReader):
    """Feeds ``inputs`` to ONNX Runtime's calibrators in equal batches (its histogram collector
    stacks the batches of a stride, so they must all have one shape: the batch size is the
    largest divisor of N up to ``most``); ``set_range`` (in batches) lets ``quantize_static``
    collect in strides so memory stays bounded."""

    def __init__(self, inputs: np.ndarray, input_name: str, most: int = 8) -> None:
        self.inputs, self.input_name = inputs, input_name
        self.batch_size = stride(len(inputs), most)
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return -(-len(self.inputs) // self.batch_size)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        start = self._next * self.batch_size
        self._next += 1
        return {self.input_name: np.ascontiguousarray(self.inputs[start:start + self.batch_size], dtype=np.float32)}


def stride(count: int, most: int = 8) -> int:
    """The largest divisor of ``count`` up to ``most`` (ONNX Runtime wants strides that divide)."""
    return max(d for d in range(1, min(most, count) + 1) if count % d == 0)


def percentile_ranges(model_path: Path, inputs: np.ndarray, input_name: str, percentile: float) -> dict[str, float]:
    """Symmetric range (|max| at ``percentile``) of every float tensor, collected a stride at a time."""
    reader = ArrayReader(inputs, input_name)
    with tempfile.TemporaryDirectory(prefix="sarco-percentile-") as folder:
        calibrator = create_calibrator(model_path, augmented_model_path=str(Path(folder) / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.Percentile,
                                       extra_options={"symmetric": True, "num_bins": 2048, "percentile": percentile})
        step = stride(len(reader))
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints every step
            for start in range(0, len(reader), step):
                reader.set_range(start, start + step)
                calibrator.collect_data(reader)
            ranges = calibrator.compute_data()
    return {name: float(max(abs(float(np.max(data.range_value[0]))), abs(float(np.max(data.range_value[1])))))
            for name, data in ranges.data.items()}


def write_cache_text(ranges: dict[str, float], path: Path, header: str = PERCENTILE_CACHE_HEADER) -> Path:
    lines = [header] + [f"{name}: {struct.pack('>f', max(value, 1e-12) / INT8_MAX).hex()}"
                        for name, value in sorted(ranges.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_cache_text(path: Path) -> dict[str, float]:
    """tensor -> scale; a line that is not ``name: <8 hex digits>`` is refused with its number."""
    scales = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()[1:], start=2):
        name, _, value = line.rpartition(": ")
        try:
            scales[name] = struct.unpack(">f", bytes.fromhex(value))[0]
        except (ValueError, struct.error):
            raise CalibrationError(f"{path}: line {number} is not '<tensor>: <scale as 8 hex digits>'") from None
    return scales


def activation_scales(model_path: Path) -> dict[str, float]:
    """tensor -> scale of every QuantizeLinear on an activation (not on a weight) in a Q/DQ graph."""
    model = onnx.load(str(model_path))
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    return {node.input[0]: float(np.asarray(constants[node.input[1]]).reshape(-1)[0]) for node in model.graph.node
            if node.op_type == "QuantizeLinear" and node.input[0] not in constants and node.input[1] in constants}


def check_scales(model_path: Path, expected: dict[str, float], tolerance: float = 1e-3) -> int:
    """Every activation scale of a tensor the float graph has equals ``expected`` (relative
    ``tolerance``: an fp16 scale is rounded); returns how many were checked. Tensors the
    quantizer added (the fp16 cast of the input) are not in ``expected`` and are skipped."""
    found = {name: scale for name, scale in activation_scales(model_path).items() if name in expected}
    wrong = [name for name, scale in found.items() if abs(scale - expected[name]) > tolerance * expected[name]]
    if wrong or not found:
        raise CalibrationError(f"{model_path.name}: {len(wrong)} of {len(found)} activation scales are not the "
                               f"percentile ones ({', '.join(wrong[:3])}); the percentile method was not applied")
    return len(found)
