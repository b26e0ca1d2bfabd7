"""Static checks of the Jetson deployment files that CI can run without a Jetson: shellcheck
on every script, systemd-analyze on the units, logrotate on its config, and setup.sh's release
check and config template. What needs the device is in docs/deployment.md."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_app.config import load_config
from tests.support.paths import REPO

JETSON = REPO / "jetson"
SETUP = JETSON / "setup.sh"
UNITS = ("sarco-edge.service", "sarco-edge-update.service", "sarco-edge-update.path")
SHELLCHECK = shutil.which("shellcheck")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
LOGROTATE = shutil.which("logrotate") or ("/usr/sbin/logrotate"
                                          if os.access("/usr/sbin/logrotate", os.X_OK) else None)
RELEASES = {  # first line of /etc/nv_tegra_release, as each L4T release writes it
    "r36.4.3": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
               "DATE: Wed Jan  8 01:49:37 UTC 2025",
    "r35.4.1": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
               "DATE: Tue Aug  1 19:57:35 UTC 2023",
    "r35.1.0": "# R35 (release), REVISION: 1.0, GCID: 31346300, BOARD: t186ref, EABI: aarch64, "
               "DATE: Thu Aug 25 18:41:45 UTC 2022",
    "r32.7.4": "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, "
               "DATE: Fri Jun  9 04:25:08 UTC 2023",
}


def scripts() -> list[Path]:
    return sorted(p for p in JETSON.rglob("*") if p.suffix == ".sh"
                  or (p.is_file() and p.read_bytes()[:2] == b"#!"))


@pytest.mark.skipif(SHELLCHECK is None, reason="needs shellcheck: apt-get install shellcheck")
@pytest.mark.parametrize("script", scripts(), ids=lambda p: p.name)
def test_shellcheck_finds_nothing(script) -> None:
    done = subprocess.run([SHELLCHECK, "--severity=style", str(script)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout


def _verify(folder: Path, names: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", *names], cwd=folder,
                          capture_output=True, text=True)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                    reason="needs systemd-analyze (Debian package systemd)")
def test_units_pass_systemd_analyze_verify(tmp_path) -> None:
    """systemd-analyze insists that ExecStart's program exists; the venv of the device is not
    here, so the copies point at /bin/true. Everything else is verified as shipped, and any
    warning (an unknown key, a bad value: systemd ignores those and carries on) fails."""
    for name in UNITS:
        text = (JETSON / name).read_text()
        assert "/opt/sarco-edge/venv/bin/sarco-edge" in text or name.endswith(".path")
        (tmp_path / name).write_text(text.replace("/opt/sarco-edge/venv/bin/sarco-edge",
                                                  "/bin/true"))
    done = _verify(tmp_path, [f"./{name}" for name in UNITS])
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    # the check is not blind: a misspelt key is reported
    broken = (tmp_path / UNITS[0]).read_text().replace("WatchdogSec=", "WatchdogSek=")
    (tmp_path / "broken.service").write_text(broken)
    assert "WatchdogSek" in _verify(tmp_path, ["./broken.service"]).stderr


def test_the_service_has_what_an_unattended_device_needs() -> None:
    unit = (JETSON / "sarco-edge.service").read_text()
    for setting in ("Restart=always", "WatchdogSec=", "Type=notify", "MemoryMax=",
                    "After=network-online.target dev-video0.device", "User=sarco-edge",
                    "WantedBy=multi-user.target"):
        assert setting in unit
    rule = (JETSON / "99-sarco-capture.rules").read_text()
    assert 'SUBSYSTEM=="video4linux"' in rule and 'TAG+="systemd"' in rule


@pytest.mark.skipif(LOGROTATE is None, reason="needs logrotate: apt-get install logrotate")
def test_logrotate_config_parses(tmp_path) -> None:
    """Run in debug mode (nothing is rotated) on a copy whose paths point into tmp_path; the
    owner in `create` becomes the current user so the check runs unprivileged."""
    import getpass
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    text = (JETSON / "logrotate-sarco-edge").read_text()
    text = text.replace("/var/lib/sarco-edge", str(tmp_path / "data"))
    text = re.sub(r"create (\d+) \S+ \S+", rf"create \1 {getpass.getuser()} {group}", text)
    (tmp_path / "data" / "update").mkdir(parents=True)
    (tmp_path / "data" / "results.jsonl").write_text('{"x": 1}\n')
    config = tmp_path / "logrotate.conf"
    config.write_text(text)
    done = subprocess.run([LOGROTATE, "--debug", "--state", str(tmp_path / "state"),
                           str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr.lower(), done.stderr
    assert "results.jsonl" in done.stderr


@pytest.mark.parametrize("release, ok, words", [
    ("r36.4.3", True, "JetPack 6.1/6.2, TensorRT 10.3, CUDA 12.6"),
    ("r35.4.1", True, "JetPack 5.1.x, TensorRT 8.5, CUDA 11.4"),
    ("r35.1.0", False, "JetPack 5.0.x (TensorRT 8.4): unsupported"),
    ("r32.7.4", False, "R32.7.4: unsupported JetPack"),
    (None, False, "not a Jetson"),
])
def test_setup_checks_the_release_and_refuses_clearly(tmp_path, release, ok, words) -> None:
    release_file = tmp_path / "nv_tegra_release"
    if release is not None:
        release_file.write_text(RELEASES[release] + "\n")
    done = subprocess.run(["bash", str(SETUP), "--check-only"], capture_output=True, text=True,
                          env={**os.environ, "SARCO_L4T_RELEASE_FILE": str(release_file)})
    assert (done.returncode == 0) is ok
    assert words in done.stdout + done.stderr


def test_setup_writes_a_config_the_edge_app_accepts(tmp_path) -> None:
    done = subprocess.run(["bash", str(SETUP), "--print-config", "--site", "clinic-b",
                           "--device", "edge-07", "--broker", "mqtts://dash.example.org:8883",
                           "--mqtt-password-file", "pw.txt"],
                          capture_output=True, text=True, check=True)
    path = tmp_path / "edge.toml"
    path.write_text(done.stdout)
    config = load_config(path)
    assert (config.device.site, config.device.device, config.mqtt.username) == \
        ("clinic-b", "edge-07", "edge-07")
    assert config.model.bundle == "/var/lib/sarco-edge/bundles/current/bundle"
    assert config.model.engine.endswith("bundle.engines/selected.engine")
    assert config.mqtt.password_file == "/etc/sarco-edge/mqtt-password"
    assert config.measure.enabled and config.measure.model == "/opt/sarco-edge/models/aponeurosis"
    refused = subprocess.run(["bash", str(SETUP), "--print-config", "--device", "Edge 7"],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "lower-case" in refused.stderr


def test_setup_must_run_as_root_for_an_install() -> None:
    command = ["bash", str(SETUP)]
    if os.geteuid() == 0:  # CI runs as root: drop to nobody to see the refusal
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): cannot drop privileges")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode != 0 and "run as root" in done.stderr


def test_container_recipe_copies_files_that_exist() -> None:
    dockerfile = (JETSON / "container" / "Dockerfile").read_text()
    root = JETSON.parent
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), f"Dockerfile copies missing {source}"
    assert 'CMD ["run", "--config", "/etc/sarco-edge/edge.toml"]' in dockerfile
