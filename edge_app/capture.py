"""Frame sources (OpenCV) behind one capture thread that keeps only the newest frame.

A slow model must drop frames, never build a backlog: the live reading has to describe what
the probe sees now. So the capture thread overwrites a one-frame slot and the pipeline takes
whatever is newest. Files can be replayed at their recorded frame rate (``realtime``), the way
Holoscan's video replayer honours timestamps, so tests and demos behave like live capture; or
frame by frame without dropping (offline checks, the throughput benchmark).

Live sources (a V4L2/UVC capture device, a GStreamer pipeline, an RTSP URL) are re-opened with
backoff when they fail, so an unplugged capture card is a message on the display, not an exit.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sarco_core.errors import SarcoError

log = logging.getLogger("edge_app.capture")


class SourceError(SarcoError, RuntimeError):
    """A source that cannot be used; the message names it and says what to check."""


@dataclass(frozen=True)
class SourceSpec:
    """What to open. ``kind``: device (V4L2 index or /dev/videoN), gstreamer (a pipeline
    ending in appsink), url (rtsp://, http://) or file."""

    kind: str
    target: str | int
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fourcc: str | None = None  # e.g. "MJPG" for UVC capture cards

    @property
    def is_live(self) -> bool:
        return self.kind != "file"

    def describe(self) -> str:
        return f"{self.kind} {self.target}"


def parse_source(text: str, **options: object) -> SourceSpec:
    """Classify a source string as the config and the command line give it."""
    text = text.strip()
    if not text:
        raise SourceError("empty video source; give a device (0 or /dev/video0), a file, an "
                          "rtsp:// URL or a GStreamer pipeline")
    if re.fullmatch(r"\d+", text):
        return SourceSpec("device", int(text), **options)  # type: ignore[arg-type]
    if re.fullmatch(r"/dev/video\d+", text):
        return SourceSpec("device", text, **options)  # type: ignore[arg-type]
    if "!" in text:
        return SourceSpec("gstreamer", text, **options)  # type: ignore[arg-type]
    if re.match(r"^(rtsp|rtsps|http|https|udp|tcp)://", text):
        return SourceSpec("url", text, **options)  # type: ignore[arg-type]
    return SourceSpec("file", text, **options)  # type: ignore[arg-type]


def open_capture(spec: SourceSpec) -> cv2.VideoCapture:
    """Open ``spec`` or raise SourceError with what to check."""
    if spec.kind == "file":
        _check_file(Path(str(spec.target)))
        capture = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG)
    elif spec.kind == "device":
        capture = cv2.VideoCapture(spec.target, cv2.CAP_V4L2)
    elif spec.kind == "gstreamer":
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise SourceError(
                "this OpenCV has no GStreamer support (PyPI's opencv-python never has); on a "
                "Jetson use the system OpenCV from JetPack, or give the capture device instead"
            )
        capture = cv2.VideoCapture(str(spec.target), cv2.CAP_GSTREAMER)
    else:
        capture = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise SourceError(_open_hint(spec))
    if spec.kind == "device":
        _configure_device(capture, spec)
    return capture


def _check_file(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"video {path}: no such file")
    if path.is_dir():
        raise SourceError(f"video {path}: is a folder; give a video file")
    if path.stat().st_size == 0:
        raise SourceError(f"video {path}: the file is empty (0 bytes); copy the recording again")


def _open_hint(spec: SourceSpec) -> str:
    if spec.kind == "file":
        return (f"video {spec.target}: OpenCV cannot decode it (corrupt, truncated or an "
                "unsupported codec); re-export it as H.264 MP4 or MJPEG AVI")
    if spec.kind == "device":
        return (f"capture device {spec.target}: cannot be opened; check the capture card is "
                "plugged in and the index (v4l2-ctl --list-devices)")
    if spec.kind == "gstreamer":
        return "GStreamer pipeline: cannot be opened; test it with gst-launch-1.0 first"
    return f"stream {spec.target}: cannot be opened; check the address and the network"


def _configure_device(capture: cv2.VideoCapture, spec: SourceSpec) -> None:
    if spec.fourcc:
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*spec.fourcc[:4]))
    if spec.width:
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, spec.width)
    if spec.height:
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, spec.height)
    if spec.fps:
        capture.set(cv2.CAP_PROP_FPS, spec.fps)
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue adds latency too


@dataclass(frozen=True)
class Frame:
    """A decoded frame.

    ``timestamp``: seconds on the source's own timeline (a file's frame index / fps), which
    every time constant (smoothing, settling) uses, so a file gives the same result however
    fast it is processed. ``captured_at``: time.monotonic() when it was read (in a real-time
    replay, when it was due): latency is measured from it. ``wall_time``: time.time().
    """

    index: int
    pixels: np.ndarray
    timestamp: float
    captured_at: float
    wall_time: float


class EndOfStream(Exception):
    """A file source has no more frames."""


