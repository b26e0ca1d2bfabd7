"""The device config: the documented example loads, mistakes are named, flags override."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_app.config import ConfigError, EdgeConfig, load_config
from sarco_core.wire.broker import BrokerSettings, read_password_file
from tests.support.paths import REPO

DOCS = REPO / "docs" / "edge.md"


def documented_example(tmp_path: Path) -> Path:
    block = re.search(r"```toml\n(.*?)```", DOCS.read_text(), re.S)
    assert block, "docs/edge.md lost its config example"
    path = tmp_path / "edge.toml"
    path.write_text(block.group(1))
    return path


def test_the_documented_example_loads_and_lists_every_key(tmp_path) -> None:
    config = load_config(documented_example(tmp_path))
    assert config.mqtt.broker.startswith("mqtts://") and config.device.site == "clinic-a"
    # every key of every section is in the example, with the default value where it is one
    text = documented_example(tmp_path).read_text()
    defaults = EdgeConfig()
    for section in ("device", "model", "capture", "quality", "session", "display", "mqtt"):
        for key in vars(getattr(defaults, section)):
            assert re.search(rf"^{key} = ", text, re.M), f"[{section}] {key} is undocumented"


@pytest.mark.parametrize("text, words", [
    ("[mqtt]\nbrokr = 'x'\n", "[mqtt]: unknown key(s) ['brokr']"),
    ("[mqt]\nbroker = 'x'\n", "unknown section(s) ['mqt']"),
    ("[session]\nmin_usable_frames = 'twenty'\n", "min_usable_frames = 'twenty' should be an integer"),
    ("[display]\nheadless = 1\n", "headless = 1 should be true or false"),
    ("[device]\nsite = 'Clinic A'\n", "[device] site 'Clinic A'"),
    ("[session]\naggregation = 'mode'\n", "aggregation 'mode'"),
    ("[model]\nbackend = 'tpu'\n", "backend 'tpu'"),
    ("[mqtt]\nstatus_interval_s = 0\n", "[mqtt] status_interval_s must be > 0"),
    ("[mqtt\n", "not valid TOML"),
])
def test_mistakes_are_named_with_the_file(tmp_path, text: str, words: str) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert words in str(error.value) and str(path) in str(error.value)


def test_flags_override_and_are_checked_like_the_file(tmp_path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text("[capture]\nsource = 0\n[quality]\nsettle_s = 1\n")
    config = load_config(path)
    assert config.capture.source == "0" and config.quality.settle_s == 1.0
    changed = config.override("device", site="clinic-b", device=None)
    assert (changed.device.site, changed.device.device) == ("clinic-b", "edge-01")
    with pytest.raises(ConfigError, match="site"):
        config.override("device", site="Clinic B")


def test_broker_urls_and_password_files(tmp_path) -> None:
    assert BrokerSettings.from_url("mqtts://broker.example.org").port == 8883
    assert BrokerSettings.from_url("mqtt://10.0.0.2:1884").url == "mqtt://10.0.0.2:1884"
    with pytest.raises(ValueError, match="not in the URL") as error:
        BrokerSettings.from_url("mqtt://edge:secret@10.0.0.2")
    assert "secret" not in str(error.value)
    with pytest.raises(ValueError, match="expected mqtt://"):
        BrokerSettings.from_url("http://10.0.0.2")
    empty = tmp_path / "password"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_password_file(empty)
    with pytest.raises(ValueError, match="cannot be read"):
        read_password_file(tmp_path / "missing")
