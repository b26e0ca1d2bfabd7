"""UNVERIFIED: a TensorRT 8.x INT8 calibration cache (`--target tensorrt-cache`), for Jetsons on
JetPack 5 whose TensorRT (8.4 / 8.5) predates explicit quantization's maturity.

Written against the documented TensorRT 8.5 / 10.x Python API (``trt.IInt8EntropyCalibrator2``:
``get_batch_size``, ``get_batch(names)`` returning device pointers, ``read_calibration_cache``,
``write_calibration_cache``; ``IBuilderConfig.int8_calibrator``, ``set_calibration_profile``)
and pycuda for the device buffer, as NVIDIA's older samples do. It has never run here: the
development machines and CI have no GPU and no TensorRT, so only the parts that need neither
(batch feeding from CALIB, cache file handling, the refusal when TensorRT is missing) are tested.
Implicit calibration is deprecated since TensorRT 10.1 and removed in 11: use
``--target tensorrt`` (a Q/DQ ONNX) for TensorRT 10.

Run it on the device (or any CUDA machine with TensorRT 8.x and pycuda), then build the engine
there with the cache: ``trtexec --onnx=model.onnx --int8 --fp16 --calib=calibration.cache``.
A cache is tied to the TensorRT version that wrote it (its first line names it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from model_build.calibration import CalibrationError
from model_build.calibration.bundles import SourceBundle, write_int8_bundle
from model_build.calibration.onnx_run import INPUT_NAME
from model_build.calibration.select import CalibrationSet
from sarco_core.files import atomic_write

CACHE = "calibration.cache"
DEFAULT_BATCH = 32


class CalibrationBatches:
    """The CALIB inputs in fixed-size batches, as TensorRT pulls them (a calibration profile has
    one shape); a last partial batch is left out rather than padded with repeats."""

    def __init__(self, inputs: np.ndarray, batch_size: int = DEFAULT_BATCH) -> None:
        if inputs.ndim != 4 or len(inputs) == 0:
            raise CalibrationError(f"calibration inputs: expected (N, C, H, W) with N > 0, got {inputs.shape}")
        self.batch_size = min(batch_size, len(inputs))
        self.inputs = inputs
        self.left_out = len(inputs) % self.batch_size

    def __len__(self) -> int:
        return len(self.inputs) // self.batch_size

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.batch_size
        return np.ascontiguousarray(self.inputs[start:start + self.batch_size], dtype=np.float32)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.batch_size, *self.inputs.shape[1:])

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(np.float32).itemsize


class CacheFile:
    """The cache TensorRT reads back (to skip calibration) and writes once calibrated."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> bytes | None:
        return self.path.read_bytes() if self.path.is_file() else None

    def write(self, data: bytes) -> None:
        """Atomic, so an interrupted build never leaves half a cache for the next one to trust."""
        atomic_write(self.path, data)


def tensorrt_missing() -> str | None:
    """Why the cache cannot be built here, or None when tensorrt and pycuda import."""
    try:
        import pycuda.driver  # noqa: F401
        import tensorrt  # noqa: F401
    except ImportError as error:
        return (f"{error.name} is not installed: the tensorrt-cache target needs TensorRT 8.x and pycuda on a "
                "machine with an NVIDIA GPU (a Jetson with JetPack 5); for TensorRT 10 use --target tensorrt")
    return None


def make_calibrator(batches: CalibrationBatches, cache: CacheFile):
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` from one device buffer (unverified)."""
    import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
    import pycuda.driver as cuda
    import tensorrt as trt

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.next_batch = 0
            self.device_input = cuda.mem_alloc(batches.nbytes)

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.next_batch >= len(batches):
                return None  # calibration ends
            cuda.memcpy_htod(self.device_input, batches[self.next_batch])
            self.next_batch += 1
            return [int(self.device_input)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read()

        def write_calibration_cache(self, data) -> None:
            cache.write(bytes(data))

    return EntropyCalibrator()


def build_cache(onnx_path: Path, batches: CalibrationBatches, cache_path: Path, workspace_mib: int = 1024) -> Path:
    """Calibrate by building an INT8 engine from ``onnx_path``; TensorRT writes the cache (unverified)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        problems = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CalibrationError(f"{onnx_path}: TensorRT cannot parse it ({problems})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, batches.shape, batches.shape, batches.shape)
    config.add_optimization_profile(profile)
    config.set_calibration_profile(profile)
    config.int8_calibrator = make_calibrator(batches, CacheFile(cache_path))
    if builder.build_serialized_network(network, config) is None or not cache_path.is_file():
        raise CalibrationError(f"{onnx_path}: TensorRT did not build the INT8 engine, so no cache was written; "
                               "see TensorRT's messages above")
    return cache_path


def quantize_to_cache(source: SourceBundle, calibration: CalibrationSet, out: Path, metadata: dict) -> Path:
    """The INT8 bundle for TensorRT 8.x: the float graph unchanged plus ``calibration.cache``."""
    problem = tensorrt_missing()
    if problem:
        raise CalibrationError(problem)
    batches = CalibrationBatches(calibration.inputs)
    with tempfile.TemporaryDirectory(prefix="sarco-trt-cache-") as work:
        cache = build_cache(source.onnx_path, batches, Path(work) / CACHE)
        metadata = {**metadata, "unverified": "built by model_build.calibration.trt_cache, which CI never runs",
                    "cache": {"file": CACHE, "batch_size": batches.batch_size, "batches": len(batches),
                              "inputs_left_out": batches.left_out, "input": INPUT_NAME}}
        return write_int8_bundle(source, source.onnx_path, metadata, out, extra_files={CACHE: cache},
                                 replace_graph=False)
