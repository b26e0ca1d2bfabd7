"""ONNX export of the aponeurosis network, checked against PyTorch.

The classifier's export (:func:`model_build.models.export.export_network`) with the
segmentation's operator set and tolerance: segmentation adds one operator to the deployable
set, Resize (the decoder's bilinear upsampling), which ONNX Runtime and TensorRT both run
natively. Its input and output names are the classifier's (``image``, ``logits``), which
``sarco_core.bundle`` names ``APONEUROSIS_INPUT`` / ``APONEUROSIS_OUTPUT`` for the device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from model_build.models.export import DEPLOYABLE_OPERATORS, export_network

SEGMENTATION_OPERATORS = DEPLOYABLE_OPERATORS | {"Resize"}
PARITY_TOLERANCE = 1e-3  # on logits of order 10: float32 summation order over ~40 layers


def export_segmentation(network: nn.Module, image_size: int, path: Path, probes: np.ndarray | None = None) -> float:
    """Write ``path`` atomically (input ``image`` (batch, 1, S, S), output ``logits`` (batch, 3, S, S));
    returns the largest PyTorch / ONNX Runtime difference on ``probes`` (real model inputs when
    given, else noise, a ramp and black), refused above :data:`PARITY_TOLERANCE`."""
    return export_network(network, image_size, path, operators=SEGMENTATION_OPERATORS,
                          tolerance=PARITY_TOLERANCE, probes=probes)
