"""Health telemetry: ``tegrastats`` (GPU and CPU load, temperatures, power rails, memory) plus
the app's own figures (fps, frames rejected, queue length), shaped for the MQTT status topic.

``tegrastats`` prints one line per interval; its fields differ between modules and JetPack
releases (JetPack 6 prefixes a date, reports engine frequencies, and AGX Orin has other power
rails and disabled sensors at -256 C), so the parser looks for each field on its own and
leaves out what a line does not have. Recorded lines of each format are in
tests/data/tegrastats/.

The status payload's schema (sarco_core.wire.schema, shared with the dashboard) defines the two
nested objects this module fills, ``health`` (:data:`~sarco_core.wire.schema.HEALTH_FIELDS`) and
``update`` (:data:`~sarco_core.wire.schema.UPDATE_FIELDS`); they live there, not here, because
the dashboard validates with that module and must not import the deployment code.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from edge_app.deploy.layout import DeviceLayout
from sarco_core.errors import SarcoError
from sarco_core.files import read_json
from sarco_core.update import DeployError
from sarco_core.wire import schema

log = logging.getLogger("edge_app.deploy.telemetry")

_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_CORE = re.compile(r"^(\d+)%(?:@\d+)?$")
_GPU = re.compile(r"\bGR3D_FREQ (\d+)%")
_TEMPERATURE = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?\b")
# sensors that report a fixed placeholder, and the value of a disabled one
_PLACEHOLDER_SENSORS = {"PMIC"}
_DISABLED_BELOW_C = -40.0
_TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # board/module input, where the module measures it


class TegrastatsError(SarcoError, ValueError):
    """A line that is not tegrastats output."""


@dataclass(frozen=True)
class TegraSample:
    ram_used_mb: int
    ram_total_mb: int
    swap_used_mb: int | None
    cpu_loads_pct: tuple[float | None, ...]  # None: core offline
    gpu_load_pct: float | None
    temperatures_c: dict[str, float]
    rails_mw: dict[str, tuple[int, int]]  # rail -> (now, running average)

    @property
    def cpu_load_pct(self) -> float | None:
        """Mean over the cores that are online."""
        online = [load for load in self.cpu_loads_pct if load is not None]
        return sum(online) / len(online) if online else None

    @property
    def temp_max_c(self) -> float | None:
        """The hottest real sensor (placeholders and disabled sensors left out)."""
        real = [t for name, t in self.temperatures_c.items()
                if name.upper() not in _PLACEHOLDER_SENSORS and t > _DISABLED_BELOW_C]
        return max(real) if real else None

    @property
    def power_mw(self) -> int | None:
        """Module input power where a rail measures it (VDD_IN), else the sum of the rails
        (AGX Orin has no input rail)."""
        for rail in _TOTAL_RAILS:
            if rail in self.rails_mw:
                return self.rails_mw[rail][0]
        return sum(now for now, _ in self.rails_mw.values()) if self.rails_mw else None


def parse_tegrastats(line: str) -> TegraSample:
    ram = _RAM.search(line)
    if ram is None:
        raise TegrastatsError(f"not a tegrastats line (no 'RAM used/totalMB'): {line[:80]!r}")
    swap = _SWAP.search(line)
    cpu = _CPU.search(line)
    gpu = _GPU.search(line)
    return TegraSample(
        ram_used_mb=int(ram.group(1)), ram_total_mb=int(ram.group(2)),
        swap_used_mb=int(swap.group(1)) if swap else None,
        cpu_loads_pct=tuple(_core_load(entry) for entry in cpu.group(1).split(","))
        if cpu else (),
        gpu_load_pct=float(gpu.group(1)) if gpu else None,
        temperatures_c={name: float(value) for name, value in _TEMPERATURE.findall(line)},
        rails_mw={name: (int(now), int(mean)) for name, now, mean in _RAIL.findall(line)
                  if name not in ("RAM", "SWAP")},
    )


def _core_load(entry: str) -> float | None:
    entry = entry.strip()
    match = _CORE.match(entry)
    if match:
        return float(match.group(1))
    if entry == "off":
        return None
    raise TegrastatsError(f"CPU entry {entry!r}: expected 'N%@MHz' or 'off'")


def parse_lines(lines: Iterable[str]) -> tuple[list[TegraSample], int]:
    """Parse recorded output; returns the samples and how many non-blank lines were rejected."""
    samples, rejected = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            samples.append(parse_tegrastats(line))
        except TegrastatsError:
            rejected += 1
    return samples, rejected


# --------------------------------------------------------------------------- live sampling


class TegrastatsMonitor:
    """Runs ``tegrastats --interval MS`` and keeps the newest sample. Without tegrastats (not
    a Jetson) it stays empty: app metrics are still reported."""

    def __init__(self, interval_ms: int = 5000, executable: str = "tegrastats") -> None:
        self.interval_ms = interval_ms
        self.executable = executable
        self._latest: tuple[float, TegraSample] | None = None
        self._process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._fresh = threading.Condition()
        self._count = 0

    def start(self) -> bool:
        path = shutil.which(self.executable)
        if path is None:
            log.info("no tegrastats", extra={"event": "tegrastats_missing"})
            return False
        self._process = subprocess.Popen([path, "--interval", str(self.interval_ms)],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True)
        self._thread = threading.Thread(target=self._read, name="tegrastats", daemon=True)
        self._thread.start()
        return True

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                sample = parse_tegrastats(line)
            except TegrastatsError:
                continue
            with self._fresh:
                self._latest = (time.monotonic(), sample)
                self._count += 1
                self._fresh.notify_all()

    def latest(self) -> TegraSample | None:
        """The newest sample, or None if none came in the last three intervals."""
        if self._latest is None:
            return None
        at, sample = self._latest
        return sample if time.monotonic() - at <= 3 * self.interval_ms / 1000 else None

    def next_sample(self, timeout_s: float) -> TegraSample | None:
        """Wait for a line newer than the newest one seen so far."""
        with self._fresh:
            seen = self._count
            self._fresh.wait_for(lambda: self._count > seen, timeout_s)
            return self._latest[1] if self._count > seen and self._latest else None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._thread is not None:
            self._thread.join(timeout=2)


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class AppMetrics:
    """What the running app knows about itself."""

    fps: float  # frames processed per second, recent
    frames_processed: int
    frames_rejected: int  # held back by the quality gate
    frame_errors: int
    queue_length: int | None  # results waiting in the outbox; None without MQTT


def tegra_fields(sample: TegraSample | None) -> dict[str, Any]:
    """The tegrastats part of ``health`` (nulls without a sample)."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(float(value), 1)

    return {
        "gpu_load_pct": rounded(sample.gpu_load_pct) if sample else None,
        "cpu_load_pct": rounded(sample.cpu_load_pct) if sample else None,
        "temp_max_c": rounded(sample.temp_max_c) if sample else None,
        "power_mw": sample.power_mw if sample else None,
        "ram_used_mb": sample.ram_used_mb if sample else None,
        "ram_total_mb": sample.ram_total_mb if sample else None,
        "swap_used_mb": sample.swap_used_mb if sample else None,
    }


