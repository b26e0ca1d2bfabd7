"""Frame sources through real OpenCV: bad files, absent cameras, dropping instead of queueing."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from edge_app.capture import (
    EndOfStream,
    FrameGrabber,
    SourceError,
    SourceSpec,
    parse_source,
    video_properties,
)
from tests.support.edge import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s at 30 fps, 320x180."""
    folder = tmp_path_factory.mktemp("clip")
    return write_video(folder / "clip.avi", [("live", 60)], width=320, height=180)


def drain(grabber: FrameGrabber, per_frame_s: float = 0.0) -> list[int]:
    indices = []
    while True:
        try:
            frame = grabber.latest(timeout=5.0)
        except EndOfStream:
            return indices
        assert frame is not None, "the source stalled"
        indices.append(frame.index)
        if per_frame_s:
            time.sleep(per_frame_s)  # a model this slow


@pytest.mark.parametrize("text, kind, target", [
    ("0", "device", 0), ("/dev/video2", "device", "/dev/video2"),
    ("v4l2src ! videoconvert ! appsink", "gstreamer", "v4l2src ! videoconvert ! appsink"),
    ("rtsp://10.0.0.5/stream", "url", "rtsp://10.0.0.5/stream"), ("scan.mp4", "file", "scan.mp4"),
])
def test_sources_are_recognised(text: str, kind: str, target: object) -> None:
    spec = parse_source(text)
    assert (spec.kind, spec.target) == (kind, target)


def test_every_frame_mode_delivers_all_frames_in_order(clip: Path) -> None:
    grabber = FrameGrabber(SourceSpec("file", str(clip)), realtime=False).start()
    try:
        assert drain(grabber, per_frame_s=0.002) == list(range(60))
    finally:
        grabber.stop()
    assert grabber.dropped == 0


def test_realtime_replay_drops_frames_for_a_slow_consumer(clip: Path) -> None:
    grabber = FrameGrabber(SourceSpec("file", str(clip)), realtime=True).start()
    started = time.monotonic()
    try:
        seen = drain(grabber, per_frame_s=0.1)  # 10 fps model, 30 fps video
    finally:
        grabber.stop()
    elapsed = time.monotonic() - started
    assert elapsed >= 1.9  # played at its own pace: 60 frames at 30 fps
    assert seen == sorted(seen) and len(seen) < 40  # newest frames only, never a backlog
    assert grabber.dropped == 60 - len(seen)


def bad_file(folder: Path, case: str) -> Path:
    if case == "missing":
        return folder / "missing.mp4"
    if case == "folder":
        return folder
    path = folder / f"{case}.mp4"
    path.write_bytes(b"" if case == "empty" else b"\x00garbage" * 4000)
    return path


@pytest.mark.parametrize("case, words", [
    ("missing", "no such file"), ("empty", "empty"), ("junk", "cannot decode"),
    ("folder", "is a folder"),
])
def test_bad_files_give_a_clear_error(tmp_path: Path, case: str, words: str) -> None:
    path = bad_file(tmp_path, case)
    with pytest.raises(SourceError, match=words) as error:
        FrameGrabber(SourceSpec("file", str(path))).open()
    assert str(path) in str(error.value)


def test_a_truncated_file_fails_at_open_or_ends_cleanly(clip: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    try:
        grabber = FrameGrabber(SourceSpec("file", str(truncated)), realtime=False).start()
    except SourceError as error:
        assert "truncated" in str(error) or "decode" in str(error)
        return
    try:
        frames = drain(grabber)
    finally:
        grabber.stop()
    assert 0 < len(frames) < 60


def test_a_camera_that_does_not_exist_is_retried_not_fatal() -> None:
    grabber = FrameGrabber(SourceSpec("device", "/dev/video63"), retry_max_s=0.2).open()
    grabber.start()
    try:
        assert grabber.latest(timeout=0.5) is None
        assert grabber.status == "waiting for video"
        assert "/dev/video63" in grabber.error and "v4l2-ctl" in grabber.error
    finally:
        grabber.stop()


def test_a_live_source_that_comes_back_is_picked_up_again(clip: Path, tmp_path: Path) -> None:
    """A live source (here a stream URL pointing at a file) that is absent, then appears, then
    ends (like an unplugged card) and reappears: frames flow each time it is there."""
    late = tmp_path / "late.avi"
    grabber = FrameGrabber(SourceSpec("url", str(late)), retry_max_s=0.2).start()
    try:
        assert grabber.latest(timeout=0.5) is None and grabber.status == "waiting for video"
        shutil.copy(clip, late)
        first = grabber.latest(timeout=10)
        assert first is not None
        # the clip ends: the grabber treats it as a lost signal and opens it again
        seen_restart = threading.Event()
        deadline = time.monotonic() + 20
        previous = first.index
        while time.monotonic() < deadline:
            frame = grabber.latest(timeout=1)
            if frame is not None:
                if frame.index > previous and grabber.status == "live":
                    previous = frame.index
                if frame.index > 60:  # counted on across the re-open
                    seen_restart.set()
                    break
        assert seen_restart.is_set()
    finally:
        grabber.stop()


def test_video_properties_of_another_resolution(tmp_path: Path) -> None:
    small = write_video(tmp_path / "small.avi", [("live", 5)], width=256, height=144, fps=25)
    assert video_properties(small)[:3] == (256, 144, 25.0)
