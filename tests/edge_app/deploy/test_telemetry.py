"""Health telemetry from recorded tegrastats lines (JetPack 5 and 6 formats, several modules),
the status payload it fills, the live tegrastats reader, and systemd's notify protocol."""

from __future__ import annotations

import json
import os
import socket
import stat
import time

import pytest
from typer.testing import CliRunner

from edge_app.deploy.sdnotify import Watchdog, notify, watchdog_interval_s
from edge_app.deploy.telemetry import (
    AppMetrics,
    TegrastatsError,
    TegrastatsMonitor,
    health_fields,
    parse_lines,
    parse_tegrastats,
    status_extras,
)
from sarco_core.wire import schema
from tests.support.deploy import device_layout, edge_app_with_deploy
from tests.support.paths import TEST_DATA

DATA = TEST_DATA / "tegrastats"


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def test_jetpack6_orin_nano_line() -> None:
    busy = parse_tegrastats(lines("jetpack6_orin_nano.txt")[1])
    assert (busy.ram_used_mb, busy.ram_total_mb, busy.swap_used_mb) == (2890, 7620, 0)
    assert busy.cpu_loads_pct == (41.0, 36.0, 52.0, 30.0, 12.0, 9.0)
    assert busy.cpu_load_pct == pytest.approx((41 + 36 + 52 + 30 + 12 + 9) / 6)
    assert busy.gpu_load_pct == 78.0
    assert busy.temp_max_c == 56.218 and busy.temperatures_c["tj"] == 56.218
    assert busy.power_mw == 11240  # VDD_IN now, not its running average
    assert busy.rails_mw["VDD_CPU_GPU_CV"] == (4810, 2640)


def test_jetpack5_orin_nano_line_with_offline_cores_and_no_frequencies() -> None:
    busy = parse_tegrastats(lines("jetpack5_orin_nano.txt")[1])
    assert busy.cpu_loads_pct == (48.0, 44.0, 51.0, 39.0, None, None)
    assert busy.cpu_load_pct == pytest.approx((48 + 44 + 51 + 39) / 4)
    assert (busy.gpu_load_pct, busy.swap_used_mb, busy.power_mw) == (91.0, 12, 9810)


def test_agx_orin_without_an_input_rail_and_with_disabled_sensors() -> None:
    sample = parse_tegrastats(lines("jetpack6_agx_orin.txt")[0])
    assert sample.temperatures_c["CV0"] == -256.0
    assert sample.temp_max_c == 48.25  # the -256 C sensors are switched off, not cold
    assert sample.power_mw == 3208 + 802 + 4410  # no VDD_IN: the sum of the rails
    assert sample.gpu_load_pct == 17.0 and len(sample.cpu_loads_pct) == 12


def test_xavier_placeholder_pmic_sensor_is_ignored() -> None:
    sample = parse_tegrastats(lines("jetpack5_xavier_nx.txt")[0])
    assert sample.temperatures_c["PMIC"] == 50.0
    assert sample.temp_max_c == 47.5 and sample.gpu_load_pct == 35.0


def test_garbage_is_rejected_and_counted() -> None:
    samples, rejected = parse_lines(lines("garbled.txt"))
    assert samples == [] and rejected == 2
    with pytest.raises(TegrastatsError, match="not a tegrastats line"):
        parse_tegrastats("bash: tegrastats: command not found")
    with pytest.raises(TegrastatsError, match="CPU entry"):
        parse_tegrastats("RAM 1/2MB CPU [12%@1510,busy]")


class Recorded:
    """A monitor that hands out a recorded sample instead of running tegrastats."""

    def __init__(self) -> None:
        self.sample = None

    def latest(self):  # noqa: ANN201
        return self.sample


def status_payload(**extras: object) -> dict:
    return {"schema_version": 1, "kind": "status", "site": "clinic-a", "device": "edge-01",
            "state": "online", "at": schema.utc_timestamp(1.0), "app_version": "0.1.0",
            "model": None, "queued_results": 3, **extras}


def test_every_recorded_line_fills_a_valid_status_payload(tmp_path) -> None:
    layout = device_layout(tmp_path)
    layout.update_dir.mkdir(parents=True)
    layout.last_update.write_text(json.dumps({
        "outcome": "rolled_back", "version": "v2", "reason": "self-test failed: fps: 3.1/s",
        "at": schema.utc_timestamp(0.0), "model_sha256": "a" * 64}))
    metrics = AppMetrics(fps=14.96, frames_processed=1200, frames_rejected=310, frame_errors=0,
                         queue_length=3)
    samples = [s for name in sorted(DATA.glob("*.txt"))
               for s in parse_lines(name.read_text().splitlines())[0]]
    assert len(samples) == 6
    monitor = Recorded()
    extras = status_extras(layout, monitor, lambda: metrics)  # type: ignore[arg-type]
    for sample in [None, *samples]:
        monitor.sample = sample
        payload = status_payload(**extras())
        encoded = schema.encode("status", payload)
        assert len(encoded) < schema.MAX_PAYLOAD_BYTES
        assert payload["health"]["gpu_load_pct"] == (None if sample is None else
                                                     sample.gpu_load_pct)
    assert payload["update"]["outcome"] == "rolled_back"
    assert payload["health"]["frames_rejected"] == 310


