"""Device configuration: one TOML file (example in docs/edge.md), command-line flags on top.

Every section and key is checked here, in one place: an unknown key or a wrong type is an
error naming the file, the section and the key, because a typo in a config on a remote device
must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6): the same parser from PyPI
    import tomli as tomllib  # type: ignore[no-redef]

from sarco_core.errors import SarcoError
from sarco_core.quality import QualitySettings
from sarco_core.screening import BorderlineRule
from sarco_core.wire.broker import BrokerSettings, read_password_file
from sarco_core.wire.schema import AGGREGATIONS, check_name_part


class ConfigError(SarcoError, ValueError):
    """A config that cannot be used; the message names the file, section and key."""


UNNAMED = "unnamed"  # the site or device name of results when none was given (never published)


def default_data_dir() -> str:
    """The user's data folder (``$XDG_DATA_HOME/sarco-edge``, else
    ``~/.local/share/sarco-edge``), never the current folder: a replay run inside a clone must
    not leave results in its work tree. The device's config names its own (/var/lib/sarco-edge)."""
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return str(root / "sarco-edge")


@dataclass(frozen=True)
class DeviceConfig:
    # empty: not given; results are then published nowhere (edge_app.app refuses a broker)
    site: str = ""
    device: str = ""
    data_dir: str = field(default_factory=default_data_dir)  # outbox, result log, snapshots

    @property
    def unnamed(self) -> list[str]:
        """Which of site and device were not given."""
        return [key for key in ("site", "device") if not getattr(self, key)]


@dataclass(frozen=True)
class EdgeModelConfig:
    bundle: str = ""
    backend: str = "auto"  # auto | tensorrt | onnx-cuda | onnx-cpu
    engine: str = ""  # TensorRT engine built on this device (optional)
    threads: int = 0  # ONNX Runtime intra-op threads; 0 lets it decide


@dataclass(frozen=True)
class CaptureConfig:
    source: str = "0"  # 0, /dev/video0, a GStreamer pipeline, rtsp://..., or a file
    width: int = 0  # 0: leave the device's default
    height: int = 0
    fps: float = 0.0
    fourcc: str = ""  # e.g. MJPG
    mm_per_pixel: float = 0.0  # physical pixel size at the scanner's depth setting; 0: unknown
    open_timeout_s: float = 30.0  # give up at start if no video comes within this time


@dataclass(frozen=True)
class SessionConfig:
    aggregation: str = "mean_logit"
    min_usable_frames: int = 20
    smoothing_s: float = 1.0
    region_recheck_frames: int = 150  # re-detect the scan region every this many frames
    # the borderline rule (sarco_core.screening): the interval's level, how many frames count
    # as independent views at most, and whether the evidential uncertainty widens it
    borderline_level: float = 0.90
    independent_frames: int = 10
    borderline_evidence: bool = False
    # the protocol's muscles, in scanning order, for the checklist (empty: no checklist)
    muscles: tuple[str, ...] = ()

    @property
    def rule(self) -> BorderlineRule:
        return BorderlineRule(self.borderline_level, self.independent_frames,
                              self.borderline_evidence)


@dataclass(frozen=True)
class MeasureConfig:
    """The muscle measurements beside the probability (docs/measurements.md)."""

    enabled: bool = True
    # the aponeurosis model's folder; empty: $SARCO_APONEUROSIS_MODEL, else the repository's
    # models/aponeurosis (jetson/setup.sh installs it and names it here)
    model: str = ""
    backend: str = "onnx-cpu"  # onnx-cpu | onnx-cuda
    threads: int = 1  # ONNX Runtime intra-op threads: the classifier keeps the other cores


@dataclass(frozen=True)
class DisplayConfig:
    headless: bool = False
    width: int = 800
    height: int = 480
    fullscreen: bool = True
    snapshot_interval_s: float = 1.0


@dataclass(frozen=True)
class MqttConfig:
    broker: str = ""  # mqtt://HOST:PORT or mqtts://HOST:PORT; empty: no MQTT
    username: str = ""
    password_file: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    protocol: str = "auto"  # auto (MQTT 5, else 3.1.1) | 5 | 3.1.1
    keepalive_s: int = 30
    live_interval_s: float = 0.2
    status_interval_s: float = 30.0  # the retained status (with health) is refreshed this often
    outbox_capacity: int = 5000
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0
    drain_timeout_s: float = 10.0  # replay: how long to wait for the broker at the end


