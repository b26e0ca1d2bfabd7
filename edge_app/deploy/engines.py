"""TensorRT engines beside a bundle: what to build, and whether what was built still fits.

An engine only runs on the GPU and the TensorRT version it was built with, and only computes
the model whose ONNX it came from. So each engine has a metadata file recording exactly that,
and :func:`stale_reason` compares it with the bundle and the platform: a JetPack upgrade, a new
bundle or a damaged engine file means a rebuild. This module is pure Python; the build itself
is edge_app.deploy.tensorrt_build (device only).

Engines live in ``<bundle>.engines/`` next to the bundle folder (never inside it: the manifest
would refuse them), ``model.<precision>.engine`` with ``model.<precision>.json``; the self-test
points ``selected.engine`` at the one the service should use.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sarco_core.bundle import CALIBRATION_CACHE, ONNX, QDQ_ONNX
from sarco_core.files import atomic_write, read_json, sha256_file, write_json
from sarco_core.update import DeployError
from sarco_core.wire.schema import utc_timestamp

ENGINE_FORMAT = 1
PRECISIONS = ("fp16", "int8")
SELECTED = "selected.engine"


@dataclass(frozen=True)
class Platform:
    """What an engine is tied to."""

    tensorrt_version: str  # e.g. "10.3.0"
    gpu_name: str  # e.g. "Orin"
    compute_capability: str  # e.g. "8.7"

    @property
    def tensorrt_major(self) -> int:
        return int(self.tensorrt_version.split(".")[0])

    @property
    def key(self) -> str:
        """A file-name-safe label: ``trt10.3.0-sm87-orin``."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-")
        return f"trt{self.tensorrt_version}-sm{self.compute_capability.replace('.', '')}-{gpu}"


@dataclass(frozen=True)
class BuildPlan:
    """One engine to build: which graph, which builder flags."""

    precision: str  # fp16 | int8
    onnx: Path
    source: str  # float-onnx | qdq-onnx | float-onnx+calibration-cache
    strongly_typed: bool  # TensorRT >= 10: precisions come from the graph's own types
    calibration_cache: Path | None = None


@dataclass(frozen=True)
class BuiltEngine:
    """What one build produced: the serialized engine, how long it took, TensorRT's messages."""

    serialized: bytes
    seconds: float
    log: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineMeta:
    precision: str
    source: str
    onnx_sha256: str
    calibration_cache_sha256: str | None
    strongly_typed: bool
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    engine_sha256: str
    built_at: str
    build_seconds: float
    format_version: int = ENGINE_FORMAT


def engines_dir(bundle: Path) -> Path:
    bundle = Path(bundle)
    return bundle.parent / f"{bundle.name}.engines"


def engine_path(bundle: Path, precision: str) -> Path:
    return engines_dir(bundle) / f"model.{precision}.engine"


def meta_path(engine: Path) -> Path:
    return engine.with_suffix(".json")


def log_path(engine: Path) -> Path:
    """TensorRT's messages while building ``engine``: what a first device report sends back."""
    return engine.with_suffix(".log")


def plan_builds(bundle: Path, platform: Platform) -> tuple[list[BuildPlan], list[str]]:
    """The engines to build for ``bundle`` on ``platform``, and notes on what is left out.

    - FP16 from the float ONNX (opset 17, which every supported parser reads), with the FP16
      builder flag: the baseline the INT8 engine must beat. TensorRT 11 removes that flag
      (deprecated since 10.12), so there no FP16 engine is planned until bundles carry an FP16
      graph for a strongly typed build;
    - INT8 on TensorRT >= 10 from the Q/DQ ONNX, strongly typed (INT8 where the graph
      quantizes, its own FP16/FP32 elsewhere);
    - INT8 on TensorRT 8.x from the float ONNX and the calibration cache only: the 8.5/8.6 ONNX
      parser reads opsets <= 17 and the Q/DQ graph is opset 19 (implicit calibration is
      deprecated from 10.1 and removed in 11, so 10.x never uses the cache).
    """
    bundle = Path(bundle)
    if not (bundle / ONNX).is_file():
        raise DeployError(f"{bundle / ONNX}: not found; the bundle has no ONNX graph")
    major = platform.tensorrt_major
    if major < 8 or (major == 8 and _minor(platform) < 5):
        raise DeployError(f"TensorRT {platform.tensorrt_version}: too old; use JetPack 5.1.x "
                          "(TensorRT 8.5) or JetPack 6.x (TensorRT 10)")
    plans, notes = [], []
    if major < 11:
        plans.append(BuildPlan("fp16", bundle / ONNX, "float-onnx", strongly_typed=False))
    else:
        notes.append(f"no FP16 engine: TensorRT {platform.tensorrt_version} has no FP16 builder "
                     "flag and the bundle has no FP16 graph for a strongly typed build")
    has_qdq, has_cache = (bundle / QDQ_ONNX).is_file(), (bundle / CALIBRATION_CACHE).is_file()
    if major >= 10 and has_qdq:
        plans.append(BuildPlan("int8", bundle / QDQ_ONNX, "qdq-onnx", strongly_typed=True))
    elif major < 10 and has_cache:
        plans.append(BuildPlan("int8", bundle / ONNX, "float-onnx+calibration-cache",
                               strongly_typed=False,
                               calibration_cache=bundle / CALIBRATION_CACHE))
    elif major < 10 and has_qdq:
        notes.append(f"no INT8 engine: TensorRT {platform.tensorrt_version} cannot parse the "
                     f"opset-19 Q/DQ graph ({QDQ_ONNX}); ship the bundle with a TensorRT 8.x "
                     f"{CALIBRATION_CACHE} (sarco-calibrate --target tensorrt-cache)")
    elif has_cache:
        notes.append(f"no INT8 engine: TensorRT {platform.tensorrt_version} needs the Q/DQ "
                     f"graph ({QDQ_ONNX}); the bundle has only a TensorRT 8.x calibration cache")
    else:
        notes.append(f"no INT8 engine: the bundle has neither {QDQ_ONNX} nor "
                     f"{CALIBRATION_CACHE} (run calibration on the workstation)")
    return plans, notes


