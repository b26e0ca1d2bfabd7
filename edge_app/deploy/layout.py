"""Where deployment keeps things on the device. Every path derives from two folders, so tests
(and a second installation) use any folder instead of /etc and /var/lib::

    /etc/sarco-edge/                 config_dir (root-owned, readable by the service)
      edge.toml                      the edge app's config (docs/edge.md)
      trusted_keys/*.pub             Ed25519 public keys whose signatures the device accepts
    /var/lib/sarco-edge/             data_dir = [device] data_dir of edge.toml
      bundles/<version>/bundle/      a signed model bundle, exactly as signed
      bundles/<version>/bundle.engines/   TensorRT engines built here for it
      bundles/<version>/signature.json
      bundles/current -> <version>   what the service runs
      bundles/previous -> <version>  what `sarco-edge rollback` goes back to
      update/                        requests, downloads, last outcome, history
      tensorrt-timing-<platform>.cache

No new config keys: the layout follows from where edge.toml is and from its data_dir.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/sarco-edge/edge.toml")


@dataclass(frozen=True)
class DeviceLayout:
    config_dir: Path = DEFAULT_CONFIG.parent
    data_dir: Path = Path("/var/lib/sarco-edge")

    @classmethod
    def from_config(cls, config_path: Path, data_dir: str) -> DeviceLayout:
        """``config_path`` is edge.toml; ``data_dir`` its [device] data_dir."""
        return cls(config_dir=Path(config_path).absolute().parent,
                   data_dir=Path(data_dir).absolute())

    @property
    def trusted_keys(self) -> Path:
        return self.config_dir / "trusted_keys"

    @property
    def bundles(self) -> Path:
        return self.data_dir / "bundles"

    @property
    def current_bundle(self) -> Path:
        """What [model] bundle points to in the service's config."""
        return self.bundles / "current" / "bundle"

    @property
    def update_dir(self) -> Path:
        return self.data_dir / "update"

    @property
    def request_file(self) -> Path:
        """Written by the app on an MQTT update command; a systemd path unit starts the update."""
        return self.update_dir / "request.json"

    @property
    def last_update(self) -> Path:
        return self.update_dir / "last-update.json"

    @property
    def history(self) -> Path:
        return self.update_dir / "history.jsonl"

    def timing_cache(self, platform_key: str) -> Path:
        """One TensorRT timing cache per TensorRT version and GPU, shared by all bundles."""
        return self.data_dir / f"tensorrt-timing-{platform_key}.cache"
