"""Per-layer error between a float graph and its quantized copy: which layers INT8 hurts.

Both graphs are run on the same inputs, by reference Q/DQ arithmetic (model_build.calibration.onnx_run), with
every node output of the float graph that the quantized graph still computes exposed as an extra
graph output (Q/DQ insertion keeps the original node and tensor names). For each node:

- ``relative_error``: RMS(int8 - float) / RMS(float) of its output; it accumulates along the
  network, so the last layers always look worst;
- ``added_error``: its relative error minus the largest of its inputs', i.e. what this node's own
  quantization (its input activation and its weights) added. Layers are ranked by it, and the
  sensitivity loop of :mod:`model_build.calibration.quantize` used to keep the worst ones in float;
  `sarco-calibrate verify` still reports them.

The loop chooses what to keep in float by :func:`float_groups` instead: the output error left
when a whole block runs in float (its Q/DQ pairs bypassed) while the rest stays INT8. Added
error at a layer's own output misses what matters most on ultrasound: the network reads fine
texture, so the weights of the first block (a 3x3 depthwise and a 32-to-16 projection), modest
by their own output error, move the logits most (docs/calibration.md).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from model_build.calibration.onnx_run import cpu_session, run_batches

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
BLOCK = re.compile(r"^(/(?:[^/]+/)*?[^/]*\.\d+)/")


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


@dataclass(frozen=True)
class FloatGroup:
    """A layer group the sensitivity loop keeps in float, and the output error that leaves."""

    group: str
    nodes: list[str]
    logit_rms_error: float

    def to_dict(self) -> dict:
        return asdict(self)


def float_groups(quantized_path: Path, inputs: np.ndarray, float_logits: np.ndarray, count: int,
                 exclude: frozenset[str] = frozenset()) -> list[FloatGroup]:
    """Greedily, ``count`` times: the layer group whose Q/DQ pairs, bypassed together with the
    groups already chosen, leave the smallest RMS logit error against ``float_logits``.

    A group is a numbered block of the network (``/encoder/_blocks.3/...``: its expand,
    depthwise and project convolutions and its residual add), or a layer outside any block.
    Blocks are the unit because the errors of a block's layers cancel or add up: bypassing one
    of them alone can make the output worse. A bypass needs the float tensor behind the pair,
    i.e. a QuantizeLinear before the DequantizeLinear, as in Model Optimizer's graphs; ONNX
    Runtime stores weights already quantized, so its graphs can only gain from activations.
    """
    model = onnx.load(str(quantized_path))
    producer = {out: node for node in model.graph.node for out in node.output}
    float_of = {node.output[0]: producer[node.input[0]].input[0] for node in model.graph.node
                if node.op_type == "DequantizeLinear" and node.input[0] in producer
                and producer[node.input[0]].op_type == "QuantizeLinear"}
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type not in QDQ_OPS and node.name not in exclude and any(i in float_of for i in node.input):
            groups.setdefault(layer_group(node.name), []).append(node.name)
    chosen: list[FloatGroup] = []
    kept: set[str] = set()
    for _ in range(min(count, len(groups))):
        trials = []
        for group, nodes in groups.items():
            if group in {c.group for c in chosen}:
                continue
            bypassed = _bypassed(model, float_of, kept | set(nodes))
            error = _rms(run_batches(cpu_session(bypassed, quantized_path, optimized=False), inputs)[0] - float_logits)
            trials.append((error, group))
        error, group = min(trials)
        chosen.append(FloatGroup(group, groups[group], error))
        kept |= set(groups[group])
    return chosen


def layer_group(node: str) -> str:
    """``/encoder/_blocks.3/_project_conv/Conv`` -> ``/encoder/_blocks.3``: the first numbered
    module (a ModuleList or Sequential entry) on the node's path, else the node itself."""
    match = BLOCK.match(node)
    return match.group(1) if match else node


def _bypassed(model: onnx.ModelProto, float_of: dict[str, str], nodes: set[str]) -> bytes:
    """``model`` with ``nodes`` reading the float tensors behind their Q/DQ pairs, serialised."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if node.name in nodes:
            for position, name in enumerate(node.input):
                node.input[position] = float_of.get(name, name)
    return copy.SerializeToString()


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values.astype(np.float64)))))


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
