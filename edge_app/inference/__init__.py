"""Inference backends behind one interface: a batch of preprocessed frames in, the network's
raw class outputs out (``(N, K)``; the bundle's readout turns them into probabilities).

- ``tensorrt``: a TensorRT engine built on the device (edge_app.inference.tensorrt_engine);
- ``onnx-cuda`` / ``onnx-cpu``: ONNX Runtime on the bundle's model.onnx.

``auto`` takes the first that works, in that order. TensorRT is imported only when chosen, so
the package loads on machines without it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from sarco_core.errors import SarcoError

log = logging.getLogger("edge_app.inference")

BACKENDS = ("auto", "tensorrt", "onnx-cuda", "onnx-cpu")


class BackendError(SarcoError, RuntimeError):
    """A backend that cannot run here; the message says what is missing."""


class InferenceBackend(Protocol):
    name: str
    input_shape: tuple[int, int, int]  # (channels, height, width) of one frame

    def outputs(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` float32 (N, C, H, W) -> float64 (N, K) raw class outputs."""
        ...


def class_outputs(output: np.ndarray, batch: int) -> np.ndarray:
    """Check and shape a model output as (N, K): (N, 2) class logits, or one logit per frame
    given as (N, 1) or (N,)."""
    output = np.asarray(output, dtype=np.float64)
    if output.ndim == 1:
        output = output[:, None]
    if output.ndim != 2 or output.shape[0] != batch or output.shape[1] not in (1, 2):
        raise BackendError(f"model output shape {output.shape}: expected ({batch}, 2) or "
                           f"({batch}, 1) logits; re-export the model with a classification head")
    return output


def load_backend(choice: str, onnx_path: Path, engine_path: Path | None = None,
                 threads: int = 0) -> InferenceBackend:
    """The backend named by ``choice`` (see BACKENDS); "auto" logs why it skipped the others."""
    if choice not in BACKENDS:
        raise BackendError(f"backend {choice!r}: use one of {', '.join(BACKENDS)}")
    candidates = ["tensorrt", "onnx-cuda", "onnx-cpu"] if choice == "auto" else [choice]
    problems: list[str] = []
    for name in candidates:
        try:
            return _load(name, onnx_path, engine_path, threads)
        except BackendError as exc:
            problems.append(f"{name}: {exc}")
            if choice != "auto":
                raise
            log.info("backend skipped", extra={"event": "backend_skipped", "backend": name,
                                               "reason": str(exc)})
    raise BackendError("no inference backend could start: " + "; ".join(problems))


def _load(name: str, onnx_path: Path, engine_path: Path | None, threads: int) -> InferenceBackend:
    if name == "tensorrt":
        if engine_path is None or not Path(engine_path).is_file():
            raise BackendError("no TensorRT engine; build one on this device "
                               "(jetson/ and docs/edge.md) and set model.engine")
        from edge_app.inference.tensorrt_engine import TensorRTBackend

        return TensorRTBackend(Path(engine_path))
    from edge_app.inference.onnx_runtime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(onnx_path, cuda=name == "onnx-cuda", threads=threads)
