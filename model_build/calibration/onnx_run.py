"""Running float and quantized graphs with ONNX Runtime on the CPU.

Two ways to run a Q/DQ graph:

- *reference* (``optimized=False``, basic graph optimisations only): every QuantizeLinear /
  DequantizeLinear runs as written and the layers between them in float, which is the
  arithmetic explicit quantization defines; it stands in for TensorRT, whose kernels are not
  this CPU's;
- *optimized* (all optimisations, as edge_app's ONNX Runtime backend runs a model): Q/DQ pairs
  are fused into integer kernels (QLinearConv, QGemm...), i.e. what a CPU device computes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from model_build.calibration import CalibrationError

INPUT_NAME = "image"


def cpu_session(model: Path | bytes, where: Path | None = None, threads: int = 0,
                optimized: bool = True) -> ort.InferenceSession:
    """A CPU session on a graph file or serialised graph (``where`` names it in errors)."""
    where = where or model
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized else \
        ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.intra_op_num_threads = threads  # 0: ONNX Runtime decides
    options.log_severity_level = 3
    try:
        source = model if isinstance(model, bytes) else str(model)
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own, unrelated exception types
        raise CalibrationError(f"{where}: ONNX Runtime cannot load it ({str(error)[:300]})") from None


def run_batches(session: ort.InferenceSession, inputs: np.ndarray, batch_size: int = 64,
                outputs: list[str] | None = None) -> list[np.ndarray]:
    """Each requested output (default: all) over ``inputs`` in batches, concatenated."""
    name = session.get_inputs()[0].name
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(inputs), batch_size):
        batch = np.ascontiguousarray(inputs[start:start + batch_size], dtype=np.float32)
        parts.append(session.run(outputs, {name: batch}))
    return [np.concatenate([part[i] for part in parts]) for i in range(len(parts[0]))]


def logits(path: Path, inputs: np.ndarray, optimized: bool = True) -> np.ndarray:
    """The first output (class logits) of the graph at ``path`` for every input, float64."""
    return run_batches(cpu_session(path, optimized=optimized), inputs)[0].astype(np.float64)


def runs_fused(target: str) -> bool:
    """How to run an INT8 graph of ``target`` to see what its device computes: the cpu target's
    graph as ONNX Runtime deploys it (fused integer kernels), a TensorRT graph by reference."""
    return target == "cpu"


def int8_tensor_count(path: Path) -> int:
    """DequantizeLinear nodes: one per INT8 tensor, weight or activation (ONNX Runtime stores
    weights already quantized, Model Optimizer behind a QuantizeLinear: both dequantize)."""
    return sum(node.op_type == "DequantizeLinear" for node in onnx.load(str(path), load_external_data=False).graph.node)


def input_shape(path: Path) -> tuple:
    """(C, H, W) of the graph's image input (the batch dimension is dynamic)."""
    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.dim_value else d.dim_param for d in dims[1:])
