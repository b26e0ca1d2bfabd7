"""TEST DOUBLE of the TensorRT Python API (``import tensorrt``). Not TensorRT: see
tests/support/doubles/README.md. The API surface follows SARCO_FAKE_TENSORRT (8.5/8.6, 10.x, 11.x).

Behaviours faked, each with its source (TensorRT Python API reference and developer guide of
the release named, onnx-tensorrt's README of the matching branch):
- the named-tensor API (num_io_tensors, get_tensor_name/mode/shape/dtype,
  get_tensor_profile_shape, set_input_shape, set_tensor_address, execute_async_v3) exists in
  8.5 and later (TensorRT 8.5 release notes: "added ... named I/O tensor APIs");
- ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is required by the 8.x ONNX parser
  (onnx-tensorrt 8.5 ModelImporter: "This version of the ONNX parser only supports TensorRT
  INetworkDefinitions with an explicit batch dimension"); deprecated and ignored in 10;
  ``STRONGLY_TYPED`` exists from 9.x/10 on (TensorRT 10 developer guide, "Strongly Typed
  Networks"), where precision builder flags are an error;
- the ONNX parser reads opsets up to 17 in 8.5/8.6 and up to 20 in 10.x (onnx-tensorrt README
  of release/8.5-GA and release/10.3-GA); ``parse_from_file`` returns False and records errors
  (``num_errors``/``get_error``);
- a network with a dynamic input needs an optimisation profile, and the build returns None
  without one (developer guide, "Working with Dynamic Shapes"); ``build_serialized_network``
  returns None on any failure, after logging an error (Python API, Builder);
- ``set_input_shape`` returns False for a shape outside the profile's [min, max] and output
  shapes then keep -1 (Python API, IExecutionContext.set_input_shape / get_tensor_shape);
- ``execute_async_v3`` returns False when an input shape or a tensor address is unset
  (Python API, IExecutionContext.execute_async_v3);
- ``deserialize_cuda_engine`` returns None (and logs) for an engine of another TensorRT
  version (developer guide, "Serialization": engines are not portable across versions);
- ``create_execution_context`` may return None (Python API, ICudaEngine);
- ``create_timing_cache`` returns None for a damaged blob; ``set_timing_cache`` returns False
  for a cache of another version unless ignore_mismatch (Python API, IBuilderConfig);
- ``BuilderFlag.FP16``/``INT8``, ``int8_calibrator`` and the IInt8*Calibrator classes are
  removed in 11 (TensorRT 11 Python migration guide);
- IHostMemory supports the buffer protocol (Python API, IHostMemory).
"""

from __future__ import annotations

import base64
import enum
import json
import os
import sys

import numpy as np
from cuda import _fake_device as device

__version__ = os.environ.get("SARCO_FAKE_TENSORRT", "10.3.0")
_MAJOR = int(__version__.split(".")[0])
_MAX_OPSET = 17 if _MAJOR < 10 else 20
_ENGINE_MAGIC = b"FAKE-TRT-ENGINE\n"
_CACHE_MAGIC = b"FAKE-TRT-TIMING\n"


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity, msg) -> None:  # noqa: ANN001
        raise NotImplementedError


class Logger(ILogger):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = list(ILogger.Severity)

    def __init__(self, min_severity=ILogger.Severity.WARNING) -> None:  # noqa: ANN001
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity, msg) -> None:  # noqa: ANN001
        if int(severity) <= int(self.min_severity):
            print(f"[TRT] [{ILogger.Severity(int(severity)).name[0]}] {msg}", file=sys.stderr)


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3


_NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
          DataType.INT32: np.int32}


def nptype(dtype: DataType):  # noqa: ANN201
    return _NUMPY[dtype]


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


NetworkDefinitionCreationFlag = enum.IntEnum(
    "NetworkDefinitionCreationFlag",
    {"EXPLICIT_BATCH": 0, **({"STRONGLY_TYPED": 1} if _MAJOR >= 10 else {})})
