"""The edge app as the device's service: systemd's notify protocol and watchdog on a real
socket, health telemetry in the retained status, and model updates requested over MQTT."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from edge_app.app import assemble
from edge_app.capture import SourceError, SourceSpec
from edge_app.config import EdgeConfig, load_config
from edge_app.deploy.layout import DeviceLayout
from edge_app.deploy.sdnotify import service_notifications
from edge_app.deploy.update import take_request
from sarco_core.wire import schema
from testkit.mosquitto import Collector, MosquittoBroker, requires_mosquitto
from tests.support.edge import DEVICE, SITE, USERS, replay, write_config
from tests.support.paths import REPO


class NotifyListener:
    """systemd's side of the notify protocol: a unix datagram socket, read all the time (a
    full receive queue would block the sender, as it would under systemd)."""

    def __init__(self, folder: Path) -> None:
        self.address = str(folder / "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.address)
        self._sock.settimeout(0.05)
        self.messages: list[tuple[float, bytes]] = []  # (monotonic arrival, datagram)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(64)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data))

    def since(self, mark: float) -> list[bytes]:
        return [data for at, data in list(self.messages) if at > mark]

    def wait_for(self, data: bytes, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.since(0.0).count(data) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture
def systemd():  # noqa: ANN201
    # a short folder: unix socket paths are limited to 107 bytes
    with tempfile.TemporaryDirectory(prefix="sd-") as folder:
        listener = NotifyListener(Path(folder))
        yield listener
        listener.close()


def local_config(bundle: Path, data_dir: Path) -> EdgeConfig:
    return EdgeConfig().override("model", bundle=str(bundle), backend="onnx-cpu") \
        .override("device", data_dir=str(data_dir)).override("display", headless=True)


# ----------------------------------------------------------------------------- systemd


def test_run_says_ready_feeds_the_watchdog_and_says_stopping(video, bundle, tmp_path,
                                                            systemd) -> None:
    """`sarco-edge run` as systemd starts it (Type=notify, WatchdogSec)."""
    config = write_config(tmp_path / "edge.toml", bundle, tmp_path / "data")
    environ = {**os.environ, "NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"}
    device = subprocess.Popen(
        [sys.executable, "-m", "edge_app.cli", "run", "--config", str(config),
         "--source", str(video[0]), "--loop", "--log-level", "warning"],
        cwd=REPO, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # interpreter start, model and video take seconds; then a ping every 0.1 s
        assert systemd.wait_for(b"WATCHDOG=1", 5, 60), systemd.since(0.0)
        device.send_signal(signal.SIGTERM)
        out, err = device.communicate(timeout=60)
    finally:
        if device.poll() is None:
            device.kill()
    assert device.returncode == 0, out + err
    assert systemd.wait_for(b"STOPPING=1", 1, 5)
    messages = systemd.since(0.0)
    assert messages[0] == b"READY=1" and messages[-1] == b"STOPPING=1"
    assert set(messages[1:-1]) == {b"WATCHDOG=1"}


class HangsOnDemand:
    """The real backend, hanging inside its call once told to (a stuck driver call)."""

    def __init__(self, backend) -> None:  # noqa: ANN001
        self.backend = backend
        self.name, self.input_shape = backend.name, backend.input_shape
        self.hang, self.hung, self.release = threading.Event(), threading.Event(), \
            threading.Event()

    def outputs(self, batch):  # noqa: ANN001, ANN201
        if self.hang.is_set() and not self.release.is_set():
            self.hung.set()
            self.release.wait(30)
        return self.backend.outputs(batch)


def test_a_hung_loop_silences_the_watchdog_until_it_beats_again(video, bundle, tmp_path,
                                                               systemd) -> None:
    environ = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "100000"}  # ping: 0.05 s
    edge = assemble(local_config(bundle, tmp_path), SourceSpec("file", str(video[0])),
                    realtime=True, loop=True)
    pipeline = edge.pipeline
    backend = pipeline.backend = HangsOnDemand(pipeline.backend)
    loop = threading.Thread(target=pipeline.run)
    try:
        with service_notifications(lambda: pipeline.last_beat, stall_s=0.5, environ=environ):
            loop.start()
            assert systemd.wait_for(b"WATCHDOG=1", 3, 10)
            backend.hang.set()
            assert backend.hung.wait(30), "no frame reached the model"
            time.sleep(1.0)  # the stall is seen once the last beat is stall_s old
            mark = time.monotonic()
            time.sleep(0.5)
            assert systemd.since(mark) == []  # silent: systemd would restart the service
            backend.release.set()
            deadline = time.monotonic() + 10  # a loaded machine may take longer than one ping
            while b"WATCHDOG=1" not in systemd.since(mark) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert b"WATCHDOG=1" in systemd.since(mark)  # beating again
    finally:
        backend.release.set()
        pipeline.stop()
        loop.join(10)
        edge.close()
    assert systemd.wait_for(b"STOPPING=1", 1, 5)
    assert systemd.since(0.0)[0] == b"READY=1"


def test_the_loop_beats_while_no_video_comes(bundle, tmp_path, systemd) -> None:
    """A card that delivers nothing is waited for (open_timeout_s), not a hang."""
    environ = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "100000"}
    edge = assemble(local_config(bundle, tmp_path), SourceSpec("device", "/dev/video63"))
    outcome: list[Exception] = []

    def run() -> None:
        try:
            edge.pipeline.run(open_timeout_s=2.0)
        except SourceError as exc:
            outcome.append(exc)

    loop = threading.Thread(target=run)
    try:
        with service_notifications(lambda: edge.pipeline.last_beat, stall_s=0.8,
                                   environ=environ):
            loop.start()
            time.sleep(1.2)  # past stall_s since the pipeline was built
            mark = time.monotonic()
            time.sleep(0.5)
            assert b"WATCHDOG=1" in systemd.since(mark)
        loop.join(10)
    finally:
        edge.pipeline.stop()
        edge.close()
    assert outcome and "no video from device /dev/video63" in str(outcome[0])


# ----------------------------------------------------------------------------- MQTT


@requires_mosquitto
def test_a_replay_publishes_its_health_in_the_status(video, bundle, tmp_path) -> None:
    path, truth, _ = video
    with MosquittoBroker(tmp_path / "broker", USERS) as broker:
        collector = Collector(broker, "dashboard", USERS["dashboard"])
        config = write_config(tmp_path / "edge.toml", bundle, tmp_path / "data", broker.url,
                              status_interval_s=0.5)
        done = replay(config, path, "--screening-id", "SCR-0600", "--every-frame")
        assert done.exit_code == 0, done.output
        assert collector.wait_for(lambda m: any(json.loads(d)["state"] == "offline"
                                                for d in collector.of_kind("status")), 15)
        collector.close()
    topic = schema.topic_for(SITE, DEVICE, "status")
    statuses = [schema.decode(topic, data)[1] for data in collector.of_kind("status")]
    (result,) = [json.loads(d) for d in collector.of_kind("result")]
    assert all(status["health"] is not None for status in statuses)
    assert all(status["update"] is None for status in statuses)  # no update on this device
    final = statuses[-1]["health"]  # the clean stop's "offline", after the session
    assert final["frames_processed"] == result["processed_frames"] == len(truth)
    assert final["frames_rejected"] == sum(result["skipped"].values()) \
        == result["processed_frames"] - result["usable_frames"] > 0
    assert final["fps"] > 0 and final["frame_errors"] == 0
    assert final["queue_length"] == 0 == statuses[-1]["queued_results"]  # delivered
    if shutil.which("tegrastats") is None:
        assert final["gpu_load_pct"] is None and final["ram_total_mb"] is None


@requires_mosquitto
def test_an_update_model_command_queues_the_update_request(video, bundle, tmp_path) -> None:
    with MosquittoBroker(tmp_path / "broker", USERS) as broker:
        collector = Collector(broker, "dashboard", USERS["dashboard"])
        (tmp_path / "etc").mkdir()
        config_path = write_config(tmp_path / "etc" / "edge.toml", bundle, tmp_path / "data",
                                   broker.url)
        config = load_config(config_path)
        edge = assemble(config, SourceSpec("file", str(video[0])), realtime=False,
                        config_path=config_path)
        layout = DeviceLayout.from_config(config_path, config.device.data_dir)
        url, digest = "https://models.example.org/v7.sarco-bundle.tar", "5" * 64
        try:
            assert collector.wait_for(lambda m: any(json.loads(d)["state"] == "online"
                                                    for d in collector.of_kind("status")), 30)
            cmd = schema.topic_for(SITE, DEVICE, "cmd")
            for command in ({"command": "update_model", "url": "ftp://example.org/v6.tar"},
                            {"command": "update_model", "url": url, "sha256": digest},
                            {"command": "start_session", "screening_id": "SCR-0700"}):
                collector.publish(cmd, json.dumps({"schema_version": 1, "kind": "cmd",
                                                   **command}))
            # session commands still go to the loop (not running here: they wait in its queue)
            assert edge.pipeline.operator.commands.get(timeout=15) == ("start_session", "SCR-0700")
        finally:
            edge.close()
            collector.close()
    assert layout.request_file == tmp_path / "data" / "update" / "request.json"
    # what `sarco-edge update --from-request` (jetson/sarco-edge-update.service) reads
    assert take_request(layout) == (url, digest)
