"""ONNX export of the aponeurosis network, checked against PyTorch.

Like the classifier's export (model_build.models.export): TorchScript export at opset 17 with a
dynamic batch, ONNX Runtime's basic graph optimisation saved as the graph (it folds the "same"
padding arithmetic into the convolutions), an operator check, and a parity check of ONNX Runtime
against PyTorch on probe images. Segmentation adds one operator to the deployable set: Resize
(the decoder's bilinear upsampling), which ONNX Runtime and TensorRT both run natively.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from model_build.models.export import DEPLOYABLE_OPERATORS, OPSET, ExportError
from sarco_core.bundle import APONEUROSIS_INPUT, APONEUROSIS_OUTPUT
from sarco_core.files import atomic_path

SEGMENTATION_OPERATORS = DEPLOYABLE_OPERATORS | {"Resize"}
PARITY_TOLERANCE = 1e-3  # on logits of order 10: float32 summation order over ~40 layers


def export_segmentation(network: nn.Module, image_size: int, path: Path, probes: np.ndarray | None = None) -> float:
    """Write ``path`` atomically (input ``image`` (batch, 1, S, S), output ``logits`` (batch, 3, S, S));
    returns the largest PyTorch / ONNX Runtime difference on ``probes`` (real model inputs when
    given, else noise, a ramp and black), refused above :data:`PARITY_TOLERANCE`."""
    network = network.eval().cpu()
    example = torch.zeros(1, 1, image_size, image_size)
    raw = path.with_name(f".{path.name}.raw")
    try:
        with atomic_path(path) as temporary:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(network, (example,), str(raw), dynamo=False, opset_version=OPSET,
                                  input_names=[APONEUROSIS_INPUT], output_names=[APONEUROSIS_OUTPUT],
                                  dynamic_axes={APONEUROSIS_INPUT: {0: "batch"}, APONEUROSIS_OUTPUT: {0: "batch"}})
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(temporary)
            onnxruntime.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
            _keep_used_opsets(temporary)
            check_segmentation_graph(temporary)
            gap = parity(network, temporary, probe_inputs(image_size) if probes is None else probes)
            if gap > PARITY_TOLERANCE:
                raise ExportError(f"{path.name}: ONNX Runtime differs from PyTorch by {gap:.2e} "
                                  f"(> {PARITY_TOLERANCE:.0e}); the export is not faithful")
        return gap
    finally:
        raw.unlink(missing_ok=True)


def _keep_used_opsets(path: Path) -> None:
    model = onnx.load(str(path))
    used = {node.domain for node in model.graph.node} | {""}
    kept = [entry for entry in model.opset_import if entry.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))


def check_segmentation_graph(path: Path) -> None:
    """Refuse an operator outside :data:`SEGMENTATION_OPERATORS` or a fixed batch."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    foreign = sorted({f"{n.domain}::{n.op_type}" if n.domain else n.op_type for n in model.graph.node}
                     - SEGMENTATION_OPERATORS)
    if foreign:
        raise ExportError(f"{path.name}: operators {foreign} are not in the deployable set")
    if not model.graph.input[0].type.tensor_type.shape.dim[0].dim_param:
        raise ExportError(f"{path.name}: the batch dimension is fixed")


def probe_inputs(image_size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    ramp = np.broadcast_to(np.linspace(-1, 1, image_size, dtype=np.float32), (image_size, image_size))
    return np.stack([rng.standard_normal((image_size, image_size)).astype(np.float32), ramp,
                     np.full((image_size, image_size), -1.0, np.float32)])[:, np.newaxis]


def parity(network: nn.Module, path: Path, images: np.ndarray) -> float:
    """Largest absolute difference of the logits, PyTorch against ONNX Runtime."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    with torch.no_grad():
        expected = network.eval()(torch.from_numpy(images)).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = session.run([APONEUROSIS_OUTPUT], {APONEUROSIS_INPUT: images})[0]
    return float(np.abs(found - expected).max())
