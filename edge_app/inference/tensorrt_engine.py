"""TensorRT backend: a serialized engine, device buffers through cuda-python.

THIN AND UNVERIFIED: written from NVIDIA's TensorRT Python samples (common_runtime.py) and API
documentation, never run in this repository's CI (no GPU, no TensorRT there). Check it on the
device with ``sarco-edge bench --backend tensorrt`` against ``--backend onnx-cpu`` before use.

- TensorRT 10 (JetPack 6): named I/O tensors, ``set_input_shape``, ``set_tensor_address`` and
  ``execute_async_v3`` on a CUDA stream.
- TensorRT 8.x (JetPack 5): the bindings API and ``execute_v2`` (synchronous).

Memory comes from cuda-python (``pip install cuda-python`` matching the CUDA version) as in
NVIDIA's current samples; pycuda is not needed. Engines are specific to the GPU and the
TensorRT version: build them on the device (``trtexec --onnx=model.onnx --saveEngine=...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_app.inference import BackendError, class_outputs

try:  # guarded: only this module needs them, and only on the device
    import tensorrt as trt
except ImportError as exc:  # pragma: no cover - depends on the machine
    raise BackendError(f"TensorRT is not installed here ({exc}); it comes with JetPack") from None
try:  # cuda-python >= 12.6 moved the runtime bindings
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover
    try:
        from cuda import cudart
    except ImportError as exc:
        raise BackendError(f"cuda-python is not installed ({exc}): pip install cuda-python") \
            from None


def _check(result: Any) -> Any:
    """cuda-python returns (error, *values); raise on an error, return the value(s)."""
    error, *values = result
    if error != cudart.cudaError_t.cudaSuccess:
        raise BackendError(f"CUDA call failed: {cudart.cudaGetErrorString(error)[1]!r}")
    return values[0] if len(values) == 1 else values


class TensorRTBackend:
    """One input (N, C, H, W) float32, one logits output; batches of the size last used."""

    name = "tensorrt"

    def __init__(self, engine_path: Path) -> None:
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if engine is None:
            raise BackendError(f"{engine_path}: TensorRT cannot load it (built on another GPU or "
                               "TensorRT version?); rebuild it on this device")
        self._engine = engine
        self._context = engine.create_execution_context()
        self._v3 = hasattr(engine, "num_io_tensors") and hasattr(self._context,
                                                                 "execute_async_v3")
        names = self._io_names()
        inputs = [n for n in names if self._is_input(n)]
        outputs = [n for n in names if not self._is_input(n)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendError(f"{engine_path}: expected one input and one output, got "
                               f"{inputs} / {outputs}")
        self._input, self._output = inputs[0], outputs[0]
        shape = tuple(self._shape(self._input))
        if len(shape) != 4 or min(shape[1:]) <= 0:
            raise BackendError(f"{engine_path}: input shape {shape} is not (N, C, H, W)")
        self.input_shape = (int(shape[1]), int(shape[2]), int(shape[3]))
        self._stream = _check(cudart.cudaStreamCreate())
        self._batch = 0
        self._buffers: dict[str, int] = {}
        self._host_output = np.empty(0, dtype=np.float32)

    # ---------------------------------------------------------------- version shims

    def _io_names(self) -> list[str]:
        if self._v3:
            return [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        return [self._engine.get_binding_name(i) for i in range(self._engine.num_bindings)]

    def _is_input(self, name: str) -> bool:
        if self._v3:
            return self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        return self._engine.binding_is_input(self._engine.get_binding_index(name))

    def _shape(self, name: str) -> tuple[int, ...]:
        if self._v3:
            return tuple(self._engine.get_tensor_shape(name))
        return tuple(self._engine.get_binding_shape(self._engine.get_binding_index(name)))

    def _dtype(self, name: str) -> np.dtype:
        if self._v3:
            return np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
        return np.dtype(trt.nptype(self._engine.get_binding_dtype(
            self._engine.get_binding_index(name))))

    def _set_batch(self, batch: int) -> None:
        if batch == self._batch:
            return
        shape = (batch, *self.input_shape)
        if self._v3:
            self._context.set_input_shape(self._input, shape)
            out_shape = tuple(self._context.get_tensor_shape(self._output))
        else:
            self._context.set_binding_shape(self._engine.get_binding_index(self._input), shape)
            out_shape = tuple(self._context.get_binding_shape(
                self._engine.get_binding_index(self._output)))
        self._free()
        self._host_output = np.empty(out_shape, dtype=self._dtype(self._output))
        self._buffers = {
            self._input: _check(cudart.cudaMalloc(
                int(np.prod(shape)) * self._dtype(self._input).itemsize)),
            self._output: _check(cudart.cudaMalloc(self._host_output.nbytes)),
        }
        if self._v3:
            for name, pointer in self._buffers.items():
                self._context.set_tensor_address(name, int(pointer))
        self._batch = batch

    # ---------------------------------------------------------------- inference

    def outputs(self, batch: np.ndarray) -> np.ndarray:
        # an engine built with --stronglyTyped from an FP16 graph may take FP16 input
        batch = np.ascontiguousarray(batch, dtype=self._dtype(self._input))
        if batch.shape[1:] != self.input_shape:
            raise BackendError(f"input {batch.shape[1:]} does not match the engine's "
                               f"{self.input_shape}")
        self._set_batch(batch.shape[0])
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(self._buffers[self._input], batch.ctypes.data,
                                      batch.nbytes, to_device, self._stream))
        if self._v3:
            if not self._context.execute_async_v3(self._stream):
                raise BackendError("TensorRT execute_async_v3 failed")
        else:
            _check(cudart.cudaStreamSynchronize(self._stream))
            bindings = [0] * self._engine.num_bindings
            for name, pointer in self._buffers.items():
                bindings[self._engine.get_binding_index(name)] = int(pointer)
            if not self._context.execute_v2(bindings):
                raise BackendError("TensorRT execute_v2 failed")
        _check(cudart.cudaMemcpyAsync(self._host_output.ctypes.data, self._buffers[self._output],
                                      self._host_output.nbytes, to_host, self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        return class_outputs(self._host_output, len(batch))

    def _free(self) -> None:
        for pointer in self._buffers.values():
            cudart.cudaFree(pointer)
        self._buffers = {}

    def __del__(self) -> None:
        try:
            self._free()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing sensible to do
            pass
