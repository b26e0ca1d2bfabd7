"""The human anchor for the muscle measurements, and the geometry's time per frame.

    PYTHONPATH=. python benchmarks/bench_measure_geometry.py [--data ../shared/data] [--csv FILE]

For the TimTrack datasets 2-4 (``muscle-us-timtrack``, three observers each) it prints how much
the observers disagree with each other, per image: the median over observer pairs of
|difference| in ``height`` (muscle thickness, pixels, and % of the observers' mean) and in
``alpha`` (fascicle angle against the image's horizontal, degrees), summarised over the images
(median and 90th percentile) and per pair. Issue 23's target compares the model's error against
the observers' mean with this median disagreement.

Then, on datasets 2 and 3 (whose observer sheets place the aponeuroses in the image's own
pixel coordinates: ``spoint``/``dpoint`` in dataset 2, observer 2's ``Y1``/``Y2`` in dataset 3),
it draws the observers' aponeurosis lines as a label image and runs the geometry
(``sarco_core.measure.measure``) on it: the fascicle angle it finds, |``fascicle_deg``|,
against the observers' mean ``alpha``. This validates the pennation method on real scans apart
from any segmentation (dataset 4's coordinates are in an unknown crop and possibly flipped:
left out). Time per frame (p50/p95, one OpenCV thread) is printed for those real frames and
for a 256x256 synthetic band, the model's input size.

Last, the DL_Track masks (``dl-track-aponeuroses``, when present) through the band conversion:
bands per mask, the statuses of the geometry on the converted labels, and its time per frame.

Needs pandas and openpyxl (the workstation install) to read the .xlsx sheets.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from model_build.measure.timtrack import disagreement, read_observers
from sarco_core.imaging import find_scan_region, to_grey_u8
from sarco_core.measure import DEEP, SUPERFICIAL, find_bands, labels_from_bands, measure, pennation_angle

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
def observer_labels(shape: tuple[int, int], box, spoint: float, dpoint: float, s_deg: float, d_deg: float,
                    x_ref: float) -> np.ndarray:
    """Label image with the observers' aponeuroses as 4-pixel bands, within the scan's columns."""
    labels = np.zeros(shape, np.uint8)
    columns = np.arange(box[0], box[2])
    lines = ((spoint, s_deg, SUPERFICIAL, range(-3, 1)), (dpoint, d_deg, DEEP, range(0, 4)))
    for row_at_ref, angle, label, rows in lines:
        line = np.round(row_at_ref - np.tan(np.radians(angle)) * (columns - x_ref)).astype(int)
        for offset in rows:
            r = np.clip(line + offset, 0, shape[0] - 1)
            labels[r, columns] = label
    return labels


def geometry_on_observer_lines(images: dict[str, dict], dataset: int) -> tuple[list[dict], list[float]]:
    rows, times = [], []
    for key, entry in sorted(images.items()):
        obs = entry["obs"]
        source = obs.get(2) if dataset == 3 else next(iter(obs.values()))
        if source is None or "spoint" not in source or "dpoint" not in source:
            continue
        frame = cv2.imread(str(entry["path"]), cv2.IMREAD_COLOR)
        grey = to_grey_u8(frame)
        box = find_scan_region(frame)
        s_deg = source.get("betha", 0.0)
        d_deg = source.get("gamma", s_deg)  # dataset 2 has no deep angle: parallel to the superficial
        labels = observer_labels(grey.shape, box, source["spoint"], source["dpoint"], s_deg, d_deg, grey.shape[1] / 2)
        started = time.perf_counter()
        measurement = measure(grey, labels)
        times.append(time.perf_counter() - started)
        found = pennation_angle(grey, labels)
        alpha_mean = float(np.mean([v["alpha"] for v in obs.values()]))
        rows.append({"image": key, "alpha_mean_deg": alpha_mean,
                     "fascicle_deg": None if found.fascicle_deg is None else abs(found.fascicle_deg),
                     "status": measurement.status})
    return rows, times


def synthetic_band_times(repeats: int = 200) -> list[float]:
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:256, 0:256].astype(np.float32)
    angle = np.radians(20.0)
    grey = 90 + 35 * np.sin((columns * np.sin(angle) + rows * np.cos(angle)) * 2 * np.pi / 10)
    grey = np.clip(grey + rng.normal(0, 25, grey.shape), 0, 255).astype(np.uint8)
    labels = np.zeros(grey.shape, np.uint8)
    labels[20:28] = SUPERFICIAL
    labels[220:230] = DEEP
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        measure(grey, labels)
        times.append(time.perf_counter() - started)
    return times


def dl_track_masks(data: Path) -> None:
    root = data / "dl-track-aponeuroses"
    if not (root / "index.csv").is_file():
        print(f"dl-track-aponeuroses: absent under {data}")
        return
    bands, statuses, times = Counter(), Counter(), []
    with (root / "index.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        mask = cv2.imread(str(root / row["mask"]), cv2.IMREAD_GRAYSCALE)
        grey = cv2.imread(str(root / row["image"]), cv2.IMREAD_GRAYSCALE)
        bands[len(find_bands(mask))] += 1
        labels = labels_from_bands(mask)
        started = time.perf_counter()
        statuses[measure(grey, labels).status] += 1
        times.append(time.perf_counter() - started)
    print(f"dl-track-aponeuroses: {len(rows)} masks; bands per mask {dict(sorted(bands.items()))}; "
          f"geometry statuses {dict(statuses.most_common())}; time per frame (native size) {_ms(times)}")


def _ms(times: list[float]) -> str:
    return f"p50 {1e3 * np.median(times):.1f} ms, p95 {1e3 * np.percentile(times, 95):.1f} ms (n={len(times)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--csv", type=Path, help="write the per-image observer disagreement here")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    missing = [name for name in ("pandas", "openpyxl") if importlib.util.find_spec(name) is None]
    if missing:  # pandas reads .xlsx through openpyxl
        print(f"observer sheets not read: {', '.join(missing)} not installed (the workstation extra has them)")
        return
    per_image_rows = []
    for dataset in (2, 3, 4):
        if not (args.data / "muscle-us-timtrack" / f"dataset{dataset}").is_dir():
            print(f"dataset{dataset}: absent under {args.data}")
            continue
        images = read_observers(args.data / "muscle-us-timtrack", dataset)
        found = disagreement(images)
        table = found["per_image"]
        per_image_rows += [{"dataset": dataset, **row} for row in table]
        h_px = np.array([r["height_disagreement_px"] for r in table])
        h_pct = np.array([r["height_disagreement_pct"] for r in table])
        alpha = np.array([r["alpha_disagreement_deg"] for r in table])
        print(f"dataset{dataset}: {len(table)} images with >= 2 observers "
              f"(mean thickness {np.mean([r['height_mean_px'] for r in table]):.0f} px)")
        print(f"  per image, median pairwise |diff|: height median {np.median(h_px):.1f} px "
              f"({np.median(h_pct):.2f} %), p90 {np.percentile(h_px, 90):.1f} px ({np.percentile(h_pct, 90):.2f} %); "
              f"alpha median {np.median(alpha):.2f} deg, p90 {np.percentile(alpha, 90):.2f} deg")
        for (a, b), values in sorted(found["per_pair"].items()):
            v = np.array(values)
            print(f"  obs{a} vs obs{b} (n={len(v)}): median |d height| {np.median(v[:, 0]):.1f} px "
                  f"({np.median(v[:, 1]):.2f} %), median |d alpha| {np.median(v[:, 2]):.2f} deg")
        if dataset in (2, 3):
            rows, times = geometry_on_observer_lines(images, dataset)
            measured = [r for r in rows if r["fascicle_deg"] is not None]
            if rows:
                errors = np.array([r["fascicle_deg"] - r["alpha_mean_deg"] for r in measured])
                print(f"  geometry on the observers' aponeurosis lines: {len(measured)}/{len(rows)} measured; "
                      f"|fascicle angle - observers' mean alpha| median {np.median(np.abs(errors)):.2f} deg, "
                      f"p90 {np.percentile(np.abs(errors), 90):.2f} deg, bias {np.mean(errors):+.2f} deg")
                print(f"  geometry time per frame ({grey_size(images)}): {_ms(times)}")
    dl_track_masks(args.data)
    print(f"geometry time per frame, 256x256 synthetic band: {_ms(synthetic_band_times())}")
    if args.csv and per_image_rows:
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(per_image_rows[0]))
            writer.writeheader()
            writer.writerows(per_image_rows)
        print(f"per-image disagreement written to {args.csv}")


def grey_size(images: dict[str, dict]) -> str:
    sizes = sorted({cv2.imread(str(e["path"]), cv2.IMREAD_GRAYSCALE).shape[::-1] for e in list(images.values())[:5]})
    return ", ".join(f"{w}x{h}" for w, h in sizes)


if __name__ == "__main__":
    main()
