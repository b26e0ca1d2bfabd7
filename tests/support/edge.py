"""Helpers for the edge tests (no tests here): a tiny ONNX model built with onnx.helper, a
model bundle in the documented format (docs/model-bundle.md), and short scanner-like videos
written with cv2.VideoWriter. No torch: the edge install has none.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
from click.testing import Result
from onnx import TensorProto, helper
from typer.testing import CliRunner

from edge_app.cli import app
from sarco_core.bundle import write_manifest
from sarco_core.preprocess import PreprocessParams


def make_onnx_model(path: Path, size: int = 64, channels: int = 1, outputs: int = 2,
                    slope: float = 4.0, bias: float = -1.0) -> None:
    """image (N, C, S, S) -> GlobalAveragePool -> Flatten -> Gemm -> logits (N, outputs).

    With two outputs the log-odds are ``slope * mean(normalised image) + bias``: brighter
    muscle (higher echo intensity, as in sarcopenia) gives a higher probability.
    """
    weights = np.zeros((channels, outputs), dtype=np.float32)
    if outputs == 2:
        weights[:, 1] = slope / channels
        offsets = np.array([0.0, bias], dtype=np.float32)
    else:
        weights[:, 0] = slope / channels
        offsets = np.array([bias], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", outputs])],
        [helper.make_tensor("W", TensorProto.FLOAT, weights.shape, weights.ravel()),
         helper.make_tensor("B", TensorProto.FLOAT, offsets.shape, offsets)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def tiny_logit(image_mean_normalised: float, slope: float = 4.0, bias: float = -1.0) -> float:
    """The tiny model's log-odds for a frame whose normalised input has this mean."""
    return slope * image_mean_normalised + bias


def make_bundle(folder: Path, size: int = 64, threshold: float = 0.5, readout: str = "softmax",
                channels: int = 1, outputs: int = 2, field_of_view_mm: float | None = None,
                **model_options: float) -> Path:
    """A bundle the device reads: model.onnx, config.json, preprocessing.json, manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    make_onnx_model(folder / "model.onnx", size, channels, outputs, **model_options)
    (folder / "config.json").write_text(json.dumps({
        "format_version": 1, "decision_threshold": threshold, "image_readout": readout,
        "classes": ["non_sarcopenia", "sarcopenia"],
        "model": {"backbone": "tiny", "fusion": "evidential" if readout == "evidential" else
                  "late"}}))
    (folder / "preprocessing.json").write_text(
        PreprocessParams(size=size, field_of_view_mm=field_of_view_mm).to_json())
    write_manifest(folder)
    return folder


# ----------------------------------------------------------------------------- videos

SCAN_BOX = (0.2, 0.15, 0.8, 0.95)  # x0, y0, x1, y1 as fractions of the frame


def scanner_frame(width: int, height: int, rng: np.random.Generator, phase: float,
                  scene: int = 0, lifted: bool = False, brightness: float = 1.0) -> np.ndarray:
    """A screen like a portable scanner's: UI bars with text around a B-mode sector of muscle
    (bright fascia bands over speckle) that drifts with ``phase``; ``lifted``: no echo."""
    frame = np.full((height, width, 3), 28, dtype=np.uint8)
    cv2.rectangle(frame, (0, 0), (width, int(height * 0.08)), (70, 70, 70), -1)
    cv2.putText(frame, "MSK  12L  D4.0cm  G55", (10, int(height * 0.06)),
                cv2.FONT_HERSHEY_SIMPLEX, height / 720, (230, 230, 230), 1, cv2.LINE_AA)
    x0, y0, x1, y1 = (int(SCAN_BOX[0] * width), int(SCAN_BOX[1] * height),
                      int(SCAN_BOX[2] * width), int(SCAN_BOX[3] * height))
    h, w = y1 - y0, x1 - x0
    if lifted:
        scan = rng.normal(4, 2, (h, w))
    else:
        rows = np.arange(h)[:, None]
        cols = np.arange(w)[None, :]
        period = 40 + 25 * scene
        bands = 60 + 50 * np.exp(-((rows + 6 * np.sin(cols / 60 + phase) + 3 * phase) % period
                                   - period / 2) ** 2 / 30)
        if scene % 2:
            bands = bands[::-1]
        speckle = rng.rayleigh(1.0, (h, w))
        scan = bands * speckle * brightness
    frame[y0:y1, x0:x1] = np.clip(scan, 0, 255).astype(np.uint8)[..., None]
    return frame


def write_video(path: Path, segments: list[tuple[str, int]], width: int = 640, height: int = 360,
                fps: float = 30.0, seed: int = 1, brightness: float = 1.0) -> Path:
    """Segments of ("live" | "lifted" | "frozen" | "cut", frames); "cut" switches to another
    muscle (a transition), "frozen" repeats the last frame. MJPEG in AVI: decodable everywhere
    OpenCV is."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPEG here"
    frame = scanner_frame(width, height, rng, 0.0)
    phase, scene = 0.0, 0
    for kind, count in segments:
        if kind == "cut":
            scene += 1
        for _ in range(count):
            if kind in ("live", "cut"):
                phase += 0.05
                frame = scanner_frame(width, height, rng, phase, scene, brightness=brightness)
            elif kind == "lifted":
                frame = scanner_frame(width, height, rng, phase, scene, lifted=True)
            writer.write(frame)
    writer.release()
    return path


