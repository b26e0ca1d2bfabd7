"""Engine building with the TensorRT Python API, on the device.

THIN AND UNVERIFIED HERE: written against NVIDIA's documented Python API (trt.Builder,
create_network, OnnxParser, IBuilderConfig, build_serialized_network, timing caches) for
TensorRT 8.5 (JetPack 5.1.x) and 10.x (JetPack 6.x). This repository's CI has no GPU and no
TensorRT, so only the pure parts (the calibration-cache header, the batch profile) are tested;
docs/deployment.md lists the commands that verify the rest on a Jetson. TensorRT and
cuda-python are imported inside the functions so the module loads anywhere.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge_app.deploy import DeployError
from edge_app.deploy.engines import BuildPlan, Platform
from edge_app.deploy.files import atomic_write

# The calibration cache's first line names the calibrator that wrote it, e.g.
# "TRT-8502-EntropyCalibration2"; reading it back needs a calibrator of the same kind, or
# TensorRT discards the cache and tries to calibrate (and we have no data to give it).
CALIBRATORS = {
    "EntropyCalibration2": "IInt8EntropyCalibrator2",
    "EntropyCalibration": "IInt8EntropyCalibrator",
    "MinMaxCalibration": "IInt8MinMaxCalibrator",
    "LegacyCalibration": "IInt8LegacyCalibrator",
}


def calibrator_kind(cache: bytes) -> str:
    """The TensorRT calibrator class that reads ``cache``."""
    header = cache.split(b"\n", 1)[0].decode("ascii", errors="replace").strip()
    algorithm = header.rsplit("-", 1)[-1]
    if not header.startswith("TRT-") or algorithm not in CALIBRATORS:
        raise DeployError(f"calibration cache header {header[:60]!r}: not a TensorRT cache "
                          f"(expected 'TRT-<version>-<{'|'.join(CALIBRATORS)}>')")
    return CALIBRATORS[algorithm]


def batch_profile(shape: tuple[int, ...], max_batch: int) -> tuple[tuple[int, ...], ...] | None:
    """(min, opt, max) shapes for an input whose batch axis is dynamic; None if all fixed."""
    if all(d > 0 for d in shape):
        return None
    if len(shape) != 4 or shape[0] != -1 or any(d <= 0 for d in shape[1:]):
        raise DeployError(f"model input shape {shape}: only the batch axis may be dynamic; "
                          "re-export with fixed channels, height and width")
    rest = tuple(shape[1:])
    return (1, *rest), (1, *rest), (max_batch, *rest)


def detect_platform() -> Platform:
    """TensorRT version and the GPU (name, compute capability) of device 0."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise DeployError(f"TensorRT is not importable here ({exc}); engines are built on the "
                          "Jetson (JetPack's python3-libnvinfer, seen by the venv that "
                          "jetson/setup.sh makes)") from None
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise DeployError(f"cuda-python is not installed ({exc}): pip install "
                              "'cuda-python<CUDA major+1>' (jetson/setup.sh does)") from None
    error, properties = cudart.cudaGetDeviceProperties(0)
    if error != cudart.cudaError_t.cudaSuccess:
        raise DeployError(f"no CUDA device visible ({error}); is the service user in the "
                          "'video' group?")
    name = properties.name
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return Platform(tensorrt_version=trt.__version__, gpu_name=name.strip("\x00 "),
                    compute_capability=f"{properties.major}.{properties.minor}")


def build_engine(plan: BuildPlan, platform: Platform, timing_cache: Path,
                 workspace_bytes: int = 1 << 30, max_batch: int = 8) -> tuple[bytes, float]:
    """Build one serialized engine; returns (engine bytes, seconds). Updates the timing cache."""
    import tensorrt as trt

    started = time.monotonic()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if platform.tensorrt_major < 10:  # implicit batch is gone in 10; the flag is deprecated
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeployError(f"{plan.onnx}: TensorRT cannot parse it ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if not plan.strongly_typed:  # strongly typed networks take precisions from the graph
        config.set_flag(trt.BuilderFlag.FP16)
        if plan.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    if plan.calibration_cache is not None:
        config.int8_calibrator = _cache_calibrator(trt, plan.calibration_cache.read_bytes())
    network_input = network.get_input(0)
    profile_shapes = batch_profile(tuple(network_input.shape), max_batch)
    if profile_shapes is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(network_input.name, *profile_shapes)
        config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file()
                                       else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        cache = config.create_timing_cache(b"")  # another TensorRT/GPU wrote it: start afresh
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DeployError(f"{plan.onnx}: TensorRT could not build a {plan.precision} engine "
                          "(see the TensorRT messages above)")
    atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), time.monotonic() - started


def _cache_calibrator(trt: Any, cache: bytes) -> Any:
    """A calibrator that only hands TensorRT the cache (TensorRT 8.x); it has no batches."""
    base = getattr(trt, calibrator_kind(cache))

    class CacheCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> None:
            return None

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: bytes) -> None:
            return None

    return CacheCalibrator()
