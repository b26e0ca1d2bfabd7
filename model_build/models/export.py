"""ONNX export of the deployable image model, with the checks the device relies on.

The device runs ``model.onnx`` through ONNX Runtime or a TensorRT engine built from it, so the
graph must hold only operators both handle well, take any batch size (one frame or a burst),
and compute what PyTorch computes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from model_build.models.fusion import ImageScorer
from sarco_core.errors import SarcoError
from sarco_core.files import atomic_path

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
PARITY_TOLERANCE = 1e-4

DEPLOYABLE_OPERATORS = frozenset({
    "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Constant", "Conv", "Div", "Flatten",
    "Gather", "Gemm", "GlobalAveragePool", "Identity", "MatMul", "MaxPool", "Mul", "Pad", "Relu",
    "Reshape", "Shape", "Sigmoid", "Squeeze", "Sub", "Unsqueeze",
})
"""Plain CNN operators that ONNX Runtime and TensorRT (8.x-10.x) both run natively; anything
else (loops, If, ScatterND, custom domains) is refused rather than discovered on the device."""


class ExportError(SarcoError, RuntimeError):
    """The exported graph is not deployable; the message names the offending operators."""


def export_onnx(scorer: ImageScorer, image_size: int, path: Path) -> float:
    """Write ``path`` atomically: input ``image`` (batch, 1, S, S), output ``logits`` (batch, 2).
    Returns the largest PyTorch / ONNX Runtime difference on a probe batch (checked <= 1e-4)."""
    return export_network(scorer, image_size, path, export_batch=2)


def export_network(network: nn.Module, image_size: int, path: Path, *,
                   operators: frozenset[str] = DEPLOYABLE_OPERATORS,
                   tolerance: float = PARITY_TOLERANCE, probes: np.ndarray | None = None,
                   export_batch: int = 1) -> float:
    """Export any of the project's image networks (the classifier, the aponeurosis model):
    ``path`` written atomically, input ``image`` (batch, 1, S, S), output ``logits``, the
    batch dynamic, only ``operators``; returns the largest PyTorch / ONNX Runtime difference
    on ``probes`` (default :func:`probe_images`), refused above ``tolerance``.

    The exporter leaves each "same" padding as a small shape-arithmetic subgraph feeding a Pad;
    ONNX Runtime's basic (provider-independent) graph optimisation folds those constants and
    merges each Pad into its Conv, which leaves a graph of plain Conv / Clip / Add / pooling.
    """
    network = network.eval().cpu()
    example = torch.zeros(export_batch, 1, image_size, image_size)
    raw = path.with_name(f".{path.name}.raw")
    try:
        with atomic_path(path) as temporary:
            with warnings.catch_warnings(), torch.no_grad():
                # The TorchScript exporter is deprecated in favour of torch.export, which needs the
                # onnxscript package; for these plain CNNs both give the same operators.
                warnings.simplefilter("ignore")
                torch.onnx.export(network, (example,), str(raw), dynamo=False, opset_version=OPSET,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(temporary)
            onnxruntime.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
            _drop_unused_opsets(temporary)
            check_graph(temporary, operators)
            gap = parity_gap(network, temporary, probe_images(image_size) if probes is None else probes)
            if gap > tolerance:
                raise ExportError(f"{path.name}: ONNX Runtime differs from PyTorch by {gap:.2e} "
                                  f"(> {tolerance:.0e}); the export is not faithful")
        return gap
    finally:
        raw.unlink(missing_ok=True)


def _drop_unused_opsets(path: Path) -> None:
    """ONNX Runtime declares all its operator domains; keep the ones the graph uses."""
    model = onnx.load(str(path))
    used = {node.domain for node in model.graph.node} | {""}
    kept = [entry for entry in model.opset_import if entry.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))


def check_graph(path: Path, operators: frozenset[str] = DEPLOYABLE_OPERATORS) -> None:
    """Refuse a graph with an operator outside ``operators`` or a fixed batch."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    foreign = sorted({f"{n.domain}::{n.op_type}" if n.domain else n.op_type for n in model.graph.node}
                     - operators)
    if foreign:
        raise ExportError(f"{path.name}: operators {foreign} are not in the deployable set; "
                          "fix: replace the layer that produces them (see docs/models.md)")
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    if not batch.dim_param:
        raise ExportError(f"{path.name}: the batch dimension is fixed to {batch.dim_value}")
    opset = max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    if opset < OPSET:
        raise ExportError(f"{path.name}: opset {opset} is older than {OPSET}")


def probe_images(image_size: int) -> np.ndarray:
    """Three normalised-range inputs: noise, a ramp and black, batch of 3 (not the export's)."""
    rng = np.random.default_rng(0)
    ramp = np.broadcast_to(np.linspace(-1, 1, image_size, dtype=np.float32), (image_size, image_size))
    return np.stack([rng.standard_normal((image_size, image_size)).astype(np.float32), ramp,
                     np.full((image_size, image_size), -1.0, np.float32)])[:, np.newaxis]


def onnx_logits(path: Path, images: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: images.astype(np.float32)})[0]


def parity_gap(network: nn.Module, path: Path, images: np.ndarray) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime logits on ``images``."""
    with torch.no_grad():
        expected = network.eval().cpu()(torch.from_numpy(images.astype(np.float32))).numpy()
    return float(np.abs(onnx_logits(path, images) - expected).max())


def export_bundle(folder: Path) -> tuple[float, list[str]]:
    """Rewrite ``folder/model.onnx`` from the bundle's weights and re-sign the manifest.

    The manifest is not checked first (re-signing after a deliberate change is the point), but
    the weights must still fit the bundle's config.
    """
    from model_build.models import InputError
    from model_build.models.bundle import load_bundle
    from sarco_core.bundle import ONNX, write_manifest

    bundle = load_bundle(folder, verify=False)
    if "image" not in bundle.config.modalities:
        raise InputError(f"{folder}: this model has no image input, so there is no device graph to "
                         "export; the bundle's weights serve `sarco evaluate` and `sarco predict`")
    gap = export_onnx(bundle.model.image_scorer(), bundle.config.image_size, folder / ONNX)
    write_manifest(folder)
    operators = sorted({node.op_type for node in onnx.load(str(folder / ONNX)).graph.node})
    return gap, operators
