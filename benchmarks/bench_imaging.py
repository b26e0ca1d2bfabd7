"""Frame budget of the image handling on one CPU core: scan region + crop + grey + resample to a
fixed mm per pixel + normalise, for a 1280x720 capture-card frame.

Targets (issue 9): under 5 ms per frame with the region cached for the session, under 20 ms
when it is detected on the frame.

    taskset -c 0 python benchmarks/bench_imaging.py [--repeats 200]

OpenCV is limited to one thread here; ``taskset`` also keeps numpy and the OS on one core.
Frames: a synthetic scanner screen (always), and real screenshots from ../shared/data scaled
or padded to 1280x720 (when the folder is there), or any images given with ``--image``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from sarco_core.imaging import crop, find_scan_region, resample_to_mm, to_grey

FRAME_SIZE = (1280, 720)
SOURCE_MM_PER_PIXEL = 0.079  # a Telemed screen at 50 mm depth (10 mm ticks 126 px apart)
TARGET_MM_PER_PIXEL = 0.1
REAL = {  # ../shared/data screenshots with a full scanner UI
    "telemed-jpeg": "muscle-us-timtrack/dataset3/030/p6_isokinetic030_01_push_01_123.jpg",
    "ge-png": "muscle-us-timtrack/dataset2/jumping/gastroc_jumping_048.png",
    "deepacsa-sector": "muscle-us-deepacsa/rectus_img_55.tif",
}


def synthetic_screen(seed: int = 0) -> np.ndarray:
    """A grey scanner UI with header text, a ruler and a speckle B-mode with a dark deep field."""
    rng = np.random.default_rng(seed)
    frame = np.full((FRAME_SIZE[1], FRAME_SIZE[0], 3), 56, np.uint8)
    speckle = cv2.GaussianBlur(rng.rayleigh(40.0, size=(600, 720)).astype(np.float32), (5, 5), 1.2)
    speckle[350:] /= 6
    frame[90:690, 300:1020] = np.clip(speckle, 0, 255).astype(np.uint8)[..., None]
    cv2.putText(frame, "DOE JANE  15/01/2024 10:15", (40, 45), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (230, 230, 230), 2)
    cv2.line(frame, (270, 90), (270, 689), (170, 170, 170), 1)
    return frame


def as_capture_frame(image: np.ndarray) -> np.ndarray:
    """Fit an image into 1280x720 the way a capture card shows a scanner's video output."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    image = image[..., :3]
    scale = min(FRAME_SIZE[0] / image.shape[1], FRAME_SIZE[1] / image.shape[0])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    frame = np.zeros((FRAME_SIZE[1], FRAME_SIZE[0], 3), np.uint8)
    x, y = (FRAME_SIZE[0] - size[0]) // 2, (FRAME_SIZE[1] - size[1]) // 2
    frame[y:y + size[1], x:x + size[0]] = resized
    return frame


def prepare(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The per-frame work once the region is known: crop, grey, resample, normalise."""
    grey = to_grey(crop(frame, box))
    resampled = resample_to_mm(grey, SOURCE_MM_PER_PIXEL, TARGET_MM_PER_PIXEL)
    mean, std = cv2.meanStdDev(resampled)
    return (resampled - np.float32(mean[0, 0])) * np.float32(1.0 / max(float(std[0, 0]), 1e-6))


def timed(work, repeats: int) -> tuple[float, float]:
    """Median and 95th percentile in milliseconds (after two warm-up calls)."""
    work()
    work()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        samples.append((time.perf_counter() - start) * 1000.0)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--image", type=Path, action="append", default=[], help="extra frames to time")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    frames = {"synthetic": synthetic_screen()}
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    for name, relative in REAL.items():
        if (data / relative).is_file():
            frames[name] = as_capture_frame(cv2.imread(str(data / relative), cv2.IMREAD_COLOR))
    for path in args.image:
        frames[path.stem] = as_capture_frame(cv2.imread(str(path), cv2.IMREAD_COLOR))
    print(f"1280x720 frames, one OpenCV thread, {args.repeats} repeats (detection: {max(20, args.repeats // 4)})")
    print(f"{'frame':18s} {'box':>22s} {'cached ms (median / p95)':>26s} {'detected ms (median / p95)':>28s}")
    for name, frame in frames.items():
        box = find_scan_region(frame)
        cached = timed(lambda: prepare(frame, box), args.repeats)
        detected = timed(lambda: prepare(frame, find_scan_region(frame)), max(20, args.repeats // 4))
        print(f"{name:18s} {str(box):>22s} {cached[0]:12.2f} / {cached[1]:6.2f} {detected[0]:14.2f} / {detected[1]:6.2f}")
    print("targets: cached < 5 ms, detected < 20 ms")


if __name__ == "__main__":
    main()
