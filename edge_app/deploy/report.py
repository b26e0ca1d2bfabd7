"""``sarco-edge selftest --report FILE``: what a person sends back after the first run on a
device, so that the code only a Jetson can verify (TensorRT, cuda-python, JetPack) is checked
from one file: the versions of everything on the inference path, the CUDA smoke test, each
engine's metadata and TensorRT build log, the timings and every check's result.

It names the device by its configured site and device ids and holds no patient data.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict
import platform as host
import time
from pathlib import Path
from typing import Any

from edge_app.config import EdgeConfig
from edge_app.deploy.engines import PRECISIONS, engine_path, log_path, read_meta
from edge_app.deploy.selftest import SelftestReport
from edge_app.inference.cuda_runtime import smoke_test
from sarco_core import __version__
from sarco_core.wire.schema import utc_timestamp

L4T_RELEASE = Path("/etc/nv_tegra_release")
PACKAGES = ("tensorrt", "cuda-python", "cuda-bindings", "onnxruntime", "onnxruntime-gpu",
            "numpy", "opencv-python", "paho-mqtt")


def first_device_report(report: SelftestReport, config: EdgeConfig, bundle: Path,
                        l4t_release: Path = L4T_RELEASE) -> dict[str, Any]:
    return {
        "created_at": utc_timestamp(time.time()),
        "sarco_edge": __version__,
        "site": config.device.site,
        "device": config.device.device,
        "system": {"python": host.python_version(), "machine": host.machine(),
                   "kernel": host.release(), "l4t_release": _first_line(l4t_release)},
        "versions": _versions(),
        "cuda": smoke_test().to_dict(),
        "engines": {precision: _engine(bundle, precision) for precision in PRECISIONS},
        "selftest": report.to_dict(),
        "timings": {check.name: check.figures for check in report.checks if check.figures},
        "backend": config.model.backend,
    }


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    try:  # JetPack's TensorRT is a system package that pip may not list
        import tensorrt

        found["tensorrt"] = tensorrt.__version__
    except ImportError:
        pass
    try:  # JetPack's OpenCV (with GStreamer) likewise
        import cv2

        found["opencv"] = cv2.__version__
    except ImportError:
        found["opencv"] = None
    return found


def _engine(bundle: Path, precision: str) -> dict[str, Any] | None:
    engine = engine_path(bundle, precision)
    if not engine.is_file():
        return None
    meta = read_meta(engine)
    log = log_path(engine)
    return {"file": str(engine), "bytes": engine.stat().st_size,
            "meta": None if meta is None else asdict(meta),
            "build_log": log.read_text(encoding="utf-8", errors="replace").splitlines()
            if log.is_file() else None}


def _first_line(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
    except (OSError, IndexError):
        return None
