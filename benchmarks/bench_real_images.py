"""Scan-region detection and the burned-in-text question over every real image in ../shared/data
(about 1,200 images: 340 TimTrack muscle images, DeepACSA, DL_Track, BUSI), not only the subset
the tests carry (tests/data/real).

Checks what the tests check on that subset, over the whole set: a scan region is found on every
image (label masks aside); every frame of a marked capture session (tests/data/scan_regions.csv)
has the marked layout (IoU >= 0.9); has_text agrees with find_text on every 8th image, with its
detected box and as a whole crop. Prints the detection time per image; exits 1 on a failure.

    python benchmarks/bench_real_images.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import cv2

from sarco_core.imaging import ScanRegionNotFound, box_iou, find_scan_region, find_text, has_text

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
UNSHARED_LAYOUT = ("SampleB", "dataset1", "single_images", "deepacsa")  # marked frames that stand alone


def session_layouts() -> dict[str, tuple[int, ...]]:
    with open(REPO / "tests" / "data" / "scan_regions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {str(Path(row["file"]).parent): tuple(int(row[key]) for key in ("x0", "y0", "x1", "y1"))
            for row in rows if not any(part in row["file"] for part in UNSHARED_LAYOUT)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    data = parser.parse_args().data
    if not data.is_dir():
        sys.exit(f"{data}: the real data folder is not there (pass --data)")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    layouts = session_layouts()
    images = sorted(path for path in data.rglob("*") if path.suffix.lower() in SUFFIXES)
    failures, times, checked_sessions, text_answers = [], [], 0, []
    for index, path in enumerate(images):
        relative = path.relative_to(data).as_posix()
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            failures.append(f"{relative}: OpenCV cannot read it")
            continue
        box = None
        if "masks" not in Path(relative).parts:
            start = time.perf_counter()
            try:
                box = find_scan_region(image)
            except ScanRegionNotFound as error:
                failures.append(f"{relative}: no scan region ({error})")
            times.append(time.perf_counter() - start)
            session = str(Path(relative).parent)
            if box is not None and session in layouts:
                checked_sessions += 1
                if box_iou(box, layouts[session]) < 0.9:
                    failures.append(f"{relative}: {box}, its session is marked {layouts[session]}")
        if index % 8 == 0:  # as tests/sarco_core/test_text_mask.py asks it: on the colour image, masks included
            colour = cv2.imread(str(path))
            try:
                boxes = [find_scan_region(colour), (0, 0, colour.shape[1], colour.shape[0])]
            except ScanRegionNotFound:
                boxes = [None]
            for where in boxes:
                answer = has_text(colour, where)
                text_answers.append(answer)
                if answer != find_text(colour, where).found:
                    failures.append(f"{relative}: has_text {answer} but find_text disagrees for box {where}")
    milliseconds = sorted(1000 * t for t in times)
    print(f"{len(images)} images under {data}; scan region searched on {len(times)}, "
          f"{checked_sessions} frames checked against their session's marked layout, "
          f"has_text checked {len(text_answers)} times ({sum(text_answers)} with text)")
    print(f"find_scan_region: median {statistics.median(milliseconds):.1f} ms, "
          f"p95 {milliseconds[int(0.95 * (len(milliseconds) - 1))]:.1f} ms, max {milliseconds[-1]:.1f} ms per image")
    for failure in failures:
        print("FAIL", failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
