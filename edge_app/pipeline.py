"""The edge pipeline: source -> quality gate -> preprocess -> infer -> aggregate -> sinks
(display, MQTT, local log), structured as small stages the way Holoscan and DeepStream apps are.

One loop in one thread does the per-frame work on the newest frame the capture thread holds,
so a slow model drops frames instead of falling behind. MQTT runs in its own threads
(edge_app.mqtt.link) and never blocks the loop. One bad frame is logged and skipped; it never
ends the process.
"""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edge_app.capture import EndOfStream, Frame, FrameGrabber, SourceError
from edge_app.display import Readout
from edge_app.inference import InferenceBackend
from edge_app.locallog import ResultLog
from edge_app.mqtt.link import MqttLink
from edge_app.mqtt.outbox import Outbox
from edge_app.session import LiveSmoother, Session, SessionAggregator, SessionOutcome
from sarco_core import __version__
from sarco_core.bundle import DeviceBundle
from sarco_core.imaging.pixels import crop, to_grey_u8
from sarco_core.imaging.tracker import ScanRegionTracker
from sarco_core.preprocess import Preprocessor
from sarco_core.quality import MESSAGES, QualityGate, Verdict
from sarco_core.readout import OutputReadout
from sarco_core.region_watch import RegionWatch
from sarco_core.wire import schema

log = logging.getLogger("edge_app.pipeline")


@dataclass
class PipelineStats:
    """Counters and timings the benchmark and the status line read."""

    frames: int = 0
    rejected: int = 0  # frames the quality gate (or an untrusted scan region) held back
    errors: int = 0
    live_published: int = 0
    # frame index -> capture time of published live readings (the benchmark's latency)
    live_capture_times: dict[int, float] = field(default_factory=dict)  # newest 4096 only
    live_latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


@dataclass(frozen=True)
class Sinks:
    """Where results go: the display (a window or snapshots), MQTT (optional), a local log."""

    display: Any
    result_log: ResultLog
    link: MqttLink | None = None
    outbox: Outbox | None = None


