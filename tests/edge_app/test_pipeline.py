"""The whole edge app on synthetic scanner videos: frames -> gate -> preprocessing -> ONNX
Runtime -> session result -> snapshots, local log and a real Mosquitto broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from edge_app.app import assemble
from edge_app.capture import EndOfStream, SourceSpec
from edge_app.config import EdgeConfig, load_config
from edge_app.locallog import ResultLog
from edge_app.stages import device_preprocessor
from sarco_core.bundle import load_device_bundle
from sarco_core.imaging.pixels import box_iou, crop, to_grey, to_grey_u8
from sarco_core.imaging.region import find_scan_region
from sarco_core.preprocess import Preprocessor
from sarco_core.wire import schema
from testkit.mosquitto import Collector, MosquittoBroker, free_port, requires_mosquitto
from tests.support.edge import (
    DEVICE,
    SITE,
    USERS,
    make_bundle,
    replay,
    run_cli,
    synthetic_scanner_video,
    write_config,
)
from tests.support.paths import REPO


def wait_for_event(condition, timeout_s: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ----------------------------------------------------------------------------- frame level


def test_frames_without_tissue_never_count_and_the_region_is_found(video, bundle,
                                                                   tmp_path) -> None:
    path, truth, true_box = video
    config = EdgeConfig().override("model", bundle=str(bundle), backend="onnx-cpu") \
        .override("device", data_dir=str(tmp_path)).override("display", headless=True) \
        .override("session", min_usable_frames=5)
    edge = assemble(config, SourceSpec("file", str(path)), realtime=False)
    pipeline = edge.pipeline
    assert pipeline.start_session("SCR-0001")
    pipeline.grabber.start()
    counted = []
    while True:
        try:
            frame = pipeline.grabber.latest(timeout=10)
        except EndOfStream:
            break
        usable_before = pipeline.session.usable_frames
        pipeline.process(frame)
        if pipeline.session.usable_frames > usable_before:
            counted.append(truth[frame.index])
    result = pipeline.end_session()
    edge.close()
    assert counted and set(counted) == {"tissue"}
    assert box_iou(pipeline.screen.region, true_box) > 0.85
    assert result["usable_frames"] == len(counted)
    assert result["processed_frames"] == len(truth)
    # every skipped frame has its reason; a lifted probe seen through a region found on a
    # lifted frame looks "frozen" until the region is found again on tissue
    assert sum(result["skipped"].values()) == len(truth) - len(counted)
    assert result["skipped"]["frozen"] >= truth.count("frozen")
    assert (result["decision"] == "sarcopenia") == (result["probability"] >= 0.5)


def test_the_device_feeds_the_model_what_training_would(video, bundle) -> None:
    """Training preprocesses a whole frame (region search included); the device crops to its
    tracked region first. On the same region the model input must be identical."""
    path, truth, _ = video
    device_bundle = load_device_bundle(bundle)
    training = Preprocessor(device_bundle.preprocess)
    device = device_preprocessor(device_bundle)
    capture = cv2.VideoCapture(str(path))
    compared = 0
    for state in truth:
        ok, frame = capture.read()
        if state != "tissue" or compared >= 3:
            continue
        region = find_scan_region(to_grey(frame))  # what training's Preprocessor finds
        np.testing.assert_array_equal(device(crop(frame, region)), training(frame))
        # the device finds its region on the 8-bit grey frame: the same box
        assert box_iou(find_scan_region(to_grey_u8(frame)), region) > 0.98
        compared += 1
    assert compared == 3


class TypedKeys:
    """An operator typing into the window: one key per frame shown."""

    def __init__(self, keys: list[int | None]) -> None:
        self.keys = keys

    def poll_key(self) -> int | None:
        return self.keys.pop(0) if self.keys else None


class FailsOnce:
    """The real backend, failing on its third frame (as a driver hiccup would)."""

    def __init__(self, backend) -> None:  # noqa: ANN001
        self.backend, self.calls = backend, 0
        self.name, self.input_shape = backend.name, backend.input_shape

    def outputs(self, batch):  # noqa: ANN001, ANN201
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("injected inference failure")
        return self.backend.outputs(batch)


def test_one_bad_frame_is_skipped_and_the_session_goes_on(video, bundle, tmp_path) -> None:
    config = EdgeConfig().override("model", bundle=str(bundle), backend="onnx-cpu") \
        .override("device", data_dir=str(tmp_path)).override("display", headless=True) \
        .override("session", min_usable_frames=5)
    edge = assemble(config, SourceSpec("file", str(video[0])), realtime=False)
    edge.pipeline.backend = FailsOnce(edge.pipeline.backend)
    result = edge.replay_session("SCR-0400")
    edge.close()
    assert edge.pipeline.stats.errors == 1
    assert result["processed_frames"] == len(video[1]) - 1  # the failed frame is not counted
    assert result["usable_frames"] > 5


def test_the_operator_types_an_id_and_starts_and_ends_with_enter(video, bundle,
                                                                 tmp_path) -> None:
    path, truth, _ = video
    keys: list[int | None] = [ord(c) for c in "Jane"] + [13]  # a name: refused
    keys += [8] * 4 + [ord(c) for c in "SCR-0009"] + [13] + [None] * 40 + [13]
    config = EdgeConfig().override("model", bundle=str(bundle), backend="onnx-cpu") \
        .override("device", data_dir=str(tmp_path)).override("display", headless=True) \
        .override("session", min_usable_frames=1)
    edge = assemble(config, SourceSpec("file", str(path)), realtime=False)
    pipeline = edge.pipeline
    pipeline.operator.keys = TypedKeys(keys)
    pipeline.run()
    edge.close()
    (result,) = ResultLog(tmp_path / "results.jsonl").read()
    assert result["screening_id"] == "SCR-0009"
    # "Jane" + Enter was refused (no session "Jane" exists); the session started with the
    # Enter after "SCR-0009" and the next Enter ended it 41 frames later
    assert result["processed_frames"] == 41


# ----------------------------------------------------------------------------- with a broker


@requires_mosquitto
def test_replay_publishes_live_readings_and_one_result(video, bundle, tmp_path) -> None:
    path, truth, _ = video
    with MosquittoBroker(tmp_path / "broker", USERS) as broker:
        collector = Collector(broker, "dashboard", USERS["dashboard"])
        config = write_config(tmp_path / "edge.toml", bundle, tmp_path / "data", broker.url)
        done = replay(config, path, "--screening-id", "SCR-0042", "--every-frame")
        assert done.exit_code == 0, done.output
        assert "published to the broker" in done.stdout
        assert collector.wait_for(lambda m: collector.of_kind("result"), 30)
        collector.wait_for(lambda m: any(json.loads(d)["state"] == "offline"
                                         for d in collector.of_kind("status")), 10)
        collector.close()
    messages = {kind: [schema.decode(schema.topic_for(SITE, DEVICE, kind), data)[1]
                       for data in collector.of_kind(kind)] for kind in ("result", "live",
                                                                         "status")}
    (result,) = messages["result"]
    assert result["screening_id"] == "SCR-0042" and result["processed_frames"] > 0
    lives = messages["live"]
    assert len(lives) >= 5 and {live["session_id"] for live in lives} == {result["session_id"]}
    assert [live["frame"] for live in lives] == sorted(live["frame"] for live in lives)
    assert {live["quality"] for live in lives} >= {"ok", "no_tissue"}
    assert [s["state"] for s in messages["status"]][-1] == "offline"
    # the same result in the local log, and the screen snapshots
    logged = [json.loads(line) for line in (tmp_path / "data" / "results.jsonl").read_text()
              .splitlines()]
    assert logged == [result]
    snapshots = tmp_path / "data" / "snapshots"
    for stem in ("live", f"result-{result['result_id']}"):
        image = cv2.imread(str(snapshots / f"{stem}.png"))
        assert image.shape == (480, 800, 3)
        assert image.std() > 10  # a drawn screen, not a blank
    shown = json.loads((snapshots / f"result-{result['result_id']}.json").read_text())
    assert shown["mode"] == "result" and shown["result"]["decision"] == result["decision"]


@requires_mosquitto
def test_broker_killed_mid_session_the_result_arrives_once(video, bundle, tmp_path) -> None:
    """A real-time replay (as from a live feed) while the broker is SIGKILLed and restarted."""
    path, _, _ = video
    with MosquittoBroker(tmp_path / "broker", USERS, persistent=True) as broker:
        collector = Collector(broker, "dashboard", USERS["dashboard"], persistent_session=True)
        config = load_config(write_config(tmp_path / "edge.toml", bundle, tmp_path / "data",
                                          broker.url))
        edge = assemble(config, SourceSpec("file", str(path)), realtime=True)
        outcome: dict = {}
        device = threading.Thread(target=lambda: outcome.update(edge.replay_session("SCR-0043")))
        device.start()
        try:
            assert collector.wait_for(lambda m: len(collector.of_kind("live")) >= 3, 60)
            broker.kill()  # mid-session
            assert wait_for_event(lambda: not edge.link.state.connected, 30)
            live_before = len(collector.of_kind("live"))
            broker.start()
            assert wait_for_event(lambda: edge.link.state.connected, 30)
            device.join(60)
            assert not device.is_alive() and outcome["screening_id"] == "SCR-0043"
            assert edge.close(drain_timeout_s=30) == 0
        finally:
            edge.pipeline.stop()
            device.join(10)
        assert collector.wait_for(lambda m: collector.of_kind("result"), 30)
        collector.close()
    results = [json.loads(d) for d in collector.of_kind("result")]
    assert {r["result_id"] for r in results} == {outcome["result_id"]}
    assert len(collector.of_kind("live")) > live_before  # live readings resumed


@requires_mosquitto
def test_broker_down_at_start_the_result_waits_then_goes_first(video, bundle,
                                                               tmp_path) -> None:
    path, _, _ = video
    port = free_port()
    config = write_config(tmp_path / "edge.toml", bundle, tmp_path / "data",
                          f"mqtt://127.0.0.1:{port}", drain_timeout_s=0.5)
    first = replay(config, path, "--screening-id", "SCR-0101", "--every-frame")
    assert first.exit_code == 0, first.output
    assert "wait in the outbox" in first.stdout and "cannot reach" in first.stdout
    with MosquittoBroker(tmp_path / "broker", USERS, port=port) as broker:
        # up, but no dashboard subscribed: the broker answers 0x10 and the results stay
        config = write_config(tmp_path / "edge.toml", bundle, tmp_path / "data", broker.url,
                              drain_timeout_s=2)
        lonely = replay(config, path, "--screening-id", "SCR-0102", "--every-frame")
        assert lonely.exit_code == 0, lonely.output
        assert "2 result(s) wait in the outbox" in lonely.stdout
        assert "no dashboard is subscribed" in lonely.stdout
        collector = Collector(broker, "dashboard", USERS["dashboard"])
        config = write_config(tmp_path / "edge.toml", bundle, tmp_path / "data", broker.url,
                              drain_timeout_s=30)
        last = replay(config, path, "--screening-id", "SCR-0103", "--every-frame")
        assert last.exit_code == 0, last.output
        assert collector.wait_for(lambda m: len(collector.of_kind("result")) >= 3, 30)
        collector.close()
    results = [json.loads(d) for d in collector.of_kind("result")]
    assert [r["screening_id"] for r in results] == ["SCR-0101", "SCR-0102", "SCR-0103"]
    assert results[0]["seq"] < results[1]["seq"] < results[2]["seq"]


def test_a_full_outbox_refuses_new_sessions_and_says_why(video, bundle, tmp_path) -> None:
    config = load_config(write_config(tmp_path / "edge.toml", bundle, tmp_path / "data",
                                      f"mqtt://127.0.0.1:{free_port()}", outbox_capacity=1))
    edge = assemble(config, SourceSpec("file", str(video[0])), realtime=False)
    try:
        pipeline = edge.pipeline
        assert pipeline.start_session("SCR-0301")
        first = pipeline.end_session()  # queued: no broker listens there
        assert not pipeline.start_session("SCR-0302")
        assert "outbox full (1 result(s) unsent)" in pipeline.screen.notice
        assert [item.result_id for item in edge.outbox.pending()] == [first["result_id"]]
    finally:
        assert edge.close() == 1  # the result stays on disk for the next run


def test_a_clock_step_during_a_session_loses_nothing(video, bundle, tmp_path,
                                                     monkeypatch) -> None:
    """NTP may step a Jetson's clock (no RTC battery) back mid-session: the result's start is
    taken back from its end by the session's monotonic length, so it is still queued."""
    config = load_config(write_config(tmp_path / "edge.toml", bundle, tmp_path / "data",
                                      f"mqtt://127.0.0.1:{free_port()}"))
    edge = assemble(config, SourceSpec("file", str(video[0])), realtime=False)
    try:
        pipeline = edge.pipeline
        assert pipeline.start_session("SCR-0303")
        stepped = time.time() - 600
        monkeypatch.setattr("edge_app.session.time.time", lambda: stepped)
        result = pipeline.end_session()
        assert result["started_at"] <= result["ended_at"]
        assert [item.result_id for item in edge.outbox.pending()] == [result["result_id"]]
        logged = ResultLog(tmp_path / "data" / "results.jsonl").read()
        assert logged[-1]["result_id"] == result["result_id"]
    finally:
        monkeypatch.undo()
        edge.close()


