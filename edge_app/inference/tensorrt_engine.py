"""TensorRT backend: a serialized engine, device buffers through cuda-python.

THIN AND UNVERIFIED ON A DEVICE: written from NVIDIA's TensorRT Python samples
(common_runtime.py) and the Python API documentation for TensorRT 8.5 and 10.x, and exercised
here only against the test double in ``tests/support/doubles`` (no GPU or TensorRT in CI). Check it on
the device with ``sarco-edge selftest`` (docs/deployment.md, "First device").

The named-tensor API (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) exists from TensorRT 8.5 (JetPack 5.1) on and is the only one in 10.x
(JetPack 6), so it is the only one used. An engine built with a dynamic batch axis takes
batches between its optimisation profile's min and max; a larger batch (the self-test sends the
whole golden set at once) is split into chunks of the profile's max, read from the engine.

Memory comes from cuda-python (the release that matches JetPack's CUDA; jetson/setup.sh pins
it); pycuda is not needed. Engines are specific to the GPU and the TensorRT version: build them
on the device (``sarco-edge build-engine``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_app.inference import BackendError, class_outputs
from edge_app.inference.cuda_runtime import CudaUnavailable, call, import_cudart

try:  # guarded: only this module needs it, and only on the device
    import tensorrt as trt
except ImportError as exc:  # pragma: no cover - depends on the machine
    raise BackendError(f"TensorRT is not installed here ({exc}); it comes with JetPack") from None
try:
    cudart = import_cudart()
except CudaUnavailable as exc:  # pragma: no cover - depends on the machine
    raise BackendError(str(exc)) from None


def _cuda(result: tuple):  # noqa: ANN202 - whatever the call returns
    try:
        return call(cudart, result)
    except CudaUnavailable as exc:
        raise BackendError(str(exc)) from None


class TensorRTBackend:
    """One input (N, C, H, W), one logits output; any batch size, run in chunks the engine's
    optimisation profile accepts."""

    name = "tensorrt"

    def __init__(self, engine_path: Path) -> None:
        self._path = Path(engine_path)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(self._path.read_bytes())
        if engine is None:
            raise BackendError(f"{engine_path}: TensorRT cannot load it (built on another GPU or "
                               "TensorRT version?); rebuild it with `sarco-edge build-engine`")
        if not hasattr(engine, "num_io_tensors"):
            raise BackendError(f"TensorRT {trt.__version__} lacks the named-tensor API; use "
                               "JetPack 5.1.x (TensorRT 8.5) or JetPack 6.x (TensorRT 10)")
        context = engine.create_execution_context()
        if context is None:  # documented to return None on failure, e.g. out of GPU memory
            raise BackendError(f"{engine_path}: TensorRT could not create an execution "
                               "context (out of GPU memory? close other GPU programs)")
        self._engine, self._context = engine, context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendError(f"{engine_path}: expected one input and one output, got "
                               f"{inputs} / {outputs}")
        self._input, self._output = inputs[0], outputs[0]
        shape = tuple(engine.get_tensor_shape(self._input))
        if len(shape) != 4 or min(shape[1:]) <= 0:
            raise BackendError(f"{engine_path}: input shape {shape} is not (N, C, H, W)")
        self.input_shape = (int(shape[1]), int(shape[2]), int(shape[3]))
        self.max_batch = self._largest_batch(shape)
        self._fixed_batch = shape[0] > 0
        self._input_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input)))
        self._output_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._output)))
        self._stream = _cuda(cudart.cudaStreamCreate())
        self._buffers: dict[str, int] = {}
        self._batch = 0

    def _largest_batch(self, shape: tuple[int, ...]) -> int:
        """A fixed batch axis is its own size; a dynamic one is bounded by profile 0's max
        (``get_tensor_profile_shape`` returns the [min, opt, max] shapes)."""
        if shape[0] > 0:
            return int(shape[0])
        largest = int(self._engine.get_tensor_profile_shape(self._input, 0)[2][0])
        if largest <= 0:
            raise BackendError(f"{self._path}: the engine's profile has no batch maximum")
        return largest

    # ---------------------------------------------------------------- inference

    def outputs(self, batch: np.ndarray) -> np.ndarray:
        # an engine built with --stronglyTyped from an FP16 graph may take FP16 input
        batch = np.ascontiguousarray(batch, dtype=self._input_dtype)
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise BackendError(f"input {batch.shape[1:]} does not match the engine's "
                               f"{self.input_shape}")
        chunks = [self._run(batch[start:start + self.max_batch])
                  for start in range(0, len(batch), self.max_batch)]
        return class_outputs(np.concatenate(chunks), len(batch))

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        rows = len(chunk)
        if self._fixed_batch and rows < self.max_batch:  # a fixed-batch engine: pad, then drop
            padding = np.zeros((self.max_batch - rows, *chunk.shape[1:]), chunk.dtype)
            chunk = np.ascontiguousarray(np.concatenate([chunk, padding]))
        output = self._prepare(len(chunk))
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _cuda(cudart.cudaMemcpyAsync(self._buffers[self._input], chunk.ctypes.data, chunk.nbytes,
                                     to_device, self._stream))
        if not self._context.execute_async_v3(self._stream):
            raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT messages)")
        _cuda(cudart.cudaMemcpyAsync(output.ctypes.data, self._buffers[self._output],
                                     output.nbytes, to_host, self._stream))
        _cuda(cudart.cudaStreamSynchronize(self._stream))
        return output[:rows]

    def _prepare(self, rows: int) -> np.ndarray:
        """Set the input shape (TensorRT refuses shapes outside the profile: False, and the
        output shape stays unknown) and make sure the buffers hold a batch of ``rows``."""
        shape = (rows, *self.input_shape)
        if rows != self._batch:
            if not self._context.set_input_shape(self._input, shape):
                raise BackendError(f"TensorRT refused input shape {shape}: the engine takes "
                                   f"batches of at most {self.max_batch}")
            self._batch = rows
        out_shape = tuple(int(d) for d in self._context.get_tensor_shape(self._output))
        if min(out_shape, default=-1) < 0:
            raise BackendError(f"TensorRT left the output shape unresolved ({out_shape}) for "
                               f"input {shape}")
        if not self._buffers:
            self._allocate(out_shape)
        return np.empty(out_shape, dtype=self._output_dtype)

    def _allocate(self, out_shape: tuple[int, ...]) -> None:
        """Device buffers for the largest batch, allocated once."""
        frame_bytes = int(np.prod(self.input_shape)) * self._input_dtype.itemsize
        row_bytes = int(np.prod(out_shape[1:])) * self._output_dtype.itemsize
        self._buffers = {self._input: _cuda(cudart.cudaMalloc(self.max_batch * frame_bytes)),
                         self._output: _cuda(cudart.cudaMalloc(self.max_batch * row_bytes))}
        for name, pointer in self._buffers.items():
            if not self._context.set_tensor_address(name, int(pointer)):
                raise BackendError(f"TensorRT refused the device address of {name!r}")

    def __del__(self) -> None:
        try:
            for pointer in getattr(self, "_buffers", {}).values():
                cudart.cudaFree(pointer)
            if getattr(self, "_stream", None) is not None:
                cudart.cudaStreamDestroy(self._stream)
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing sensible to do
            pass
