"""The golden set a bundle ships for the device's self-test: preprocessed model inputs, the
outputs ONNX Runtime gave for them on the workstation, and how far each precision may stray.

- ``golden.npz``: ``inputs`` float32 (N, C, H, W) exactly as the network sees them, ``logits``
  (N, K) from ONNX Runtime (FP32, CPU) at signing time. Loaded with ``allow_pickle=False``.
- ``selftest.json``: ``max_probability_gap`` per precision (``fp32`` is the device's own ONNX
  Runtime against the stored logits; ``fp16`` and ``int8`` are TensorRT engines against the
  device's ONNX Runtime), and ``min_fps`` (inference only; 0 means no floor).

Gaps are on P(sarcopenia) after the bundle's readout, because that is what the decision uses:
an engine within the gap can flip a decision only for frames already that close to the
threshold. Both files are listed in the manifest like every other bundle file.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sarco_core.files import atomic_write, read_json, write_json
from sarco_core.preprocess import PreprocessError, PreprocessParams, Preprocessor
from sarco_core.update import DeployError

GOLDEN = "golden.npz"
SELFTEST = "selftest.json"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

# Policy defaults, overridable at signing (`sarco sign --fp16-gap/--int8-gap`): FP32 against
# FP32 differs only by kernel order (~1e-6); FP16 keeps ~3 significant digits; INT8 gets the
# widest gap. Calibration can measure the Q/DQ model's gap on its own data and sign with that.
DEFAULT_GAPS = {"fp32": 1e-3, "fp16": 0.02, "int8": 0.05}


@dataclass(frozen=True)
class SelftestSpec:
    max_probability_gap: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_GAPS))
    min_fps: float = 0.0

    def __post_init__(self) -> None:
        gaps = self.max_probability_gap
        if set(gaps) != set(PRECISIONS) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1
                for v in gaps.values()):
            raise DeployError(f"max_probability_gap {gaps!r}: give fp32, fp16 and int8, each in "
                              "(0, 1)")
        if isinstance(self.min_fps, bool) or not isinstance(self.min_fps, (int, float)) \
                or self.min_fps < 0:
            raise DeployError(f"min_fps {self.min_fps!r}: must be a number >= 0")


@dataclass(frozen=True)
class GoldenSet:
    inputs: np.ndarray  # float32 (N, C, H, W)
    logits: np.ndarray  # float64 (N, K), ONNX Runtime on the workstation
    spec: SelftestSpec


def load_golden(bundle: Path) -> GoldenSet:
    """Read and check the bundle's golden set; DeployError naming the file if absent or bad."""
    bundle = Path(bundle)
    if not (bundle / SELFTEST).is_file():
        raise DeployError(f"{bundle / SELFTEST}: not found; the bundle has no golden set: sign "
                          "it with `sarco sign --golden-frames` so the device can test it")
    raw = read_json(bundle / SELFTEST, DeployError)
    if raw.get("format_version") != FORMAT_VERSION:
        raise DeployError(f"{bundle / SELFTEST}: format_version {raw.get('format_version')!r} "
                          f"is not {FORMAT_VERSION}")
    try:
        spec = SelftestSpec(raw["max_probability_gap"], raw.get("min_fps", 0.0))
    except (KeyError, TypeError) as exc:
        raise DeployError(f"{bundle / SELFTEST}: missing or bad field ({exc})") from None
    except DeployError as exc:
        raise DeployError(f"{bundle / SELFTEST}: {exc}") from None
    try:
        with np.load(bundle / GOLDEN, allow_pickle=False) as arrays:
            inputs, logits = arrays["inputs"], arrays["logits"]
    except FileNotFoundError:
        raise DeployError(f"{bundle / GOLDEN}: not found; sign the bundle with --golden-frames "
                          "so the device can test it") from None
    except (OSError, KeyError, ValueError) as exc:
        raise DeployError(f"{bundle / GOLDEN}: not a golden set ({exc})") from None
    if inputs.ndim != 4 or inputs.dtype != np.float32 or logits.ndim != 2 \
            or len(inputs) != len(logits) or len(inputs) == 0:
        raise DeployError(f"{bundle / GOLDEN}: expected inputs float32 (N, C, H, W) and logits "
                          f"(N, K), got {inputs.dtype} {inputs.shape} and {logits.shape}")
    return GoldenSet(inputs, logits.astype(np.float64), spec)


# --------------------------------------------------------------------------- workstation side


def frames_from(source: Path, count: int) -> list[np.ndarray]:
    """``count`` frames spread evenly over a video, or the first ``count`` images (sorted by
    name) of a folder."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        frames = [f for f in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths[:count])
                  if f is not None]
    else:
        capture = cv2.VideoCapture(str(source))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        frames = []
        for index in np.linspace(0, max(total - 1, 0), num=min(count, max(total, 1))).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if ok:
                frames.append(frame)
        capture.release()
    if not frames:
        raise DeployError(f"golden frames {source}: no image or video frame could be read; give "
                          "a folder of PNG/JPEG scans or a scanner video")
    return frames


def golden_inputs(frames: list[np.ndarray], params: PreprocessParams,
                  channels: int) -> np.ndarray:
    """The network inputs for ``frames`` through the bundle's own preprocessing."""
    preprocessor = Preprocessor(params)
    tensors = []
    for index, frame in enumerate(frames):
        try:
            tensors.append(np.repeat(preprocessor(frame), channels, axis=0))
        except PreprocessError as exc:
            raise DeployError(f"golden frame {index}: {exc}") from None
    return np.stack(tensors).astype(np.float32)


def write_golden(bundle: Path, inputs: np.ndarray, logits: np.ndarray,
                 spec: SelftestSpec) -> None:
    """Write golden.npz and selftest.json (the caller rewrites the manifest afterwards)."""
    buffer = io.BytesIO()
    np.savez(buffer, inputs=inputs.astype(np.float32), logits=np.asarray(logits, np.float32))
    atomic_write(Path(bundle) / GOLDEN, buffer.getvalue())
    write_json(Path(bundle) / SELFTEST, {"format_version": FORMAT_VERSION, **asdict(spec)}, sort_keys=True)
