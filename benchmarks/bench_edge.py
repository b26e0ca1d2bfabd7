"""Edge app targets (issue 6): a 30 fps synthetic scanner video replayed through the whole
pipeline with the float ONNX model on the CPU, publishing to a real Mosquitto broker.

Prints:
- frame -> live reading latency at a subscriber (capture of the frame to receipt of its live
  message through the broker), p50 / p95 / p99 / max, with every processed frame published;
  target: p95 under 100 ms;
- maximum sustained fps (every frame processed, no pacing, MQTT on);
- both with the muscle measurement (the shipped aponeurosis model on every usable frame, the
  default) and, with ``--compare-measure``, again without it;
- with ``--minutes M``: a soak of M minutes on a looping real-time replay with a session every
  ``--session-s`` seconds; resident memory (RSS) at the start and the end, and its samples.

Model: ``--model BUNDLE``, else the project's deployable network (EfficientNet-Lite0, 128 px,
ImageNet encoder, untrained head: the speed is the real one, the readings are not) exported
with model_build (needs the workstation install). Video: ``--video``, else one written by the
synthetic cohort generator at 30 fps. Needs Debian's ``mosquitto``.

    .venv/bin/python benchmarks/bench_edge.py                 # latency + max fps
    .venv/bin/python benchmarks/bench_edge.py --minutes 30    # plus the 30-minute soak
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_app.app import assemble  # noqa: E402
from edge_app.capture import SourceSpec, video_properties  # noqa: E402
from edge_app.config import EdgeConfig  # noqa: E402
from testkit.mosquitto import MosquittoBroker  # noqa: E402

SITE, DEVICE = "bench", "edge-01"
USERS = {DEVICE: "bench-device", "dashboard": "bench-dashboard"}


class LiveLatency:
    """A subscriber that keeps the receipt time of each live reading (bounded)."""

    def __init__(self, port: int) -> None:
        self.received: dict[int, float] = {}
        self.count = 0
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set("dashboard", USERS["dashboard"])
        self.client.on_connect = lambda c, *a: c.subscribe(f"sarco/v1/{SITE}/{DEVICE}/live")
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(15):
            raise RuntimeError("benchmark subscriber could not subscribe")

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        at = time.monotonic()
        frame = json.loads(message.payload)["frame"]
        with self._lock:
            self.count += 1
            self.received[frame] = at
            if len(self.received) > 8192:
                del self.received[next(iter(self.received))]

    def latencies(self, capture_times: dict[int, float]) -> np.ndarray:
        with self._lock:
            return np.array([self.received[f] - t for f, t in capture_times.items()
                             if f in self.received])

    def reset(self) -> None:
        with self._lock:
            self.received.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_bundle(folder: Path) -> Path:
    """The deployable image network exported to ONNX, in the bundle format."""
    if (folder / "MANIFEST.sha256").exists():
        return folder
    from model_build.models.export import export_onnx
    from model_build.models.fusion import FusionModel, NetworkConfig
    from sarco_core.bundle import write_manifest
    from sarco_core.files import atomic_write, write_json
    from sarco_core.preprocess import PreprocessParams

    folder.mkdir(parents=True, exist_ok=True)
    config = NetworkConfig(modalities=["image"])
    model = FusionModel(config, pretrained=True)
    export_onnx(model.image_scorer(), config.image_size, folder / "model.onnx")
    write_json(folder / "config.json", {
        "format_version": 1, "model": config.to_dict(), "decision_threshold": 0.5,
        "image_readout": "evidential", "classes": ["non_sarcopenia", "sarcopenia"],
        "note": "benchmark only: untrained head"})
    atomic_write(folder / "preprocessing.json",
               PreprocessParams(size=config.image_size).to_json() + "\n")
    write_manifest(folder)
    return folder


def build_video(folder: Path, seconds: float) -> Path:
    from model_build.synth.media import participant_muscle
    from model_build.synth.profiles import PROFILES
    from model_build.synth.video import write_scan_video

    path = folder / f"scan-30fps-{seconds:g}s.mp4"
    if not path.exists():
        rng = np.random.default_rng(6)
        profile = dataclasses.replace(PROFILES["A"], fps=30.0)
        muscles = [participant_muscle(m, "F", (0.0, 0.0, 0.0), rng).view(rng)
                   for m in ("rectus_femoris", "gastrocnemius")]
        write_scan_video(path, muscles, profile, rng, seconds=seconds)
    return path


def edge_config(bundle: Path, data_dir: Path, broker: MosquittoBroker, threads: int,
                measure: bool = True) -> EdgeConfig:
    (data_dir / "password").parent.mkdir(parents=True, exist_ok=True)
    (data_dir / "password").write_text(USERS[DEVICE])
    return (EdgeConfig()
            .override("device", site=SITE, device=DEVICE, data_dir=str(data_dir))
            .override("model", bundle=str(bundle), backend="onnx-cpu", threads=threads)
            .override("display", headless=True, snapshot_interval_s=1.0)
            .override("measure", enabled=measure)
            .override("mqtt", broker=broker.url, username=DEVICE,
                      password_file=str(data_dir / "password"), live_interval_s=0.0,
                      drain_timeout_s=30.0))


def percentiles(values: np.ndarray) -> str:
    if values.size == 0:
        return "no data"
    p50, p95, p99 = np.percentile(values * 1e3, [50, 95, 99])
    return (f"p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  p99 {p99:6.1f} ms  "
            f"max {values.max() * 1e3:6.1f} ms  (n={values.size})")


def replay_once(config: EdgeConfig, video: Path, realtime: bool,
                subscriber: LiveLatency) -> tuple[dict, float, object]:
    subscriber.reset()
    edge = assemble(config, SourceSpec("file", str(video)), realtime=realtime)
    started = time.monotonic()
    result = edge.replay_session("BENCH-001")
    elapsed = time.monotonic() - started
    edge.close(drain_timeout_s=30)
    time.sleep(0.5)  # the last live messages are in flight to the subscriber
    return result, elapsed, edge.pipeline


def soak(config: EdgeConfig, video: Path, minutes: float, session_s: float,
         subscriber: LiveLatency) -> None:
    edge = assemble(config, SourceSpec("file", str(video)), realtime=True, loop=True)
    pipeline = edge.pipeline
    stop = threading.Event()
    samples: list[tuple[float, float]] = []
    latencies: list[float] = []

    def operator() -> None:
        number = 0
        started = time.monotonic()
        while not stop.is_set():
            number += 1
            pipeline.submit({"command": "start_session", "screening_id": f"SOAK-{number:04d}"})
            stop.wait(session_s)
            pipeline.submit({"command": "end_session"})
            latencies.extend(subscriber.latencies(dict(pipeline.stats.live_capture_times)))
            subscriber.reset()
            samples.append((time.monotonic() - started, rss_mib()))
            if time.monotonic() - started >= minutes * 60:
                stop.set()
        pipeline.stop()

    worker = threading.Thread(target=operator, daemon=True)
    worker.start()
    pipeline.run()
    worker.join(30)
    edge.close(drain_timeout_s=30)
    print(f"\nsoak: {minutes:g} min, a session every {session_s:g} s, "
          f"{pipeline.stats.frames} frames processed, {pipeline.stats.errors} frame errors")
    print(f"  RSS start {samples[0][1]:.1f} MiB (after the first session), "
          f"end {samples[-1][1]:.1f} MiB")
    print("  RSS samples (min, MiB): " + ", ".join(f"{t / 60:.1f}:{m:.1f}" for t, m in samples))
    print(f"  live latency over the soak: {percentiles(np.array(latencies))}")


def replay_twice(config: EdgeConfig, video: Path, count: int, subscriber: LiveLatency) -> None:
    """Real time (latency to the subscriber), then every frame without pacing (fps)."""
    result, elapsed, pipeline = replay_once(config, video, True, subscriber)
    latency = subscriber.latencies(pipeline.stats.live_capture_times)
    print(f"real-time replay: {pipeline.stats.frames}/{count} frames processed "
          f"({pipeline.grabber.dropped} dropped for freshness), "
          f"{pipeline.stats.live_published} live readings published")
    print(f"  frame -> live reading at the subscriber: {percentiles(latency)}")
    print(f"  frame -> publish call (in the app):      "
          f"{percentiles(np.array(pipeline.stats.live_latency_s))}")
    measured = result.get("measurements") or {}
    print(f"  session result: {result['decision']}, {result['usable_frames']} usable frames, "
          f"{measured.get('frames_measured', 0)} measured")
    result, elapsed, pipeline = replay_once(config, video, False, subscriber)
    print(f"every frame, no pacing: {pipeline.stats.frames} frames in {elapsed:.1f} s = "
          f"{pipeline.stats.frames / elapsed:.1f} fps sustained (MQTT on)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="bundle folder (default: export one)")
    parser.add_argument("--video", type=Path, help="video (default: a 30 fps synthetic one)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the video made")
    parser.add_argument("--minutes", type=float, default=0.0, help="soak length; 0: no soak")
    parser.add_argument("--session-s", type=float, default=60.0, help="soak session length")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads")
    parser.add_argument("--work", type=Path, default=Path("/tmp/sarco-bench-edge"))
    parser.add_argument("--compare-measure", action="store_true",
                        help="also replay without the muscle measurement")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    bundle = args.model or build_bundle(args.work / "bundle")
    video = args.video or build_video(args.work, args.seconds)
    width, height, fps, count = video_properties(video)
    print(f"video {video.name}: {width}x{height}, {fps:g} fps, {count} frames; model "
          f"{bundle}; backend onnx-cpu; {len(os.sched_getaffinity(0))} CPU cores")

    with MosquittoBroker(args.work / "broker", USERS) as broker:
        subscriber = LiveLatency(broker.port)
        for measure in (True, False) if args.compare_measure else (True,):
            config = edge_config(bundle, args.work / "data", broker, args.threads, measure)
            print(f"\n== muscle measurement {'on' if measure else 'off'} ==")
            replay_twice(config, video, count, subscriber)
        config = edge_config(bundle, args.work / "data", broker, args.threads)

        if args.minutes > 0:
            soak(config, video, args.minutes, args.session_s, subscriber)
        subscriber.close()


if __name__ == "__main__":
    main()
