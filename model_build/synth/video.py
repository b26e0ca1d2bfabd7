"""Scanner screen recordings: the probe sliding over muscles, lifted, frozen, moved on.

What the edge app meets when it reads a scanner's video output: a 1280 x 720 screen with the
app's UI around the B-mode area; frames where the probe slides over the muscle (speckle moves
with the tissue and decorrelates), frames with the probe in the air (dark, only reverberation
bands under the skin line), freezes (identical frames) and transitions while the probe is put
down or lifted and moved to the next muscle. Each frame's state is returned, so tests and the
frame-selection logic downstream have a ground truth.

Speed: each muscle's tissue is rendered once as a panorama about two fields of view wide (at
half the displayed resolution) with two independent speckle realisations; a frame is a
window of it, the two realisations mixed at a slowly turning angle (see
:func:`model_build.synth.bmode.mix`), upscaled into the screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model_build.synth.bmode import EchoField, choose_depth_mm, echo_fields, grey_image, mix
from model_build.synth.profiles import SyntheticScanner
from model_build.synth.screen import VIDEO_SIZE, Screen, max_scan_width, video_screen
from model_build.synth.tissue import MuscleLatent, TissueMaps, tissue_maps
from sarco_core.files import atomic_path

FRAME_STATES = ("tissue", "lifted", "frozen", "transition")
_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
_INNER_SCALE = 0.5  # B-mode computed at half the displayed size, then upscaled
_TRAVEL = 0.9  # the probe slides this many fields of view over each muscle
_MIN_SECONDS = 2.0


@dataclass(frozen=True)
class VideoInfo:
    """What was written: file, timing, frame size, B-mode area and each frame's state."""

    path: Path
    fps: float
    n_frames: int
    width: int
    height: int
    scan_box: tuple[int, int, int, int]
    frame_states: tuple[str, ...]  # per frame: "tissue", "lifted", "frozen" or "transition"
    mm_per_pixel: float  # physical size of one screen pixel inside scan_box
    depth_mm: float


@dataclass(frozen=True)
class PlannedFrame:
    """One frame of the recording's script: what the probe does, on which muscle (-1: none),
    and how far through the current event it is (0..1)."""

    action: str  # "lifted", "placing", "tissue", "frozen", "lifting"
    muscle: int
    phase: float

    @property
    def state(self) -> str:
        """The public frame state: putting the probe down or lifting it is a "transition"."""
        return "transition" if self.action in ("placing", "lifting") else self.action


