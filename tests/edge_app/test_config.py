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
    # no default device name: results must not claim a device nobody named (issue 18)
    assert (changed.device.site, changed.device.device) == ("clinic-b", "")
    assert changed.device.unnamed == ["device"]
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


def test_the_data_folder_is_the_users_data_folder_never_the_current_one(tmp_path,
                                                                         monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert EdgeConfig().device.data_dir == str(tmp_path / "xdg" / "sarco-edge")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the spec: absolute paths only
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert EdgeConfig().device.data_dir == str(tmp_path / "home" / ".local" / "share" /
                                               "sarco-edge")
    path = tmp_path / "edge.toml"
    path.write_text('[device]\ndata_dir = "/var/lib/sarco-edge"\n')
    assert load_config(path).device.data_dir == "/var/lib/sarco-edge"


def test_the_protocols_muscles_and_the_borderline_rule_are_read_and_checked(tmp_path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[session]\nmuscles = ["rectus_femoris", "gastrocnemius"]\n'
                    'borderline_level = 0.8\nindependent_frames = 5\n')
    session = load_config(path).session
    assert session.muscles == ("rectus_femoris", "gastrocnemius")
    assert (session.rule.level, session.rule.independent_frames, session.rule.evidence) == \
        (0.8, 5, False)
    path.write_text("[session]\nmuscles = [1, 2]\n")
    with pytest.raises(ConfigError, match="should be a list of strings"):
        load_config(path)
    path.write_text("[session]\nborderline_level = 1.5\n")
    with pytest.raises(ConfigError, match="borderline_level"):
        load_config(path)