BuilderFlag = enum.IntEnum(
    "BuilderFlag", {**({"FP16": 0, "INT8": 1} if _MAJOR < 11 else {}), "REFIT": 2,
                    "DISABLE_TIMING_CACHE": 3})


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class IHostMemory(bytes):
    @property
    def nbytes(self) -> int:
        return len(self)


class ITensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: DataType) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []
        self.onnx = b""

    @property
    def explicit_batch(self) -> bool:
        return _MAJOR >= 10 or bool(self.flags & 1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH)

    @property
    def strongly_typed(self) -> bool:
        return _MAJOR >= 10 and bool(self.flags & 1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self.network, self.logger, self._errors = network, logger, []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> str:
        return self._errors[index]

    def parse_from_file(self, path: str) -> bool:
        import onnx

        if not self.network.explicit_batch:
            self._errors.append("This version of the ONNX parser only supports TensorRT "
                                "INetworkDefinitions with an explicit batch dimension.")
            return False
        try:
            model = onnx.load(path)
        except Exception as exc:  # noqa: BLE001 - the parser reports, never raises
            self._errors.append(f"Failed to parse ONNX model: {exc}")
            return False
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if opset > _MAX_OPSET:
            self._errors.append(f"Unsupported ONNX opset version: {opset} (this parser supports "
                                f"opsets up to {_MAX_OPSET})")
            return False
        for value, into in ((model.graph.input, self.network.inputs),
                            (model.graph.output, self.network.outputs)):
            for tensor in value:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1
                             for d in tensor.type.tensor_type.shape.dim)
                into.append(ITensor(tensor.name, dims, DataType.FLOAT))
        self.network.onnx = model.SerializeToString()
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, min, opt, max) -> None:  # noqa: A002, ANN001
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class ITimingCache:
    def __init__(self, version: str) -> None:
        self.version = version

    def serialize(self) -> IHostMemory:
        return IHostMemory(_CACHE_MAGIC + self.version.encode())


class IInt8Calibrator:
    def __init__(self) -> None:
        pass


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.profiles: list[IOptimizationProfile] = []
        self.pool_limits: dict[MemoryPoolType, int] = {}
        self._timing_cache: ITimingCache | None = None

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.pool_limits[pool] = size

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, blob: bytes) -> ITimingCache | None:
        blob = bytes(blob)
        if not blob:
            return ITimingCache(__version__)
        if not blob.startswith(_CACHE_MAGIC):
            return None  # damaged
        return ITimingCache(blob[len(_CACHE_MAGIC):].decode(errors="replace"))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache.version != __version__ and not ignore_mismatch:
            return False
        self._timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._timing_cache


if _MAJOR < 11:
    IBuilderConfig.int8_calibrator = None

    class IInt8EntropyCalibrator2(IInt8Calibrator):
        pass

    class IInt8EntropyCalibrator(IInt8Calibrator):
        pass

    class IInt8MinMaxCalibrator(IInt8Calibrator):
        pass

    class IInt8LegacyCalibrator(IInt8Calibrator):
        pass


class Builder:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition,
                                 config: IBuilderConfig) -> IHostMemory | None:
        problem = self._problem(network, config)
        if problem:
            self.logger.log(ILogger.Severity.ERROR, problem)
            return None
        self.logger.log(ILogger.Severity.INFO, f"Engine built ({len(network.onnx)} B graph)")
        header = {"version": __version__, "onnx": base64.b64encode(network.onnx).decode(),
                  "inputs": [(t.name, t.shape) for t in network.inputs],
                  "outputs": [(t.name, t.shape) for t in network.outputs],
                  "profiles": [p.shapes for p in config.profiles]}
        return IHostMemory(_ENGINE_MAGIC + json.dumps(header).encode())

    @staticmethod
    def _problem(network: INetworkDefinition, config: IBuilderConfig) -> str:
        if network.strongly_typed and config.flags & {f for f in BuilderFlag
                                                      if f.name in ("FP16", "INT8")}:
            return "Network is strongly typed: precision builder flags are not allowed"
        for tensor in network.inputs:
            if -1 not in tensor.shape:
                continue
            shapes = [p.shapes.get(tensor.name) for p in config.profiles]
            if not shapes or None in shapes:
                return ("Network has dynamic or shape inputs, but no optimization profile has "
                        "been defined.")
            for low, opt, high in shapes:
                if len(low) != len(tensor.shape) or not all(
                        1 <= lo <= o <= hi if fixed == -1 else lo == o == hi == fixed
                        for fixed, lo, o, hi in zip(tensor.shape, low, opt, high)):
                    return f"{tensor.name}: optimization profile {low}/{opt}/{high} invalid"
        return ""


