"""Where the pipeline's output goes: the MQTT link, the local result log and the display, each
behind one small protocol (:class:`Sink`), as the sinks at the end of a DeepStream pipeline.

The loop hands every sink each processed frame and each session result, in the order
``edge_app.app.compose`` lists them: MQTT, then the local log, then the display. A result
reaches them already numbered by the outbox and checked against the wire schema (the session
stage does that), so the log and the screen hold exactly what was queued, and the local log
also keeps a result the wire refused.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_app.capture import Frame
from edge_app.display import ScreenState, snapshot_stem
from edge_app.locallog import ResultLog
from edge_app.mqtt.link import MqttLink
from edge_app.mqtt.outbox import Outbox
from edge_app.session import Session
from edge_app.stages import PipelineStats
from sarco_core import __version__
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
    display (a window, or snapshots when headless), with a snapshot per result named by time
    and screening id. Also shows what is not a frame: video lost, a session starting, a
    refusal, the device's status, and the operator's moves between screens."""

    def __init__(self, display: Any, threshold: float, link: MqttLink | None = None,
                 outbox: Outbox | None = None, min_usable_frames: int = 20,
                 muscles: tuple[str, ...] = (), model: str = "",
                 data_dir: Path | None = None, interactive: bool = False) -> None:
        self.display = display  # WindowDisplay or SnapshotWriter
        self.interactive = interactive  # someone at the screen can answer it
        self.screen = ScreenState(threshold=threshold, min_usable_frames=min_usable_frames,
                                  muscles=list(muscles), model=model, app_version=__version__)
        self.link, self.outbox, self.data_dir = link, outbox, data_dir
        self._last_pixels: np.ndarray | None = None
        self._session_start: float | None = None  # video time of the session's first frame
        self._usable_before = 0
        self._no_video_since: float | None = None
        self._free_checked = float("-inf")

    def on_frame(self, report: FrameReport) -> None:
        s = self.screen
        s.quality, s.quality_message = report.verdict.state, report.verdict.message
        s.region = None if report.region is None else tuple(int(v) for v in report.region)
        s.frame_index = report.frame.index
        s.fps = report.fps
        self._no_video_since = None
        if s.error == "camera":
            s.error, s.error_detail = None, ""
        if report.session is not None:
            self._count(report.session, report.frame.timestamp)
        self._show_device()
        self._last_pixels = report.frame.pixels
        self.display.show(s, report.frame.pixels)

    def _count(self, session: Session, at: float) -> None:
        s = self.screen
        if self._session_start is None:
            self._session_start = at
        s.elapsed_s = at - self._session_start
        s.usable_frames, s.processed_frames = session.usable_frames, session.processed_frames
        shown = (s.measurements or {}).get("frames_total", 0)
        if len(session.measurements) != shown:  # a new measured frame: the medians again
            s.measurements = session.measured().to_dict()
        if s.muscles:
            s.muscle_frames[s.muscle] += session.usable_frames - self._usable_before
        self._usable_before = session.usable_frames

    def on_result(self, result: dict[str, Any]) -> None:
        s = self.screen
        s.mode, s.result, s.screening_id = "result", result, result["screening_id"]
        s.status_open, s.held, s.criteria_open = False, False, False
        self.display.write(snapshot_stem(result), s, self._last_pixels)

    def held(self, result: dict[str, Any]) -> None:
        """A positive result shown before it is sent, with the criteria calculator offered."""
        s = self.screen
        s.mode, s.result, s.screening_id, s.status_open = "result", result, \
            result["screening_id"], False
        s.held, s.criteria = True, {}
        self.display.show(s, self._last_pixels)

    def close(self) -> None:
        self.display.close()

    def no_signal(self, message: str, after_s: float = 2.0) -> None:
        """No frame came: after ``after_s`` without video the camera-lost screen."""
        s = self.screen
        s.quality, s.quality_message = "no_signal", message
        now = time.monotonic()
        if self._no_video_since is None:
            self._no_video_since = now
        elif now - self._no_video_since >= after_s and s.error is None:
            s.error, s.error_detail = "camera", message
        self._show_device()
        self.display.show(s, None)

    def session_started(self, screening_id: str) -> None:
        s = self.screen
        s.notice, s.mode, s.screening_id, s.result = "", "scanning", screening_id, None
        s.status_open, s.elapsed_s, s.usable_frames, s.processed_frames = False, 0.0, 0, 0
        s.muscle, s.muscle_frames, s.measurements = 0, [0] * len(s.muscles), None
        self._session_start, self._usable_before = None, 0

    def refused(self, notice: str, disk_full: bool = False) -> None:
        self.screen.notice = notice
        if disk_full:
            self.screen.error, self.screen.error_detail = "disk", notice

    def next_muscle(self) -> None:
        s = self.screen
        if s.mode == "scanning" and s.muscle < len(s.muscles) - 1:
            s.muscle += 1

    def to_idle(self) -> None:
        """Leave a result for the next participant."""
        s = self.screen
        if s.mode == "result":
            s.mode, s.result, s.screening_id, s.notice = "idle", None, None, ""

    def toggle_status(self) -> None:
        self.screen.status_open = not self.screen.status_open

    def dismiss(self) -> None:
        """The operator has read a disk-full message (camera lost clears itself)."""
        if self.screen.error == "disk":
            self.screen.error, self.screen.error_detail = None, ""

    def _show_device(self) -> None:
        s = self.screen
        if self.link is None:
            s.link = "off"
            s.link_detail = "no MQTT broker configured: results stay in the local log"
        else:
            state = self.link.state
            s.link = "online" if state.connected else "offline"
            s.link_detail = state.backlog_reason or state.detail
        s.queued_results = 0 if self.outbox is None else len(self.outbox)
        now = time.monotonic()
        if self.data_dir is not None and now - self._free_checked >= 5.0:
            self._free_checked = now
            s.free_mb = free_mb(self.data_dir)


def free_mb(folder: Path) -> int | None:
    """Free space where results are written, in MB (None when the folder cannot be read)."""
    try:
        return int(shutil.disk_usage(folder).free // 1_000_000)
    except OSError:
        return None
