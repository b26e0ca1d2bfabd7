"""TEST DOUBLE of cuda-python's CUDA runtime module (``cuda.bindings.runtime``).

Behaviours faked, with their sources:
- every call returns a tuple whose first item is a ``cudaError_t`` and whose other items are
  the outputs (cuda-python docs, "Overview": "the first element of the returned tuple is the
  error code"); calls without outputs return a 1-tuple;
- ``cudaErrorInsufficientDriver`` = 35 from every call that needs the driver when the runtime
  is newer than the driver supports (CUDA runtime API, cudaError_t; reported for cuda-python
  on JetPack 6.1/6.2 in NVlabs/FoundationStereo #209 and anduril/jetpack-nixos #328);
  ``cudaDriverGetVersion`` and ``cudaRuntimeGetVersion`` still answer (CUDA runtime API,
  "Version Management": they report versions without initialising a context);
- ``cudaErrorNoDevice`` = 100 when no device is visible (CUDA runtime API, cudaError_t);
- versions are encoded 1000 * major + 10 * minor (CUDA runtime API, cudaDriverGetVersion);
- ``cudaGetErrorString(error)`` returns ``(cudaSuccess, bytes)`` (cuda-python API reference);
- ``cudaDeviceProp.name`` is bytes of a C char array (cuda-python API reference);
- ``cudaMemcpyAsync(dst, src, count, kind, stream)`` takes integer addresses (cuda-python docs,
  "Overview": pointers are passed as Python ints).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cuda import _fake_device as device


class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


_MESSAGES = {
    cudaError_t.cudaSuccess: b"no error",
    cudaError_t.cudaErrorInvalidValue: b"invalid argument",
    cudaError_t.cudaErrorMemoryAllocation: b"out of memory",
    cudaError_t.cudaErrorInsufficientDriver:
        b"CUDA driver version is insufficient for CUDA runtime version",
    cudaError_t.cudaErrorNoDevice: b"no CUDA-capable device is detected",
}


class cudaStream_t(int):  # noqa: N801 - cuda-python's stream handles convert with int()
    pass


@dataclass
class cudaDeviceProp:  # noqa: N801
    name: bytes = b"Orin" + b"\x00" * 252
    major: int = 8
    minor: int = 7


def _blocked() -> cudaError_t | None:
    if device.runtime_version() > device.driver_version():
        return cudaError_t.cudaErrorInsufficientDriver
    if device.gpu_count() < 1:
        return cudaError_t.cudaErrorNoDevice
    return None


def cudaGetErrorString(error):  # noqa: ANN001, ANN201, N802
    return cudaError_t.cudaSuccess, _MESSAGES.get(cudaError_t(int(error)), b"unknown error")


def cudaDriverGetVersion():  # noqa: ANN201, N802
    return cudaError_t.cudaSuccess, device.driver_version()


def cudaRuntimeGetVersion():  # noqa: ANN201, N802
    return cudaError_t.cudaSuccess, device.runtime_version()


def cudaGetDeviceCount():  # noqa: ANN201, N802
    error = _blocked()
    return (error, 0) if error else (cudaError_t.cudaSuccess, device.gpu_count())


def cudaGetDeviceProperties(index):  # noqa: ANN001, ANN201, N802
    error = _blocked()
    if error:
        return error, None
    if not 0 <= int(index) < device.gpu_count():
        return cudaError_t.cudaErrorInvalidValue, None
    return cudaError_t.cudaSuccess, cudaDeviceProp()


def cudaStreamCreate():  # noqa: ANN201, N802
    error = _blocked()
    return (error, None) if error else (cudaError_t.cudaSuccess, cudaStream_t(1))


def cudaStreamDestroy(stream):  # noqa: ANN001, ANN201, N802
    return (cudaError_t.cudaSuccess,)


def cudaStreamSynchronize(stream):  # noqa: ANN001, ANN201, N802
    return (_blocked() or cudaError_t.cudaSuccess,)


def cudaMalloc(size):  # noqa: ANN001, ANN201, N802
    error = _blocked()
    if error:
        return error, 0
    return cudaError_t.cudaSuccess, device.allocate(int(size))


def cudaFree(pointer):  # noqa: ANN001, ANN201, N802
    return (cudaError_t.cudaSuccess if device.buffers.pop(int(pointer), None) is not None
            else cudaError_t.cudaErrorInvalidValue,)


def cudaMemcpyAsync(dst, src, count, kind, stream):  # noqa: ANN001, ANN201, N802, PLR0913
    error = _blocked()
    if error:
        return (error,)
    count = int(count)
    try:
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            device.view(int(dst), count)[:] = device.host_bytes(int(src), count)
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            device.write_host(int(dst), bytes(device.view(int(src), count)))
        else:
            return (cudaError_t.cudaErrorInvalidValue,)
    except ValueError:
        return (cudaError_t.cudaErrorInvalidValue,)
    return (cudaError_t.cudaSuccess,)