def health_fields(sample: TegraSample | None, metrics: AppMetrics) -> dict[str, Any]:
    """The ``health`` object of the status payload (every key present, null if unknown)."""
    return {
        **tegra_fields(sample),
        "fps": round(min(float(metrics.fps), schema.MAX_FPS), 2),  # replays can run faster
        "frames_processed": metrics.frames_processed,
        "frames_rejected": metrics.frames_rejected,
        "frame_errors": metrics.frame_errors,
        "queue_length": metrics.queue_length,
    }


def update_fields(layout: DeviceLayout) -> dict[str, Any] | None:
    """The last update's outcome (``update/last-update.json``), or None if there was none."""
    if not layout.last_update.is_file():
        return None
    try:
        outcome = read_json(layout.last_update, DeployError)
    except DeployError:
        return None
    return {key: outcome.get(key) for key in schema.UPDATE_FIELDS}


def status_extras(layout: DeviceLayout, monitor: TegrastatsMonitor,
                  metrics: Callable[[], AppMetrics]) -> Callable[[], dict[str, Any]]:
    """For the app's ``status_fields``: ``health`` and ``update``. Each is checked against the
    status schema on its own and sent as null when it breaks it (a hand-edited
    last-update.json, a tegrastats figure out of range), so the status itself always goes out."""

    def extras() -> dict[str, Any]:
        fields = {"health": health_fields(monitor.latest(), metrics()),
                  "update": update_fields(layout)}
        for name, value in fields.items():
            try:
                schema.validate_field("status", name, value)
            except schema.PayloadError as exc:
                log.warning("status field left out", extra={"event": "status_field_invalid",
                                                             "error": str(exc)})
                fields[name] = None
        return fields

    return extras