class EdgePipeline:
    """Runs sessions on frames from ``grabber``. Control: ``start_session``, ``end_session``,
    ``submit`` (thread-safe, for MQTT commands), ``stop``; ``run`` is the loop."""

    def __init__(self, bundle: DeviceBundle, backend: InferenceBackend, grabber: FrameGrabber,
                 sinks: Sinks, site: str, device: str, gate: QualityGate | None = None,
                 aggregation: str = "mean_logit", min_usable_frames: int = 20,
                 smoothing_s: float = 1.0, region_recheck_frames: int = 150,
                 live_interval_s: float = 0.2, mm_per_pixel: float | None = None) -> None:
        self.bundle = bundle
        self.backend = backend
        self.grabber = grabber
        self.sinks = sinks
        self.site, self.device = site, device
        self.gate = gate or QualityGate()
        self.aggregator = SessionAggregator(bundle.threshold, OutputReadout(bundle.readout),
                                            aggregation, min_usable_frames)
        self.smoother = LiveSmoother(smoothing_s)
        self.region_watch = RegionWatch(ScanRegionTracker(recheck_every=region_recheck_frames))
        self.preprocessor = device_preprocessor(bundle)
        self.mm_per_pixel = mm_per_pixel
        self.live_interval_s = live_interval_s
        self.stats = PipelineStats()
        self.session: Session | None = None
        self.readout = Readout(threshold=bundle.threshold)
        self.commands: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._stop = False
        self._last_live = float("-inf")
        self._fps = _RateMeter()
        # time.monotonic() of the loop's latest pass; systemd's watchdog follows it
        self.last_beat = time.monotonic()
        self._frame_shape: tuple[int, ...] | None = None
        self._last_pixels: np.ndarray | None = None
        self._check_model_input()

    # ------------------------------------------------------------------ control

    def submit(self, command: dict[str, Any]) -> None:
        """An MQTT command (already schema-checked); runs in the loop's thread."""
        self.commands.put((command["command"], command.get("screening_id")))

    def stop(self) -> None:
        self._stop = True

    @property
    def fps(self) -> float:
        """Frames processed per second over the last two seconds (the display's figure)."""
        return self._fps.rate

    def start_session(self, screening_id: str) -> bool:
        problem = schema.check_screening_id(screening_id)
        if problem:
            self.readout.notice = f"ID {screening_id!r} {problem}"
            return False
        if self.session is not None:
            self.readout.notice = "a session is already running: end it first"
            return False
        if self.sinks.outbox is not None and self.sinks.outbox.is_full:
            self.readout.notice = (f"outbox full ({len(self.sinks.outbox)} result(s) unsent): "
                                   "connect to the network before the next session")
            log.error("session refused: outbox full", extra={"event": "outbox_full"})
            return False
        self.session = Session(screening_id)
        self.smoother.reset()
        self.region_watch.reset()
        self.gate.reset()
        self.readout.notice = ""
        self.readout.mode, self.readout.screening_id, self.readout.result = "session", \
            screening_id, None
        log.info("session started", extra={"event": "session_start",
                                           "session_id": self.session.session_id})
        return True

    def end_session(self) -> dict[str, Any] | None:
        """Aggregate, then hand the result to every sink; returns the result payload."""
        session, self.session = self.session, None
        if session is None:
            return None
        outcome = self.aggregator.summarise(session)
        payload = self._result_payload(session, outcome)
        try:
            if self.sinks.outbox is not None:
                payload = self.sinks.outbox.add(
                    schema.topic_for(self.site, self.device, "result"), payload)
                if self.sinks.link is not None:
                    self.sinks.link.notify()
            else:
                payload["seq"] = 0  # without MQTT there is no outbox to number results
                schema.validate("result", payload)
        except schema.PayloadError as exc:
            # never lose a screening: the local result log keeps what the wire refuses
            payload.setdefault("seq", 0)
            log.error("result not sent", extra={"event": "result_not_sent",
                                                "result_id": payload["result_id"],
                                                "error": str(exc)})
        self.sinks.result_log.append(payload)
        self.readout.mode, self.readout.result = "result", payload
        self.readout.screening_id = session.screening_id
        self.sinks.display.write(f"result-{payload['result_id']}", self.readout, self._last_pixels)
        log.info("session ended", extra={"event": "session_end", "result_id": payload["result_id"],
                                         "decision": payload["decision"],
                                         "usable_frames": outcome.usable_frames})
        return payload

    # ------------------------------------------------------------------ loop

    def run(self, open_timeout_s: float = 30.0) -> None:
        """Process frames until ``stop()`` or the end of a file."""
        self.grabber.start()
        started, seen_video = time.monotonic(), False
        try:
            while not self._stop:
                self.last_beat = time.monotonic()  # also on passes without a frame
                self._handle_commands()
                try:
                    frame = self.grabber.latest(timeout=0.5)
                except EndOfStream:
                    break
                if frame is None:
                    self._no_signal()
                    if not seen_video and time.monotonic() - started > open_timeout_s:
                        raise SourceError(
                            f"no video from {self.grabber.spec.describe()} within "
                            f"{open_timeout_s:g} s: {self.grabber.error or 'no frames came'}")
                    continue
                seen_video = True
                try:
                    self.process(frame)
                except Exception as exc:  # noqa: BLE001 - one bad frame must not end the run
                    self._frame_failed(frame, exc)
        finally:
            self.grabber.stop()

    def process(self, frame: Frame) -> None:
        """All stages for one frame."""
        self.stats.frames += 1
        self._fps.tick(frame.captured_at)
        grey = to_grey_u8(frame.pixels)  # 8-bit for detection and the gate: fast
        if grey.shape != self._frame_shape:
            if self._frame_shape is not None:
                log.warning("frame size changed", extra={
                    "event": "frame_size_changed", "frame": frame.index,
                    "from": list(self._frame_shape), "to": list(grey.shape)})
            self._frame_shape = grey.shape
            self.region_watch.reset()
        region, changed = self.region_watch.locate(grey, frame.timestamp)
        if changed:
            self.gate.reset()  # another crop: frame-to-frame comparisons start over
        scan = None if region is None else crop(grey, region)
        verdict = self.gate.check(scan, frame.timestamp)
        if not self.region_watch.may_count(verdict.ok, frame.timestamp):
            verdict = Verdict("transition") if verdict.ok else verdict
        if not verdict.ok:
            self.stats.rejected += 1
        probability = None
        output = None
        if verdict.ok:
            output = self._infer(crop(frame.pixels, region))
            probability = float(self.aggregator.readout.probability(output[None])[0])
            self.readout.probability = self.smoother.update(probability, frame.timestamp)
        if self.session is not None:
            self.session.add_frame(verdict.state, output)
            self._publish_live(frame, verdict, probability)
        self._update_readout(frame, verdict, region)

    def _infer(self, scan: np.ndarray) -> np.ndarray:
        """``scan``: the frame's pixels inside the region; the bundle's preprocessing converts
        them to grey exactly as in training (grey conversion is per pixel, so cropping first
        gives the same values and costs a fraction)."""
        tensor = self.preprocessor(scan, self.mm_per_pixel)
        channels = self.backend.input_shape[0]
        if tensor.shape[0] != channels:
            tensor = np.repeat(tensor, channels, axis=0)  # grey to the model's 3 channels
        return self.backend.outputs(tensor[np.newaxis])[0]

    # ------------------------------------------------------------------ sinks

    def _publish_live(self, frame: Frame, verdict: Verdict, probability: float | None) -> None:
        link = self.sinks.link
        if link is None or self.session is None:
            return
        if frame.timestamp - self._last_live < self.live_interval_s:
            return
        self._last_live = frame.timestamp
        payload = {
            "schema_version": schema.SCHEMA_VERSION, "kind": "live",
            "site": self.site, "device": self.device,
            "session_id": self.session.session_id, "screening_id": self.session.screening_id,
            "frame": frame.index, "captured_at": schema.utc_timestamp(frame.wall_time),
            "quality": verdict.state,
            "probability": probability,
            "smoothed_probability": self.readout.probability,
            "usable_frames": self.session.usable_frames,
            # a file replayed faster than real time can pass the schema's bound: report the bound
            "fps": round(min(self.fps, schema.MAX_FPS), 2),
        }
        if link.publish_live(payload):
            self.stats.live_published += 1
            times = self.stats.live_capture_times
            times[frame.index] = frame.captured_at
            if len(times) > 4096:
                del times[next(iter(times))]  # bounded: a device runs for months
            self.stats.live_latency_s.append(time.monotonic() - frame.captured_at)

    def _update_readout(self, frame: Frame, verdict: Verdict, region: Any) -> None:
        r = self.readout
        r.quality, r.quality_message = verdict.state, verdict.message
        r.region = None if region is None else tuple(int(v) for v in region)
        r.frame_index = frame.index
        r.fps = self.fps
        if self.session is not None:
            r.usable_frames = self.session.usable_frames
            r.processed_frames = self.session.processed_frames
        self._link_readout()
        self._last_pixels = frame.pixels
        self.sinks.display.show(r, frame.pixels)
        self._handle_key(self.sinks.display.poll_key())

    def _link_readout(self) -> None:
        r = self.readout
        link, outbox = self.sinks.link, self.sinks.outbox
        if link is None:
            r.link, r.link_ok = "MQTT off (results in the local log)", False
        else:
            r.link, r.link_ok = link.state.detail, link.state.connected
        r.queued_results = 0 if outbox is None else len(outbox)

    def _no_signal(self) -> None:
        self.readout.quality = "no_signal"
        self.readout.quality_message = self.grabber.error or MESSAGES["no_signal"]
        self._link_readout()
        self.sinks.display.show(self.readout, None)
        self._handle_key(self.sinks.display.poll_key())

    def _frame_failed(self, frame: Frame, exc: Exception) -> None:
        self.stats.errors += 1
        if self.stats.errors <= 5 or self.stats.errors % 100 == 0:
            log.error("frame skipped after an error", extra={
                "event": "frame_error", "frame": frame.index, "error": repr(exc),
                "errors_so_far": self.stats.errors})

    # ------------------------------------------------------------------ operator input

    def _handle_commands(self) -> None:
        while True:
            try:
                command, screening_id = self.commands.get_nowait()
            except queue.Empty:
                return
            if command == "start_session" and screening_id:
                self.start_session(screening_id)
            elif command == "end_session":
                self.end_session()

    def _handle_key(self, key: int | None) -> None:
        """Enter starts/ends a session (a foot switch or button that types Enter works too);
        letters, digits, '-' and '_' type the screening id; Backspace deletes; Esc quits."""
        if key is None:
            return
        r = self.readout
        if key in (10, 13):
            if self.session is None:
                if self.start_session(r.typed_id):
                    r.typed_id = ""
            else:
                self.end_session()
        elif key == 27:
            self.end_session()
            self.stop()
        elif key in (8, 127):
            r.typed_id = r.typed_id[:-1]
        elif self.session is None and (chr(key).isalnum() or chr(key) in "-_") and \
                len(r.typed_id) < 32:
            r.typed_id += chr(key)

    # ------------------------------------------------------------------ helpers

    def _check_model_input(self) -> None:
        size = self.bundle.preprocess.size
        channels, height, width = self.backend.input_shape
        if (height, width) != (size, size) or channels not in (1, 3):
            raise ValueError(f"{self.bundle.onnx_path}: the model takes {channels}x{height}x"
                             f"{width} but the bundle's preprocessing gives 1x{size}x{size}; "
                             "the bundle is inconsistent: export it again")
        if self.bundle.preprocess.field_of_view_mm is not None and not self.mm_per_pixel:
            raise ValueError("this model resamples to a physical pixel size: set "
                             "[capture] mm_per_pixel for the scanner's depth setting")

    def _result_payload(self, session: Session, outcome: SessionOutcome) -> dict[str, Any]:
        uncertainty = None
        if outcome.probability is not None:
            uncertainty = {"logit_sd": outcome.logit_sd, "agreement": outcome.agreement,
                           "dirichlet_u": outcome.dirichlet_u}
        ended = time.time()
        lasted = max(0.0, time.monotonic() - session.started_monotonic)
        return {
            "schema_version": schema.SCHEMA_VERSION, "kind": "result",
            "result_id": str(uuid.uuid4()), "session_id": session.session_id,
            "site": self.site, "device": self.device, "screening_id": session.screening_id,
            "started_at": schema.utc_timestamp(ended - lasted),
            "ended_at": schema.utc_timestamp(ended),
            "decision": outcome.decision, "probability": outcome.probability,
            "score_logit": outcome.score_logit, "threshold": self.aggregator.threshold,
            "aggregation": self.aggregator.method, "uncertainty": uncertainty,
            "usable_frames": outcome.usable_frames,
            "processed_frames": outcome.processed_frames,
            "min_usable_frames": self.aggregator.min_usable_frames,
            "skipped": outcome.skipped,
            "model": {"name": self.bundle.model_name, "sha256": self.bundle.model_sha256},
            "app_version": __version__,
        }


class _RateMeter:
    """Frames per second over the last few seconds of capture times."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._times: deque[float] = deque()
        self.window_s = window_s

    def tick(self, at: float) -> None:
        self._times.append(at)
        while self._times and at - self._times[0] > self.window_s:
            self._times.popleft()

    @property
    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


def device_preprocessor(bundle: DeviceBundle) -> Preprocessor:
    """The bundle's preprocessing on a region the pipeline has already cropped: the region is
    tracked once per session (and re-checked), not searched for in every frame."""
    return Preprocessor(replace(bundle.preprocess, crop_to_scan=False))