# ----------------------------------------------------------------------------- bad input


def test_other_resolution_video_is_handled(bundle, tmp_path_factory, tmp_path) -> None:
    path, truth, _ = synthetic_scanner_video(tmp_path_factory.getbasetemp() / "edge-videos",
                                             "A", seconds=4.0)
    small = tmp_path / "small.avi"
    capture = cv2.VideoCapture(str(path))
    writer = cv2.VideoWriter(str(small), cv2.VideoWriter_fourcc(*"MJPG"), 20, (640, 360))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA))
    writer.release()
    done = run_cli("replay", str(small), "--bundle", str(bundle), "--data-dir", str(tmp_path),
                   "--headless", "--every-frame", "--screening-id", "SCR-0005")
    assert done.exit_code == 0, done.output
    result = json.loads((tmp_path / "results.jsonl").read_text())
    assert result["processed_frames"] == len(truth) and result["usable_frames"] > 0


@pytest.mark.parametrize("case, words", [
    ("corrupt", "cannot decode"), ("empty", "empty (0 bytes)"), ("missing", "no such file"),
])
def test_bad_videos_end_with_a_clear_message(case, words, bundle, tmp_path) -> None:
    video = tmp_path / f"{case}.mp4"
    if case == "corrupt":
        video.write_bytes(os.urandom(50_000))
    elif case == "empty":
        video.write_bytes(b"")
    done = run_cli("replay", str(video), "--bundle", str(bundle), "--data-dir", str(tmp_path),
                   "--headless")
    assert done.exit_code == 2
    assert words in done.stderr and str(video) in done.stderr
    assert done.exception is None or isinstance(done.exception, SystemExit)