def _minor(platform: Platform) -> int:
    parts = platform.tensorrt_version.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def read_meta(engine: Path) -> EngineMeta | None:
    """The engine's metadata, or None when it is missing or unreadable (then: rebuild)."""
    try:
        raw = read_json(meta_path(engine), DeployError)
        names = {f.name for f in fields(EngineMeta)}
        if set(raw) != names:
            return None
        return EngineMeta(**raw)
    except (DeployError, TypeError):
        return None


def stale_reason(bundle: Path, plan: BuildPlan, platform: Platform) -> str | None:
    """Why the engine for ``plan`` must be (re)built, or None when it is up to date."""
    engine = engine_path(bundle, plan.precision)
    if not engine.is_file():
        return "not built yet"
    meta = read_meta(engine)
    if meta is None or meta.format_version != ENGINE_FORMAT:
        return "no readable metadata"
    checks = [
        ("TensorRT version", meta.tensorrt_version, platform.tensorrt_version),
        ("GPU", meta.gpu_name, platform.gpu_name),
        ("compute capability", meta.compute_capability, platform.compute_capability),
        ("graph", f"{meta.source} {meta.onnx_sha256}", f"{plan.source} {sha256_file(plan.onnx)}"),
        ("calibration cache", meta.calibration_cache_sha256,
         sha256_file(plan.calibration_cache) if plan.calibration_cache else None),
        ("typing", meta.strongly_typed, plan.strongly_typed),
    ]
    for what, built, now in checks:
        if built != now:
            return f"{what} changed ({built} -> {now})"
    if sha256_file(engine) != meta.engine_sha256:
        return "engine file damaged (its SHA-256 differs from the metadata)"
    return None


def save_engine(bundle: Path, plan: BuildPlan, platform: Platform,
                built: BuiltEngine) -> EngineMeta:
    """Write the engine and its build log, then its metadata (a crash in between leaves an
    engine without metadata, which counts as stale)."""
    engine = engine_path(bundle, plan.precision)
    meta_path(engine).unlink(missing_ok=True)
    atomic_write(engine, built.serialized)
    atomic_write(log_path(engine), "".join(f"{line}\n" for line in built.log).encode())
    meta = EngineMeta(
        precision=plan.precision, source=plan.source, onnx_sha256=sha256_file(plan.onnx),
        calibration_cache_sha256=sha256_file(plan.calibration_cache)
        if plan.calibration_cache else None,
        strongly_typed=plan.strongly_typed, tensorrt_version=platform.tensorrt_version,
        gpu_name=platform.gpu_name, compute_capability=platform.compute_capability,
        engine_sha256=sha256_file(engine), built_at=utc_timestamp(time.time()),
        build_seconds=round(built.seconds, 2))
    write_json(meta_path(engine), asdict(meta), sort_keys=True)
    return meta


@dataclass(frozen=True)
class EngineStatus:
    precision: str
    action: str  # built | up-to-date
    reason: str  # why it was (re)built, or "" when up to date
    meta: EngineMeta | None


def ensure_engines(bundle: Path, platform: Platform,
                   build: Callable[[BuildPlan], BuiltEngine],
                   force: bool = False) -> tuple[list[EngineStatus], list[str]]:
    """Build every planned engine that is missing or stale (all of them with ``force``);
    returns what happened per precision and the planning notes."""
    plans, notes = plan_builds(bundle, platform)
    engines_dir(bundle).mkdir(parents=True, exist_ok=True)
    statuses = []
    for plan in plans:
        reason = "forced" if force else stale_reason(bundle, plan, platform)
        if reason is None:
            statuses.append(EngineStatus(plan.precision, "up-to-date", "",
                                         read_meta(engine_path(bundle, plan.precision))))
            continue
        meta = save_engine(bundle, plan, platform, build(plan))
        statuses.append(EngineStatus(plan.precision, "built", reason, meta))
    return statuses, notes
