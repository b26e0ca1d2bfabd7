"""Where the pipeline's output goes: the MQTT link, the local result log and the display, each
behind one small protocol (:class:`Sink`), as the sinks at the end of a DeepStream pipeline.

The loop hands every sink each processed frame and each session result, in the order
``edge_app.app.compose`` lists them: MQTT, then the local log, then the display. A result
reaches them already numbered by the outbox and checked against the wire schema (the session
stage does that), so the log and the screen hold exactly what was queued, and the local log
also keeps a result the wire refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edge_app.capture import Frame
from edge_app.display import ScreenState
from edge_app.locallog import ResultLog
from edge_app.mqtt.link import MqttLink
from edge_app.mqtt.outbox import Outbox
from edge_app.session import Session
from edge_app.stages import PipelineStats
from sarco_core.imaging.pixels import Box
from sarco_core.quality import Verdict
from sarco_core.wire.payloads import LivePayload


@dataclass(frozen=True)
class FrameReport:
    """One processed frame, as every sink sees it."""

    frame: Frame
    region: Box | None
    verdict: Verdict
    probability: float | None  # this frame's, when it passed the gate
    live: float | None  # the smoothed live probability
    fps: float
    session: Session | None


class Sink(Protocol):
    """One way out of the pipeline. The same three calls for every sink, so the loop treats
    them alike and a sink (a file exporter, a second screen) is added in ``compose`` only."""

    def on_frame(self, report: FrameReport) -> None: ...

    def on_result(self, result: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class MqttSink:
    """Live readings at most every ``interval_s`` of video time during a session (QoS 0, never
    queued: a reading is stale a second later), and a wake-up for the link when a result has
    been queued in the outbox. The link and the outbox are the app's: ``EdgeApp.close`` drains
    and stops them, so ``close`` here has nothing to do."""

    def __init__(self, link: MqttLink, site: str, device: str, stats: PipelineStats,
                 interval_s: float = 0.2) -> None:
        self.link = link
        self.site, self.device = site, device
        self.stats = stats
        self.interval_s = interval_s
        self._last_live = float("-inf")

    def on_frame(self, report: FrameReport) -> None:
        session, frame = report.session, report.frame
        if session is None or frame.timestamp - self._last_live < self.interval_s:
            return
        self._last_live = frame.timestamp
        payload = LivePayload(
            site=self.site, device=self.device,
            session_id=session.session_id, screening_id=session.screening_id,
            frame=frame.index, captured_at=frame.wall_time, quality=report.verdict.state,
            probability=report.probability, smoothed_probability=report.live,
            usable_frames=session.usable_frames, fps=round(report.fps, 2))
        if self.link.publish_live(payload.to_dict()):
            self.stats.live_published += 1
            times = self.stats.live_capture_times
            times[frame.index] = frame.captured_at
            if len(times) > 4096:
                del times[next(iter(times))]  # bounded: a device runs for months
            self.stats.live_latency_s.append(time.monotonic() - frame.captured_at)

    def on_result(self, result: dict[str, Any]) -> None:
        self.link.notify()

    def close(self) -> None:
        pass


class LocalLogSink:
    """Every result in ``results.jsonl`` on the device, whatever the network does (the outbox
    forgets a result once it is delivered)."""

    def __init__(self, result_log: ResultLog) -> None:
        self.result_log = result_log

    def on_frame(self, report: FrameReport) -> None:
        pass

    def on_result(self, result: dict[str, Any]) -> None:
        self.result_log.append(result)

    def close(self) -> None:
        pass  # each append opens, syncs and closes the file


class DisplaySink:
    """The screen: keeps :class:`ScreenState` (what is shown) current and hands it to the
    display (a window, or snapshots when headless), with a snapshot per result. Also shows
    what is not a frame: no signal, a session starting, a refusal."""

    def __init__(self, display: Any, threshold: float, link: MqttLink | None = None,
                 outbox: Outbox | None = None) -> None:
        self.display = display  # WindowDisplay or SnapshotWriter
        self.screen = ScreenState(threshold=threshold)
        self.link, self.outbox = link, outbox
        self._last_pixels: np.ndarray | None = None

    def on_frame(self, report: FrameReport) -> None:
        s = self.screen
        s.probability = report.live
        s.quality, s.quality_message = report.verdict.state, report.verdict.message
        s.region = None if report.region is None else tuple(int(v) for v in report.region)
        s.frame_index = report.frame.index
        s.fps = report.fps
        if report.session is not None:
            s.usable_frames = report.session.usable_frames
            s.processed_frames = report.session.processed_frames
        self._show_link()
        self._last_pixels = report.frame.pixels
        self.display.show(s, report.frame.pixels)

    def on_result(self, result: dict[str, Any]) -> None:
        self.screen.mode, self.screen.result = "result", result
        self.screen.screening_id = result["screening_id"]
        self.display.write(f"result-{result['result_id']}", self.screen, self._last_pixels)

    def close(self) -> None:
        self.display.close()

    def no_signal(self, message: str) -> None:
        self.screen.quality, self.screen.quality_message = "no_signal", message
        self._show_link()
        self.display.show(self.screen, None)

    def session_started(self, screening_id: str) -> None:
        self.screen.notice = ""
        self.screen.mode, self.screen.screening_id, self.screen.result = "session", \
            screening_id, None

    def refused(self, notice: str) -> None:
        self.screen.notice = notice

    def _show_link(self) -> None:
        s = self.screen
        if self.link is None:
            s.link, s.link_ok = "MQTT off (results in the local log)", False
        else:
            s.link, s.link_ok = self.link.state.detail, self.link.state.connected
        s.queued_results = 0 if self.outbox is None else len(self.outbox)
