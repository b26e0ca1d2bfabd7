"""results.json's ``provenance``: the software and machine settings that decide the run's last digits.

Same seed, same cohort and the same provenance should give the same results.json; when two runs
differ, this block is where a reader looks first. Float sums in torch's CPU kernels are ordered
by the thread count and by the oneDNN (MKL-DNN) kernels, which follow the CPU's instruction set,
so those are recorded beside the library versions and the thread variables of the environment.
The values are read when results.json is written, after the trainings set the thread count and
torch's deterministic mode (:meth:`model_build.models.train.Trainer._start`).
"""

from __future__ import annotations

import os
import platform
import re
from importlib import import_module
from pathlib import Path

import torch

PACKAGES = ("torch", "numpy", "onnxruntime", "sklearn")
"""Read from the imported module, not the distribution: onnxruntime ships as onnxruntime-gpu too."""
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_CBWR",
                    "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "ATEN_CPU_CAPABILITY")
"""Environment variables that change thread counts or which kernels run (MKL_CBWR: MKL's
conditional numerical reproducibility; *_MAX_CPU_ISA: caps oneDNN's instruction set;
ATEN_CPU_CAPABILITY: caps torch's own vectorised kernels)."""


def provenance() -> dict:
    """``python``, ``packages``, ``torch``, ``cpu`` and ``environment`` of this process, as results.json records it."""
    return {"python": platform.python_version(), "packages": {name: _version(name) for name in PACKAGES},
            "torch": torch_settings(), "cpu": cpu(),
            "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES}}


def _version(module: str) -> str | None:
    try:
        return str(import_module(module).__version__)
    except ImportError:
        return None


def torch_settings() -> dict:
    """Thread counts, oneDNN (available, enabled for this run, its version) and deterministic mode."""
    onednn = re.search(r"(?:MKL-DNN|oneDNN) v([\w.]+)", torch.__config__.show())
    return {"intra_op_threads": torch.get_num_threads(), "inter_op_threads": torch.get_num_interop_threads(),
            "mkldnn_available": torch.backends.mkldnn.is_available(),
            "mkldnn_enabled": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
            "onednn_version": onednn.group(1) if onednn else None,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled()}


def cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU model (Linux's /proc/cpuinfo, else the platform's name) and the cores this process may use."""
    model = None
    if cpuinfo.is_file():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(encoding="utf-8", errors="replace"), re.M)
        model = found.group(1).strip() if found else None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model or platform.processor() or None, "machine": platform.machine(),
            "logical_cores": os.cpu_count(), "usable_cores": usable}