def test_a_camera_that_does_not_exist_ends_run_with_a_message(bundle, tmp_path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(f'[model]\nbundle = "{bundle}"\n[device]\ndata_dir = "{tmp_path}"\n'
                      '[capture]\nsource = "/dev/video63"\nopen_timeout_s = 1.0\n'
                      '[display]\nheadless = true\n')
    done = run_cli("run", "--config", str(config))
    assert done.exit_code == 2, done.output
    assert "no video from device /dev/video63" in done.stderr and "v4l2-ctl" in done.stderr


@pytest.mark.parametrize("change, words", [
    (lambda b: (b / "config.json").write_text('{"format_version": 1, "decision_threshold": 0.9,'
                                             ' "image_readout": "softmax"}'), "differs from"),
    (lambda b: (b / "model.engine").write_bytes(b"x"), "not in MANIFEST.sha256"),
    (lambda b: (b / "model.onnx").unlink(), "listed in MANIFEST.sha256 but missing"),
])
def test_a_tampered_bundle_is_refused(change, words, tmp_path, video) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    change(bundle)
    done = run_cli("replay", str(video[0]), "--bundle", str(bundle), "--headless",
                   "--data-dir", str(tmp_path))
    assert done.exit_code == 2 and words in done.stderr


def test_a_physical_pixel_size_model_needs_and_uses_the_scanner_pixel_size(video,
                                                                           tmp_path) -> None:
    bundle = make_bundle(tmp_path / "bundle", field_of_view_mm=40.0)
    without = run_cli("replay", str(video[0]), "--bundle", str(bundle), "--headless",
                      "--data-dir", str(tmp_path))
    assert without.exit_code == 2 and "mm_per_pixel" in without.stderr
    config = tmp_path / "edge.toml"
    config.write_text(f'[model]\nbundle = "{bundle}"\n[capture]\nmm_per_pixel = 0.08\n'
                      f'[device]\ndata_dir = "{tmp_path}"\n[display]\nheadless = true\n')
    done = run_cli("replay", str(video[0]), "--config", str(config), "--every-frame")
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "results.jsonl").read_text())["usable_frames"] > 0


