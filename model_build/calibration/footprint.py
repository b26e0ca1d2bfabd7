"""Model size and CPU latency of the float and INT8 graphs, side by side.

Measured with ONNX Runtime's CPU provider on one frame at a time (what the device does), after
a warm-up, as the median and 90th percentile of repeated runs. On a desktop x86 CPU an INT8 Q/DQ
graph is often *slower* than float (ONNX Runtime fuses only some Q/DQ patterns into integer
kernels, and a TensorRT-style graph without output quantization leaves many DequantizeLinear
nodes to run): INT8 pays off in TensorRT on the device. The numbers are reported as measured.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model_build.calibration.onnx_run import cpu_session, input_shape


@dataclass(frozen=True)
class Footprint:
    name: str
    megabytes: float
    latency_ms_median: float
    latency_ms_p90: float
    runs: int
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


def measure(name: str, path: Path, runs: int = 30, warmup: int = 5, threads: int = 1) -> Footprint:
    """Latency of one-frame batches (input: fixed noise from seed 0)."""
    session = cpu_session(path, threads=threads)
    frame = np.random.default_rng(0).standard_normal((1, *input_shape(path))).astype(np.float32)
    feed = {session.get_inputs()[0].name: frame}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - started) * 1000.0)
    return Footprint(name=name, megabytes=path.stat().st_size / 1e6, latency_ms_median=float(np.median(times)),
                     latency_ms_p90=float(np.percentile(times, 90)), runs=runs, threads=threads)


def compare(float_path: Path, int8_path: Path, runs: int = 30, threads: int = 1) -> list[Footprint]:
    """Float, then INT8, each after its own warm-up, on the same input and thread count."""
    return [measure("float", float_path, runs, threads=threads), measure("int8", int8_path, runs, threads=threads)]
