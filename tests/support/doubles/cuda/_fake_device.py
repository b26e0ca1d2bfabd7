"""TEST DOUBLE: the fake GPU's memory, shared by the fake cuda-python and the fake TensorRT
(an engine reads its input from, and writes its output to, addresses cudaMalloc returned)."""

from __future__ import annotations

import ctypes
import itertools
import os

_BASE = 0x7F00_0000_0000
_next = itertools.count()
buffers: dict[int, bytearray] = {}


def driver_version() -> int:
    return int(os.environ.get("SARCO_FAKE_CUDA_DRIVER", "12060"))


def runtime_version() -> int:
    return int(os.environ.get("SARCO_FAKE_CUDA_RUNTIME", "12060"))


def gpu_count() -> int:
    return int(os.environ.get("SARCO_FAKE_GPU_COUNT", "1"))


def allocate(size: int) -> int:
    pointer = _BASE + next(_next) * (1 << 32)
    buffers[pointer] = bytearray(size)
    return pointer


def view(pointer: int, size: int) -> memoryview:
    """``size`` bytes of device memory at ``pointer`` (which may point inside a buffer)."""
    for base, buffer in buffers.items():
        if base <= pointer and pointer + size <= base + len(buffer):
            return memoryview(buffer)[pointer - base:pointer - base + size]
    raise ValueError(f"0x{pointer:x}+{size}: not fake device memory")


def host_bytes(address: int, size: int) -> bytes:
    return ctypes.string_at(address, size)


def write_host(address: int, data: bytes) -> None:
    ctypes.memmove(address, data, len(data))
