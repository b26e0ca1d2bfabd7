"""Engine building with the TensorRT Python API, on the device.

THIN AND UNVERIFIED ON A DEVICE: written against NVIDIA's documented Python API (trt.Builder,
create_network, OnnxParser, IBuilderConfig, build_serialized_network, timing caches) for
TensorRT 8.5 (JetPack 5.1.x) and 10.x (JetPack 6.x). This repository's CI has no GPU and no
TensorRT: the code runs there against the test double in ``tests/support/doubles``, which fakes the
documented behaviour only; docs/deployment.md lists what a Jetson must confirm. TensorRT and
cuda-python are imported inside the functions so the module loads anywhere.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from edge_app.deploy.engines import BuildPlan, BuiltEngine, Platform
from edge_app.inference.cuda_runtime import CudaUnavailable, describe_error, import_cudart, smoke_test
from sarco_core.files import atomic_write
from sarco_core.update import DeployError

# The optimisation profile's largest batch. Larger batches (the self-test's golden set) are run
# in chunks by the backend, which reads this bound back from the engine.
MAX_BATCH = 8

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


class TensorRTMissing(DeployError):
    """TensorRT is not installed: not a Jetson, so ONNX Runtime only (not a failure)."""


def detect_platform() -> Platform:
    """TensorRT version and the GPU (name, compute capability) of device 0. Raises
    TensorRTMissing without TensorRT, DeployError naming the cause when CUDA cannot run."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTMissing(f"TensorRT is not importable here ({exc}); engines are built on "
                              "the Jetson (JetPack's python3-libnvinfer, seen by the venv that "
                              "jetson/setup.sh makes)") from None
    try:
        cudart = import_cudart()
    except CudaUnavailable as exc:
        raise DeployError(str(exc)) from None
    report = smoke_test(cudart)
    if not report.ok:
        raise DeployError(report.problem)
    error, properties = cudart.cudaGetDeviceProperties(0)
    if int(error) != 0:
        raise DeployError(f"CUDA cannot describe device 0: {describe_error(cudart, error)}")
    name = properties.name
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return Platform(tensorrt_version=trt.__version__, gpu_name=name.strip("\x00 "),
                    compute_capability=f"{properties.major}.{properties.minor}")


def build_engine(plan: BuildPlan, platform: Platform, timing_cache: Path,
                 workspace_bytes: int = 1 << 30, max_batch: int = MAX_BATCH) -> BuiltEngine:
    """Build one serialized engine, keeping TensorRT's messages as its build log. Updates the
    timing cache."""
    import tensorrt as trt

    started = time.monotonic()
    logger = _recording_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if platform.tensorrt_major < 10:  # the 8.x ONNX parser needs an explicit-batch network
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeployError(f"{plan.onnx}: TensorRT {platform.tensorrt_version} cannot parse it "
                          f"({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if not plan.strongly_typed:  # strongly typed networks take precisions from the graph
        for wanted in ("FP16", "INT8") if plan.precision == "int8" else ("FP16",):
            if not hasattr(trt.BuilderFlag, wanted):  # removed in TensorRT 11
                raise DeployError(f"TensorRT {platform.tensorrt_version} has no "
                                  f"BuilderFlag.{wanted}: only strongly typed engines build "
                                  "there (docs/deployment.md, TensorRT 11)")
            config.set_flag(getattr(trt.BuilderFlag, wanted))
    if plan.calibration_cache is not None:
        config.int8_calibrator = _cache_calibrator(trt, plan.calibration_cache.read_bytes())
    network_input = network.get_input(0)
    profile_shapes = batch_profile(tuple(network_input.shape), max_batch)
    if profile_shapes is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(network_input.name, *profile_shapes)
        config.add_optimization_profile(profile)
    _use_timing_cache(config, timing_cache, logger)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DeployError(f"{plan.onnx}: TensorRT could not build a {plan.precision} engine: "
                          + ("; ".join(logger.errors) or "see the TensorRT messages above"))
    atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    return BuiltEngine(bytes(serialized), time.monotonic() - started, tuple(logger.lines))


def _use_timing_cache(config: Any, path: Path, logger: Any) -> None:
    """Start from the saved timing cache when TensorRT accepts it. ``create_timing_cache``
    returns None for a damaged blob and ``set_timing_cache`` False for one another TensorRT or
    GPU wrote: both mean "start afresh", never a failed build."""
    cache = config.create_timing_cache(path.read_bytes()) if path.is_file() else None
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return
    if path.is_file():
        logger.note(f"timing cache {path} unusable (damaged, or from another TensorRT/GPU): "
                    "starting a new one")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise DeployError("TensorRT could not create an empty timing cache")


def _recording_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps every message of WARNING and above (and INFO lines about
    the build) for the engine's build log, and prints warnings and errors as trt.Logger would."""
    severity = trt.ILogger.Severity

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []
            self.errors: list[str] = []

        def log(self, level, message) -> None:  # noqa: ANN001 - TensorRT's own types
            rank = int(level)  # lower is more severe: INTERNAL_ERROR 0 ... VERBOSE 4
            if rank > int(severity.INFO):
                return
            name = getattr(level, "name", str(level))
            self.lines.append(f"[{name}] {message}")
            if rank <= int(severity.ERROR):
                self.errors.append(str(message))
            if rank <= int(severity.WARNING):
                print(f"TensorRT {name}: {message}", file=sys.stderr)

        def note(self, message: str) -> None:
            self.lines.append(f"[sarco] {message}")

    return RecordingLogger()


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