class FrameGrabber:
    """The capture thread and its newest-frame slot.

    ``latest(timeout)`` returns the newest frame not yet taken, None when none came in time
    (the display then says "no signal"), and raises EndOfStream once a file is done.
    """

    def __init__(self, spec: SourceSpec, realtime: bool = True, retry_max_s: float = 5.0,
                 fps_fallback: float = 30.0, loop: bool = False) -> None:
        """``loop``: play a file over and over (a demo feed that never ends)."""
        self.spec = spec
        self.realtime = realtime
        self.loop = loop
        self.retry_max_s = retry_max_s
        self.fps_fallback = fps_fallback
        self.dropped = 0
        self.frames_read = 0
        self.status = "starting"
        self.error: str | None = None
        self.source_fps: float | None = None
        self._slot: Frame | None = None
        self._ended = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._capture: cv2.VideoCapture | None = None
        self._first: np.ndarray | None = None

    def open(self) -> FrameGrabber:
        """Open the source now so a bad file fails here, with its message, before any thread;
        a live source that is absent is retried by the thread."""
        try:
            self._capture = open_capture(self.spec)
        except SourceError as exc:
            if not self.spec.is_live:
                raise
            self.error = str(exc)
            self.status = "waiting for video"
        else:
            self._probe_first_frame()
        return self

    def _probe_first_frame(self) -> None:
        """A corrupt file often opens and then yields nothing: find out before starting."""
        if self.spec.is_live or self._capture is None:
            return
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.source_fps = fps if np.isfinite(fps) and 1.0 <= fps <= 240.0 else None
        ok, pixels = self._capture.read()
        if not ok or pixels is None or pixels.size == 0:
            self._capture.release()
            raise SourceError(f"video {self.spec.target}: opens but no frame can be decoded "
                              "(corrupt or truncated); re-export it as H.264 MP4")
        self._first = pixels

    def start(self) -> FrameGrabber:
        if self._capture is None and not self.spec.is_live:
            self.open()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()
        return self

    def latest(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._slot is None and not self._ended:
                self._cond.wait_for(lambda: self._slot is not None or self._ended, timeout)
            frame, self._slot = self._slot, None
            if frame is None and self._ended:
                raise EndOfStream
            self._cond.notify_all()  # a non-realtime producer waits for the slot to empty
            return frame

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        try:
            if self.spec.is_live:
                self._run_live()
            else:
                self._run_file()
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _run_file(self) -> None:
        period = 1.0 / (self.source_fps or self.fps_fallback)
        started = time.monotonic()
        index = 0
        pixels: np.ndarray | None = self._first
        self.status = "playing"
        while not self._stop.is_set():
            if pixels is None:
                ok, pixels = self._capture.read() if self._capture else (False, None)
                if (not ok or pixels is None) and self.loop and self._capture is not None:
                    self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, pixels = self._capture.read()
                if not ok or pixels is None:
                    self._warn_if_short(index)
                    break
            due = started + index * period
            if self.realtime:
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
            self._offer(Frame(index, pixels, index * period,
                              due if self.realtime else time.monotonic(), time.time()))
            pixels = None
            index += 1
        self.status = "ended"

    def _warn_if_short(self, frames: int) -> None:
        expected = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) if self._capture else 0
        if expected > frames + 1:
            log.warning("video ended early", extra={
                "event": "source_truncated", "source": self.spec.describe(),
                "frames": frames, "expected": expected,
                "hint": "the file is truncated or damaged after this frame"})

    def _run_live(self) -> None:
        backoff = 0.5
        index = 0
        started = time.monotonic()
        while not self._stop.is_set():
            if self._capture is None:
                try:
                    self._capture = open_capture(self.spec)
                except SourceError as exc:
                    self.error, self.status = str(exc), "waiting for video"
                    log.warning("video source unavailable", extra={
                        "event": "source_unavailable", "source": self.spec.describe(),
                        "error": str(exc), "retry_s": backoff})
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.retry_max_s)
                    continue
                log.info("video source opened", extra={"event": "source_opened",
                                                       "source": self.spec.describe()})
            ok, pixels = self._capture.read()
            if not ok or pixels is None:
                # unplugged, or the stream stalled: start over, without spinning
                self._capture.release()
                self._capture = None
                self.error, self.status = f"{self.spec.describe()}: signal lost", "signal lost"
                log.warning("video signal lost", extra={"event": "source_lost",
                                                        "source": self.spec.describe(),
                                                        "retry_s": backoff})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            backoff = 0.5
            self.status, self.error = "live", None
            now = time.monotonic()
            self._offer(Frame(index, pixels, now - started, now, time.time()))
            index += 1

    def _offer(self, frame: Frame) -> None:
        with self._cond:
            if not self.realtime and not self.spec.is_live:
                self._cond.wait_for(lambda: self._slot is None or self._stop.is_set())
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self.frames_read += 1
            self._cond.notify_all()


def video_properties(path: Path) -> tuple[int, int, float, int]:
    """(width, height, fps, frame count) of a video file, for messages and benchmarks."""
    capture = open_capture(SourceSpec("file", str(path)))
    try:
        return (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                float(capture.get(cv2.CAP_PROP_FPS)),
                int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()

