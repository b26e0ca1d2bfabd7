"""ONNX Runtime backend (CPU, or CUDA where onnxruntime-gpu is installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_app.inference import BackendError, class_outputs


class OnnxRuntimeBackend:
    """Runs ``model.onnx``; input (N, C, H, W) float32, output logits."""

    def __init__(self, model_path: Path, cuda: bool = False, threads: int = 0) -> None:
        if cuda and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendError("ONNX Runtime here has no CUDA provider (install onnxruntime-gpu, "
                               "or the Jetson wheel from NVIDIA's Jetson Zoo)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime decides
        # no busy-waiting between runs: the capture, display and MQTT threads need the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # a CUDA provider that cannot load is reported below, not as a fatal-looking log line
        ort.set_default_logger_severity(4 if cuda else 3)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else \
            ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise BackendError(f"{model_path}: ONNX Runtime cannot load it ({exc})") from None
        finally:
            ort.set_default_logger_severity(3)
        if cuda and self._session.get_providers()[0] != "CUDAExecutionProvider":
            raise BackendError("ONNX Runtime lists a CUDA provider but it could not start here "
                               "(CUDA or cuDNN libraries missing)")
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise BackendError(f"{model_path}: expected one (N, C, H, W) input, got "
                               f"{[(i.name, i.shape) for i in inputs]}")
        self._input = inputs[0].name
        channels, height, width = inputs[0].shape[1:]
        if not all(isinstance(v, int) for v in (channels, height, width)):
            raise BackendError(f"{model_path}: input {inputs[0].shape} must fix C, H and W")
        self.input_shape = (channels, height, width)
        self.name = "onnx-cuda" if cuda else "onnx-cpu"

    def outputs(self, batch: np.ndarray) -> np.ndarray:
        return class_outputs(self.run(batch), len(batch))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model's first output as it comes (a classifier's logits, a segmentation's
        per-pixel logits)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.shape[1:] != self.input_shape:
            raise BackendError(f"input {batch.shape[1:]} does not match the model's "
                               f"{self.input_shape}")
        return self._session.run(None, {self._input: batch})[0]