def synthetic_scanner_video(folder: Path, profile: str = "A", seconds: float = 5.0,
                            seed: int = 1, fps: float | None = None,
                            echo: float = 0.0) -> tuple[Path, tuple[str, ...], tuple[int, ...]]:
    """A scanner screen recording from the synthetic cohort generator (model_build.synth):
    thigh then calf, with lifted, frozen and transition frames. Returns (path, per-frame
    states, scan box). Written once per folder and reused (generation takes seconds)."""
    import dataclasses

    from model_build.synth.media import participant_muscle
    from model_build.synth.profiles import PROFILES
    from model_build.synth.video import write_scan_video

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"scan-{profile}-{seconds:g}s-seed{seed}-fps{fps or 0:g}-echo{echo:g}.mp4"
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        rng = np.random.default_rng(seed)
        scanner = PROFILES[profile] if fps is None else dataclasses.replace(PROFILES[profile],
                                                                             fps=fps)
        muscles = [participant_muscle(name, "F", (0.0, echo, 0.0), rng).view(rng)
                   for name in ("rectus_femoris", "gastrocnemius")]
        info = write_scan_video(path, muscles, scanner, rng, seconds=seconds)
        sidecar.write_text(json.dumps({"states": info.frame_states, "scan_box": info.scan_box}))
    meta = json.loads(sidecar.read_text())
    return path, tuple(meta["states"]), tuple(meta["scan_box"])


def one_muscle_video(folder: Path, muscle: str = "rectus_femoris", profile: str = "A",
                     seconds: float = 4.0, seed: int = 3) -> tuple[Path, dict]:
    """A recording of one muscle by a synthetic scanner, with the generator's truth: the
    muscle's thickness (mm, between the aponeuroses' inner borders at the panorama's centre),
    its pennation angle, and the screen's mm per pixel. Written once per folder."""
    from model_build.synth.media import participant_muscle
    from model_build.synth.profiles import PROFILES
    from model_build.synth.video import write_scan_video

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"one-{muscle}-{profile}-{seconds:g}s-seed{seed}.mp4"
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        rng = np.random.default_rng(seed)
        latent = participant_muscle(muscle, "F", (0.0, 0.0, 0.0), rng).view(rng)
        info = write_scan_video(path, [latent], PROFILES[profile], rng, seconds=seconds)
        sidecar.write_text(json.dumps({
            "muscle_thickness_mm": latent.muscle_thickness_mm, "pennation_deg": latent.pennation_deg,
            "mm_per_pixel": info.mm_per_pixel, "scan_box": info.scan_box}))
    return path, json.loads(sidecar.read_text())


USERS = {"edge-01": "device-secret", "dashboard": "dash-secret"}


SITE, DEVICE = "clinic-a", "edge-01"


def write_config(path: Path, bundle: Path, data_dir: Path, broker: str = "",
                 sections: dict[str, dict[str, object]] | None = None, **mqtt) -> Path:
    """A device config for the tests; ``sections``: more tables (``{"measure": {...}}``)."""
    lines = ["[device]", f'site = "{SITE}"', f'device = "{DEVICE}"', f'data_dir = "{data_dir}"',
             "[model]", f'bundle = "{bundle}"', 'backend = "onnx-cpu"',
             "[display]", "headless = true", "snapshot_interval_s = 0.2",
             "[session]", "min_usable_frames = 5"]
    for name, table in (sections or {}).items():
        lines += [f"[{name}]", *(f"{key} = {json.dumps(value)}" for key, value in table.items())]
    lines += ["[mqtt]", f'broker = "{broker}"', f'username = "{DEVICE}"',
             f'password_file = "{path.parent / "password"}"', "live_interval_s = 0.1",
             "backoff_min_s = 0.3", "backoff_max_s = 1.0"]
    lines += [f"{key} = {value}" for key, value in mqtt.items()]
    (path.parent / "password").write_text(USERS[DEVICE] + "\n")
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(*args: str) -> Result:
    """``sarco-edge`` in this process (the same code as the console script, without the
    interpreter start-up)."""
    return CliRunner().invoke(app, [*args, "--log-level", "warning"])


def replay(config: Path, video: Path, *extra: str) -> Result:
    return run_cli("replay", str(video), "--config", str(config), *extra)