def plan_frames(n_muscles: int, n_frames: int, fps: float, rng: np.random.Generator) -> list[PlannedFrame]:
    """The script of a recording: probe in the air, then per muscle put down, slide, freeze,
    lift and hold in the air. The tissue frames share what the short events leave."""

    def frames(seconds: float) -> int:
        return max(2, int(round(seconds * fps * rng.uniform(0.8, 1.2))))

    events: list[tuple[str, int, int]] = [("lifted", -1, frames(0.25))]
    for muscle in range(n_muscles):
        events += [("placing", muscle, frames(0.15)), ("tissue", muscle, 0), ("frozen", muscle, frames(0.6))]
        events += [("lifting", muscle, frames(0.12)), ("lifted", -1, frames(0.3))]
    spare = n_frames - sum(count for _, _, count in events)
    if spare < 4 * n_muscles:
        raise ValueError(f"{n_frames} frames are too few for {n_muscles} muscle(s); record longer")
    shares = [spare // n_muscles + (1 if muscle < spare % n_muscles else 0) for muscle in range(n_muscles)]
    plan = []
    for action, muscle, count in events:
        count = shares[muscle] if action == "tissue" else count
        plan += [PlannedFrame(action, muscle, (i + 1) / count) for i in range(count)]
    return plan


def _lifted_maps(shape: tuple[int, int], pixel_mm: float, rng: np.random.Generator) -> TissueMaps:
    """The probe in air: no scatterers, only reverberation bands of the lens, decaying with depth."""
    depth = (np.arange(shape[0], dtype=np.float32) + 0.5) * pixel_mm
    period = rng.uniform(1.5, 3.0)
    bands = np.exp(-depth / rng.uniform(2.0, 4.0)) * (np.cos(2 * np.pi * depth / period) > 0.7)
    lateral = 1.0 + 0.15 * np.sin(np.linspace(0, rng.uniform(2, 6), shape[1], dtype=np.float32))
    specular = (0.6 * bands[:, None] * lateral[None, :]).astype(np.float32)
    return TissueMaps(diffuse=np.full(shape, 1e-4, dtype=np.float32), specular=specular)


@dataclass
class _Recorder:
    """Frame-by-frame state of one recording: the fields, the screen and where the probe is."""

    profile: SyntheticScanner
    screen: Screen
    inner_width: int
    panoramas: list[tuple[EchoField, EchoField]]
    air: tuple[EchoField, EchoField]
    rng: np.random.Generator
    angle: float = 0.0

    def _turn(self) -> float:
        """Advance the speckle decorrelation angle (out-of-plane motion and hand tremor)."""
        self.angle += float(self.rng.uniform(0.15, 0.35))
        return self.angle

    def _display(self, inner: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.screen.scan_box
        return cv2.resize(inner, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)

    def tissue(self, muscle: int, progress: float) -> np.ndarray:
        first, second = self.panoramas[muscle]
        travel = first.real.shape[1] - self.inner_width
        x = int(round(np.clip(progress, 0.0, 1.0) * travel))
        end = x + self.inner_width
        window = mix(first.window(x, end), second.window(x, end), self._turn())
        return self._display(grey_image(window, self.profile))

    def lifted(self) -> np.ndarray:
        return self._display(grey_image(mix(*self.air, self._turn()), self.profile))

    def contact(self, muscle: int, progress: float, share: float, from_left: bool) -> np.ndarray:
        """The probe touching with part of its face: tissue where in contact, air elsewhere."""
        tissue, air = self.tissue(muscle, progress), self.lifted()
        columns = np.linspace(0.0, 1.0, tissue.shape[1], dtype=np.float32)
        edge = columns if from_left else 1.0 - columns
        weight = np.clip((share - edge) * 12.0, 0.0, 1.0)[None, :]
        return (weight * tissue + (1.0 - weight) * air).astype(np.uint8)


def _open_writer(path: Path, fps: float) -> cv2.VideoWriter:
    codec = _CODECS[path.suffix.lower()]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, VIDEO_SIZE, True)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write {codec} video here (is its FFmpeg backend missing?)")
    return writer


def _frozen_label(frame: np.ndarray, screen: Screen) -> np.ndarray:
    labelled = frame.copy()
    yellow = (80, 220, 250)
    cv2.putText(labelled, "FROZEN", screen.status_org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, yellow, 2, cv2.LINE_AA)
    return labelled


def _live_bmode(recorder: _Recorder, frame: PlannedFrame) -> np.ndarray:
    """The B-mode image of a frame that is not frozen."""
    if frame.action == "tissue":
        return recorder.tissue(frame.muscle, frame.phase)
    if frame.action == "lifted":
        return recorder.lifted()
    if frame.action == "placing":  # contact spreads from the left at the start of the muscle
        return recorder.contact(frame.muscle, 0.0, frame.phase, from_left=True)
    return recorder.contact(frame.muscle, 1.0, 1.0 - frame.phase, from_left=False)  # lifting off


def write_scan_video(
    path: Path,
    latents: Sequence[MuscleLatent],
    profile: SyntheticScanner,
    rng: np.random.Generator,
    seconds: float = 5.0,
) -> VideoInfo:
    """Record ``seconds`` of ``profile``'s screen while scanning ``latents`` in turn; atomic.

    ``path`` ends in .mp4 (MPEG-4, mp4v) or .avi (Motion JPEG); both read back in OpenCV.
    """
    path = Path(path)
    if path.suffix.lower() not in _CODECS:
        raise ValueError(f"{path}: unsupported video suffix {path.suffix!r}; use .mp4 or .avi")
    if not latents:
        raise ValueError(f"{path}: no muscle to scan; pass at least one MuscleLatent")
    if seconds < _MIN_SECONDS * len(latents):
        raise ValueError(
            f"{path}: {seconds} s is too short for {len(latents)} muscle(s); allow {_MIN_SECONDS} s per muscle"
        )

    n_frames = int(round(seconds * profile.fps))
    plan = plan_frames(len(latents), n_frames, profile.fps, rng)
    depth_mm = choose_depth_mm(max(latent.deep_aponeurosis_bottom_mm for latent in latents), profile, rng)
    height = profile.video_scan_height_px
    width = min(int(round(profile.probe_width_mm * height / depth_mm)), max_scan_width(profile, still=False))
    screen = video_screen(profile, (height, width), depth_mm, rng)
    inner_height = int(round(height * _INNER_SCALE))
    inner_width = int(round(width * _INNER_SCALE))
    pixel_mm = depth_mm / inner_height
    panorama_shape = (inner_height, int(round(inner_width * (1.0 + _TRAVEL))))
    panoramas = []
    for latent in latents:
        maps = tissue_maps(latent, panorama_shape, pixel_mm, rng)
        first, second = echo_fields(maps, profile, pixel_mm, rng, count=2)
        panoramas.append((first, second))
    air = echo_fields(_lifted_maps((inner_height, inner_width), pixel_mm, rng), profile, pixel_mm, rng, count=2)
    recorder = _Recorder(profile, screen, inner_width, panoramas, (air[0], air[1]), rng)

    last_frame = screen.canvas  # the script starts in the air, so a freeze always follows a live frame
    frozen_frame: np.ndarray | None = None
    with atomic_path(path) as temporary:
        writer = _open_writer(temporary, profile.fps)
        try:
            for frame in plan:
                if frame.action == "frozen":  # the same image again and again, labelled
                    frozen_frame = _frozen_label(last_frame, screen) if frozen_frame is None else frozen_frame
                    writer.write(frozen_frame)
                else:
                    frozen_frame = None
                    last_frame = screen.show(_live_bmode(recorder, frame))
                    writer.write(last_frame)
        finally:
            writer.release()
    return VideoInfo(
        path=path,
        fps=profile.fps,
        n_frames=len(plan),
        width=VIDEO_SIZE[0],
        height=VIDEO_SIZE[1],
        scan_box=screen.scan_box,
        frame_states=tuple(frame.state for frame in plan),
        mm_per_pixel=depth_mm / (screen.scan_box[3] - screen.scan_box[1]),
        depth_mm=depth_mm,
    )