@dataclass(frozen=True)
class EdgeConfig:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    model: EdgeModelConfig = field(default_factory=EdgeModelConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    quality: QualitySettings = field(default_factory=QualitySettings)
    session: SessionConfig = field(default_factory=SessionConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)

    def override(self, section: str, **values: Any) -> EdgeConfig:
        """A copy with the given keys of ``section`` replaced (None values are ignored), checked
        like the file."""
        values = {k: v for k, v in values.items() if v is not None}
        if not values:
            return self
        current = dataclasses.asdict(getattr(self, section))
        updated = _section(type(getattr(self, section)), {**current, **values},
                           f"command line [{section}]")
        config = dataclasses.replace(self, **{section: updated})
        config.check()
        return config

    def check(self, where: str = "config") -> None:
        """Cross-field rules (ranges and choices)."""
        problems = []
        for key in ("site", "device"):
            problem = getattr(self.device, key) and check_name_part(getattr(self.device, key))
            if problem:
                problems.append(f"[device] {key} {getattr(self.device, key)!r}: {problem}")
        if self.model.backend not in ("auto", "tensorrt", "onnx-cuda", "onnx-cpu"):
            problems.append(f"[model] backend {self.model.backend!r}: use auto, tensorrt, "
                            "onnx-cuda or onnx-cpu")
        if self.measure.backend not in ("onnx-cpu", "onnx-cuda"):
            problems.append(f"[measure] backend {self.measure.backend!r}: use onnx-cpu or "
                            "onnx-cuda")
        if self.measure.threads < 0:
            problems.append("[measure] threads must be >= 0 (0: ONNX Runtime decides)")
        if self.session.aggregation not in AGGREGATIONS:
            problems.append(f"[session] aggregation {self.session.aggregation!r}: use "
                            + ", ".join(AGGREGATIONS))
        if self.mqtt.protocol not in ("auto", "5", "3.1.1"):
            problems.append(f"[mqtt] protocol {self.mqtt.protocol!r}: use auto, 5 or 3.1.1")
        if self.mqtt.status_interval_s <= 0:
            problems.append("[mqtt] status_interval_s must be > 0")
        if self.mqtt.outbox_capacity < 1:
            problems.append("[mqtt] outbox_capacity must be >= 1")
        if self.mqtt.backoff_min_s <= 0 or self.mqtt.backoff_max_s < self.mqtt.backoff_min_s:
            problems.append("[mqtt] need 0 < backoff_min_s <= backoff_max_s")
        if not 0.5 <= self.session.borderline_level < 1.0:
            problems.append("[session] borderline_level must be in [0.5, 1)")
        if self.session.independent_frames < 1:
            problems.append("[session] independent_frames must be >= 1")
        if self.display.width < 320 or self.display.height < 240:
            problems.append("[display] width x height must be at least 320x240")
        if problems:
            raise ConfigError(f"{where}: " + "; ".join(problems))


def load_config(path: Path | None) -> EdgeConfig:
    """Read a TOML config (None: all defaults) and check it."""
    if path is None:
        return EdgeConfig()
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML ({exc})") from None
    sections = {f.name: f.type for f in dataclasses.fields(EdgeConfig)}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"config {path}: unknown section(s) {unknown}; known: "
                          f"{sorted(sections)}")
    built = {}
    for name in sections:
        default = getattr(EdgeConfig(), name)
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"config {path}: [{name}] must be a table")
        built[name] = _section(type(default), table, f"config {path} [{name}]")
    config = EdgeConfig(**built)
    config.check(f"config {path}")
    return config


_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
          tuple: "a list of strings"}


def _section(cls: type, table: dict[str, Any], where: str) -> Any:
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    values = {}
    for name, value in table.items():
        expected = type(getattr(defaults, name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is str and isinstance(value, (Path, int)) and not isinstance(value, bool):
            value = str(value)  # paths, and `source = 0` for the first capture device
        if expected is tuple and isinstance(value, list) and \
                all(isinstance(item, str) and item.strip() for item in value):
            value = tuple(value)
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise ConfigError(f"{where}: {name} = {value!r} should be {_KINDS[expected]}")
        values[name] = value
    return cls(**values)


def broker_settings(config: EdgeConfig) -> BrokerSettings:
    """How this device connects to its broker, from ``[mqtt]`` (the run loop and the self-test
    log in the same way); ValueError naming the bad URL or password file."""
    m = config.mqtt
    password = read_password_file(Path(m.password_file)) if m.password_file else None
    return BrokerSettings.from_url(
        m.broker, username=m.username or None, password=password,
        ca_file=Path(m.ca_file) if m.ca_file else None,
        cert_file=Path(m.cert_file) if m.cert_file else None,
        key_file=Path(m.key_file) if m.key_file else None,
        protocol=m.protocol, keepalive_s=m.keepalive_s,
        backoff_min_s=m.backoff_min_s, backoff_max_s=m.backoff_max_s)