def test_a_config_with_an_unknown_key_is_refused(tmp_path, video) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('[mqtt]\nbrokr = "mqtt://x"\n')
    done = run_cli("replay", str(video[0]), "--config", str(config))
    assert done.exit_code == 2
    assert "unknown key(s) ['brokr']" in done.stderr and str(config) in done.stderr


@requires_mosquitto
def test_run_takes_session_commands_over_mqtt_and_stops_on_sigterm(video, bundle,
                                                                    tmp_path) -> None:
    """`run` on a looping file source; the dashboard starts and ends a session."""
    with MosquittoBroker(tmp_path / "broker", USERS) as broker:
        collector = Collector(broker, "dashboard", USERS["dashboard"])
        config = write_config(tmp_path / "edge.toml", bundle, tmp_path / "data", broker.url)
        device = subprocess.Popen(
            [sys.executable, "-m", "edge_app.cli", "run", "--config", str(config),
             "--source", str(video[0]), "--loop", "--log-level", "warning"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert collector.wait_for(lambda m: device.poll() is not None or any(
                json.loads(d)["state"] == "online" for d in collector.of_kind("status")), 60)
            assert device.poll() is None, device.communicate()
            topic = schema.topic_for(SITE, DEVICE, "cmd")
            collector.publish(topic, json.dumps({"schema_version": 1, "kind": "cmd",
                                                 "command": "start_session",
                                                 "screening_id": "SCR-0200"}))
            assert collector.wait_for(lambda m: len(collector.of_kind("live")) >= 3, 60)
            collector.publish(topic, json.dumps({"schema_version": 1, "kind": "cmd",
                                                 "command": "end_session"}))
            assert collector.wait_for(lambda m: collector.of_kind("result"), 60)
            device.send_signal(signal.SIGTERM)
            out, err = device.communicate(timeout=60)
        finally:
            if device.poll() is None:
                device.kill()
        collector.close()
    assert device.returncode == 0, out + err
    (result,) = [json.loads(d) for d in collector.of_kind("result")]
    assert result["screening_id"] == "SCR-0200"