class ICudaEngine:
    def __init__(self, header: dict) -> None:
        self._header = header
        self._inputs = {name: tuple(shape) for name, shape in header["inputs"]}
        self._outputs = {name: tuple(shape) for name, shape in header["outputs"]}
        self._onnx = base64.b64decode(header["onnx"])

    @property
    def num_io_tensors(self) -> int:
        return len(self._inputs) + len(self._outputs)

    @property
    def num_optimization_profiles(self) -> int:
        return max(1, len(self._header["profiles"]))

    def get_tensor_name(self, index: int) -> str:
        return [*self._inputs, *self._outputs][index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name in self._inputs else (
            TensorIOMode.OUTPUT if name in self._outputs else TensorIOMode.NONE)

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._inputs.get(name) or self._outputs[name]

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple]:
        profile = self._header["profiles"][profile_index][name]
        return [tuple(shape) for shape in profile]

    def create_execution_context(self) -> IExecutionContext | None:
        if os.environ.get("SARCO_FAKE_TRT_NO_CONTEXT") == "1":
            return None
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._shapes = {n: s for n, s in engine._inputs.items() if -1 not in s}
        self._addresses: dict[str, int] = {}
        self._session = None

    def set_input_shape(self, name: str, shape) -> bool:  # noqa: ANN001
        shape = tuple(int(d) for d in shape)
        declared = self.engine._inputs.get(name)
        if declared is None or len(shape) != len(declared):
            return False
        if -1 in declared:
            low, _, high = self.engine.get_tensor_profile_shape(name, 0)
            if not all(lo <= d <= hi for d, lo, hi in zip(shape, low, high)):
                return False
        elif shape != declared:
            return False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.engine._inputs:
            return self._shapes.get(name, self.engine._inputs[name])
        declared = self.engine._outputs[name]
        if len(self._shapes) < len(self.engine._inputs):
            return declared  # -1 where the batch is not known yet
        batch = next(iter(self._shapes.values()))[0]
        return tuple(batch if d == -1 else d for d in declared)

    def set_tensor_address(self, name: str, address: int) -> bool:
        if self.engine.get_tensor_mode(name) == TensorIOMode.NONE:
            return False
        self._addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream_handle) -> bool:  # noqa: ANN001
        import onnxruntime

        names = [*self.engine._inputs, *self.engine._outputs]
        if len(self._shapes) < len(self.engine._inputs) or \
                any(n not in self._addresses for n in names):
            return False
        if self._session is None:
            self._session = onnxruntime.InferenceSession(self.engine._onnx,
                                                         providers=["CPUExecutionProvider"])
        feeds = {}
        for name, shape in self._shapes.items():
            size = int(np.prod(shape)) * 4
            feeds[name] = np.frombuffer(bytes(device.view(self._addresses[name], size)),
                                        np.float32).reshape(shape)
        for name, value in zip(self.engine._outputs, self._session.run(None, feeds)):
            data = np.ascontiguousarray(value, np.float32).tobytes()
            device.view(self._addresses[name], len(data))[:] = data
        return True


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> ICudaEngine | None:
        data = bytes(data)
        if not data.startswith(_ENGINE_MAGIC):
            self.logger.log(ILogger.Severity.ERROR, "Serialization assertion failed: magic tag")
            return None
        header = json.loads(data[len(_ENGINE_MAGIC):])
        if header["version"] != __version__:
            self.logger.log(ILogger.Severity.ERROR, "The engine plan file is not compatible "
                            f"with this version of TensorRT ({header['version']} vs "
                            f"{__version__})")
            return None
        return ICudaEngine(header)
