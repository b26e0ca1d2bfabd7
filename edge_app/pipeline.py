"""The edge pipeline: source -> scan gate -> inference -> session (aggregate) -> sinks
(MQTT, local log, display), the way a Holoscan or DeepStream application chains operators.

The stages are small objects (``edge_app.stages``: the scan gate, inference and the muscle
measurement, ``edge_app.session.SessionStage``,
``edge_app.sinks``, operator input in ``edge_app.controls``) built from the config in one
place, ``edge_app.app.compose``; :class:`EdgePipeline` only passes each frame through them and
runs the loop.

One loop in one thread does the per-frame work on the newest frame the capture thread holds,
so a slow model drops frames instead of falling behind. MQTT runs in its own threads
(edge_app.mqtt.link) and never blocks the loop. One bad frame is logged and skipped; it never
ends the process.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from edge_app.capture import EndOfStream, Frame, FrameGrabber, SourceError
from edge_app.controls import OperatorInput
from edge_app.display import ScreenState
from edge_app.inference import InferenceBackend
from edge_app.session import Session, SessionStage
from edge_app.sinks import DisplaySink, FrameReport, Sink
from edge_app.stages import Inference, MuscleMeasure, PipelineStats, ScanGate
from sarco_core.imaging.pixels import Box
from sarco_core.measure import FrameMeasurement
from sarco_core.quality import MESSAGES

log = logging.getLogger("edge_app.pipeline")


class EdgePipeline:
    """Runs sessions on frames from ``grabber``. Control: ``start_session``, ``end_session``,
    ``submit`` (thread-safe, for MQTT commands), ``stop``; ``run`` is the loop, ``process``
    one frame. ``display`` is also one of ``sinks``; it is named for what only a screen
    shows (no signal, a refusal) and for the keys typed into its window."""

    def __init__(self, grabber: FrameGrabber, gate: ScanGate, inference: Inference,
                 sessions: SessionStage, display: DisplaySink, sinks: Sequence[Sink],
                 stats: PipelineStats, measure: MuscleMeasure | None = None) -> None:
        self.grabber = grabber
        self.gate = gate
        self.inference = inference
        self.measure = measure
        self.sessions = sessions
        self.display = display
        self.sinks = tuple(sinks)
        self.stats = stats
        self.operator = OperatorInput(self, display, display.display)
        self._held: dict[str, Any] | None = None  # a positive result awaiting its measurements
        self._stop = False
        self._fps = _RateMeter()
        # time.monotonic() of the loop's latest pass; systemd's watchdog follows it
        self.last_beat = time.monotonic()

    # ------------------------------------------------------------------ control

    @property
    def session(self) -> Session | None:
        return self.sessions.current

    @property
    def screen(self) -> ScreenState:
        return self.display.screen

    @property
    def backend(self) -> InferenceBackend:
        return self.inference.backend

    @backend.setter
    def backend(self, backend: InferenceBackend) -> None:
        self.inference.backend = backend

    @property
    def fps(self) -> float:
        """Frames processed per second over the last two seconds (the display's figure)."""
        return self._fps.rate

    def submit(self, command: dict[str, Any]) -> None:
        """An MQTT command (already schema-checked); runs in the loop's thread."""
        self.operator.submit(command)

    def stop(self) -> None:
        self._stop = True

    def start_session(self, screening_id: str) -> bool:
        self.release()  # the next participant: a result still held goes out as it is
        refusal = self.sessions.start(screening_id)
        if refusal is not None:
            self.display.refused(refusal.reason, refusal.disk_full)
            return False
        self.gate.reset()
        self.display.session_started(screening_id)
        return True

    def end_session(self) -> dict[str, Any] | None:
        """Aggregate, then hand the result to every sink; returns the result payload. A
        positive screen on a screen someone can touch is held instead (the display offers the
        criteria calculator) until :meth:`release`; the unqueued payload is returned then."""
        payload = self.sessions.end()
        if payload is None:
            return None
        if self.display.interactive and (payload.get("screen") or {}).get("call") == "positive":
            self.sessions.hold(payload)
            self._held = payload
            self.display.held(payload)
            return payload
        return self._deliver(payload)

    def release(self, assessment: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Send the held result, with the team's confirmation measurements if given."""
        held, self._held = self._held, None
        if held is None:
            return None
        return self._deliver({**held, **({"assessment": assessment} if assessment else {})})

    def _deliver(self, payload: dict[str, Any]) -> dict[str, Any]:
        result = self.sessions.queue(payload)
        for sink in self.sinks:
            try:
                sink.on_result(result)
            except OSError as exc:  # the disk: the other sinks (the screen) still get it
                log.error("result not saved", extra={"event": "result_not_saved",
                                                     "result_id": result["result_id"],
                                                     "error": str(exc)})
                self.display.refused(f"result {result['screening_id']} not saved: {exc}",
                                     disk_full=True)
        log.info("session ended", extra={"event": "session_end", "result_id": result["result_id"],
                                         "decision": result["decision"],
                                         "usable_frames": result["usable_frames"]})
        return result

    def deliver_left_over(self) -> None:
        """A result held when the program last stopped (a power cut on the calculator) goes
        out now, without the measurements nobody finished entering."""
        left = self.sessions.left_over()
        if left is not None:
            log.warning("held result sent after a restart", extra={
                "event": "held_result_recovered", "result_id": left.get("result_id")})
            self._deliver(left)

    def close(self) -> None:
        self.release()
        for sink in self.sinks:
            sink.close()

    # ------------------------------------------------------------------ loop

    def run(self, open_timeout_s: float = 30.0) -> None:
        """Process frames until ``stop()`` or the end of a file."""
        self.grabber.start()
        started, seen_video = time.monotonic(), False
        try:
            while not self._stop:
                self.last_beat = time.monotonic()  # also on passes without a frame
                self.operator.run_commands()
                try:
                    frame = self.grabber.latest(timeout=0.5)
                except EndOfStream:
                    break
                if frame is None:
                    self.display.no_signal(self.grabber.error or MESSAGES["no_signal"])
                    self.operator.poll()
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
        gated = self.gate(frame)
        output = probability = measurement = None
        if gated.verdict.ok:
            output, probability = self.inference(frame.pixels, gated.region)
            measurement = self._measured(frame, gated.region)
        else:
            self.stats.rejected += 1
        self.sessions.add(gated.verdict.state, output, probability, frame.timestamp,
                          measurement)
        report = FrameReport(frame, gated.region, gated.verdict, probability,
                             self.sessions.live, self.fps, self.session)
        for sink in self.sinks:
            sink.on_frame(report)
        self.operator.poll()

    def _measured(self, frame: Frame, region: Box) -> FrameMeasurement | None:
        """The muscle measured on a usable frame of a session. With a checklist of muscles,
        on the protocol's first muscle only: a median over two muscles measures neither. A
        frame whose measurement fails keeps its classification (logged, counted)."""
        if self.measure is None or self.session is None or self.screen.muscle != 0:
            return None
        try:
            return self.measure(frame.pixels, region)
        except Exception as exc:  # noqa: BLE001 - the frame still counts for the screen
            self.stats.measure_errors += 1
            if self.stats.measure_errors <= 5 or self.stats.measure_errors % 100 == 0:
                log.error("frame not measured after an error", extra={
                    "event": "measure_error", "frame": frame.index, "error": repr(exc),
                    "errors_so_far": self.stats.measure_errors})
            return None

    def _frame_failed(self, frame: Frame, exc: Exception) -> None:
        self.stats.errors += 1
        if self.stats.errors <= 5 or self.stats.errors % 100 == 0:
            log.error("frame skipped after an error", extra={
                "event": "frame_error", "frame": frame.index, "error": repr(exc),
                "errors_so_far": self.stats.errors})


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