def test_without_tegrastats_or_an_update_health_has_the_app_figures_only(tmp_path) -> None:
    extras = status_extras(device_layout(tmp_path), TegrastatsMonitor(),
                           lambda: AppMetrics(12.5, 40, 7, 1, None))()
    assert extras["update"] is None  # no update yet
    health = extras["health"]
    assert set(health) == set(schema.HEALTH_FIELDS)
    assert all(health[key] is None for key in ("gpu_load_pct", "cpu_load_pct", "temp_max_c",
                                               "power_mw", "ram_used_mb", "swap_used_mb"))
    assert (health["fps"], health["frames_rejected"], health["queue_length"]) == (12.5, 7, None)
    schema.validate("status", status_payload(**extras))


def test_a_broken_last_update_file_leaves_update_null_not_the_status_out(tmp_path,
                                                                        caplog) -> None:
    layout = device_layout(tmp_path)
    layout.update_dir.mkdir(parents=True)
    # hand-edited: an outcome the schema does not know, and no time
    layout.last_update.write_text(json.dumps({"outcome": "maybe", "version": "v3"}))
    extras = status_extras(layout, Recorded(),  # type: ignore[arg-type]
                           lambda: AppMetrics(1.0, 1, 0, 0, 0))()
    assert extras["update"] is None and extras["health"]["fps"] == 1.0
    assert [r.error for r in caplog.records if r.msg == "status field left out"] == [
        "status.update.outcome: must be one of installed, rolled_back, refused, failed "
        "(got 'maybe')"]
    schema.encode("status", status_payload(**extras))
    layout.last_update.write_text("{not json")
    assert status_extras(layout, Recorded(),  # type: ignore[arg-type]
                         lambda: AppMetrics(1.0, 1, 0, 0, 0))()["update"] is None


def test_live_monitor_reads_a_running_tegrastats(tmp_path, monkeypatch) -> None:
    """A stand-in ``tegrastats`` that prints recorded lines at its interval."""
    fake = tmp_path / "bin" / "tegrastats"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n"
                    f"while true; do cat '{DATA / 'jetpack6_orin_nano.txt'}'; sleep 0.1; done\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monitor = TegrastatsMonitor(interval_ms=200)
    assert monitor.start()
    try:
        sample = monitor.next_sample(timeout_s=5)
        assert sample is not None and sample.ram_total_mb == 7620
        assert monitor.latest() is not None
    finally:
        monitor.stop()
    assert not TegrastatsMonitor(executable="no-such-tegrastats").start()


def test_telemetry_command_prints_health_fields_from_a_recording() -> None:
    runner = CliRunner()
    result = runner.invoke(edge_app_with_deploy(), [
        "telemetry", "--from-file", str(DATA / "jetpack5_orin_nano.txt")])
    assert result.exit_code == 0, result.output
    assert '"gpu_load_pct": 91.0' in result.output and '"power_mw": 9810' in result.output
    garbled = runner.invoke(edge_app_with_deploy(), [
        "telemetry", "--from-file", str(DATA / "garbled.txt")])
    assert garbled.exit_code == 1 and "2 line(s)" in garbled.output


@pytest.fixture
def notify_socket(tmp_path):  # noqa: ANN201
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, {"NOTIFY_SOCKET": str(path)}
    sock.close()


def test_notify_speaks_the_systemd_protocol(notify_socket) -> None:
    sock, environ = notify_socket
    assert notify("READY=1", environ)
    assert sock.recv(64) == b"READY=1"
    assert not notify("READY=1", {})  # not under systemd: nothing to do
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None


def test_watchdog_goes_silent_when_the_loop_stops_beating(notify_socket) -> None:
    sock, environ = notify_socket
    beat = {"at": time.monotonic()}
    dog = Watchdog(lambda: beat["at"], interval_s=0.05, stall_s=0.3, environ=environ).start()
    try:
        assert sock.recv(64) == b"WATCHDOG=1"
        beat["at"] = time.monotonic() - 10  # the loop hangs
        time.sleep(0.2)
        while True:  # drain what was sent before the hang was seen
            sock.settimeout(0.2)
            try:
                sock.recv(64)
            except TimeoutError:
                break
        pings = dog.pings
        time.sleep(0.3)
        assert dog.pings == pings  # silent: systemd will restart the service
    finally:
        dog.stop()


def test_a_replay_faster_than_real_time_reports_the_schemas_largest_frame_rate() -> None:
    """A file replayed without --realtime can process thousands of frames per second; the
    status must still pass the schema (fps <= schema.MAX_FPS), or every status would be lost."""
    fields = health_fields(None, AppMetrics(5000.0, 10, 0, 0, 0))
    assert fields["fps"] == schema.MAX_FPS
