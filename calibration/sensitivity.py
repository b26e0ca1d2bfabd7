"""Per-layer error between a float graph and its quantized copy: which layers INT8 hurts.

Both graphs are run on the same inputs, by reference Q/DQ arithmetic (calibration.onnx_run), with
every node output of the float graph that the quantized graph still computes exposed as an extra
graph output (Q/DQ insertion keeps the original node and tensor names). For each node:

- ``relative_error``: RMS(int8 - float) / RMS(float) of its output; it accumulates along the
  network, so the last layers always look worst;
- ``added_error``: its relative error minus the largest of its inputs', i.e. what this node's own
  quantization (its input activation and its weights) added. Layers are ranked by it, and the
  sensitivity loop of :mod:`calibration.quantize` keeps the worst ones in float.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from calibration.onnx_run import cpu_session, run_batches

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclass(frozen=True)
class LayerError:
    node: str
    op_type: str
    tensor: str
    relative_error: float
    added_error: float
    quantized: bool  # a DequantizeLinear feeds it in the INT8 graph

    def to_dict(self) -> dict:
        return asdict(self)


def layer_errors(float_path: Path, quantized_path: Path, inputs: np.ndarray, batch_size: int = 16) -> list[LayerError]:
    """Errors of every node the two graphs share (by node name), in graph order."""
    float_model = onnx.load(str(float_path))
    quantized_model = onnx.load(str(quantized_path))
    counterpart = {node.name: node for node in quantized_model.graph.node if node.op_type not in QDQ_OPS and node.name}
    dequantized = {node.output[0] for node in quantized_model.graph.node if node.op_type == "DequantizeLinear"}
    # A quantizer may rename a node's output (ONNX Runtime adds "_QuantizeLinear_Input" when it
    # quantizes it): pair the tensors through the node, which keeps its name.
    watched = [(node, counterpart[node.name].output[0]) for node in float_model.graph.node
               if node.output and counterpart.get(node.name) is not None
               and counterpart[node.name].op_type == node.op_type]
    float_names = [node.output[0] for node, _ in watched]
    quantized_names = [name for _, name in watched]
    squared_error = np.zeros(len(watched))
    squared_value = np.zeros(len(watched))
    float_session = cpu_session(_with_outputs(float_model, float_names), float_path, optimized=False)
    quantized_session = cpu_session(_with_outputs(quantized_model, quantized_names), quantized_path, optimized=False)
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start:start + batch_size]
        reference = run_batches(float_session, batch, batch_size, float_names)
        approximate = run_batches(quantized_session, batch, batch_size, quantized_names)
        for k, (a, b) in enumerate(zip(reference, approximate)):
            a, b = a.astype(np.float64), b.astype(np.float64)
            squared_error[k] += float(np.sum((b - a) ** 2))
            squared_value[k] += float(np.sum(a ** 2))
    relative = dict(zip(float_names, np.sqrt(squared_error / np.maximum(squared_value, 1e-30))))
    errors = []
    for node, _ in watched:
        tensor = node.output[0]
        upstream = max((relative[i] for i in node.input if i in relative), default=0.0)
        errors.append(LayerError(node.name, node.op_type, tensor, float(relative[tensor]),
                                 float(relative[tensor] - upstream),
                                 bool(dequantized.intersection(counterpart[node.name].input))))
    return errors


def worst_layers(errors: list[LayerError], count: int, quantized_only: bool = False,
                 exclude: frozenset[str] = frozenset()) -> list[LayerError]:
    """The ``count`` nodes that added most error (ties broken by name), leaving out ``exclude``;
    ``quantized_only``: among the nodes that still have INT8 inputs (keeping them in float helps)."""
    ranked = sorted((e for e in errors if (e.quantized or not quantized_only) and e.node not in exclude),
                    key=lambda e: (-e.added_error, e.node))
    return ranked[:count]


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> bytes:
    """``model`` with ``names`` as extra outputs, typed by shape inference, serialised."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {info.name: info.type.tensor_type.elem_type for info in inferred.graph.value_info}
    types.update({o.name: o.type.tensor_type.elem_type for o in inferred.graph.output})
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    augmented.graph.output.extend(helper.make_tensor_value_info(name, types.get(name) or TensorProto.FLOAT, None)
                                  for name in names if name not in existing)
    return augmented.SerializeToString()
