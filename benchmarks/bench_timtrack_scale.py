"""Where the TimTrack observers put the aponeuroses, against where the model finds them.

    PYTHONPATH=. python benchmarks/bench_timtrack_scale.py [--data ../shared/data] [--model MODEL]

The model's thickness exceeds the TimTrack observers' ``height`` by 5-8 % on datasets 2-4 while it
agrees with the DL_Track masks within about 1 % (docs/measurements.md). Datasets 2 and 3 also give
each observer's vertical points on the superficial and deep aponeurosis (``spoint``/``dpoint``,
``Y1``/``Y2``; ``height`` = ``dpoint - spoint``). This script measures, per image, the model's
aponeurosis bands in the 7 columns around the image's centre and fits the observers' points (mean
over observers) against the bands' centre rows and inner edges by least squares:
``observer_row = slope * model_row + intercept``. A slope of 1 and an intercept near 0 against
one of them would say which line the observers marked; a slope well below 1 with an intercept
near 0 says the observers' rows are on another scale than the stored image's pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from model_build.measure.evaluate import predicted_frame_labels
from model_build.measure.infer import AponeurosisModel
from model_build.measure.timtrack import read_observers
from sarco_core.measure import DEEP, SUPERFICIAL

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def band_rows(labels: np.ndarray, half_width: int = 3) -> tuple[float, float, float, float] | None:
    """(superficial top, superficial bottom, deep top, deep bottom) rows around the centre column."""
    centre = labels.shape[1] // 2
    strip = labels[:, centre - half_width:centre + half_width + 1]
    superficial = np.flatnonzero((strip == SUPERFICIAL).any(axis=1))
    deep = np.flatnonzero((strip == DEEP).any(axis=1))
    if not superficial.size or not deep.size:
        return None
    return float(superficial[0]), float(superficial[-1]), float(deep[0]), float(deep[-1])


def fit(model_rows: np.ndarray, observer_rows: np.ndarray) -> tuple[float, float, float]:
    """Least-squares slope, intercept and residual SD of observer rows on model rows."""
    design = np.vstack([model_rows, np.ones_like(model_rows)]).T
    (slope, intercept), *_ = np.linalg.lstsq(design, observer_rows, rcond=None)
    residual = observer_rows - design @ np.array([slope, intercept])
    return float(slope), float(intercept), float(residual.std())


def dataset_figures(model: AponeurosisModel, timtrack: Path, dataset: int) -> dict:
    rows = []
    for entry in read_observers(timtrack, dataset).values():
        marked = [v for v in entry["obs"].values() if "spoint" in v and "dpoint" in v]
        if not marked:
            continue
        image = cv2.imread(str(entry["path"]), cv2.IMREAD_UNCHANGED)
        labels, _ = predicted_frame_labels(image, model.logits, model.recipe)
        bands = None if labels is None else band_rows(labels)
        if bands is None:
            continue
        rows.append((np.mean([v["spoint"] for v in marked]), np.mean([v["dpoint"] for v in marked]),
                     np.mean([v["height"] for v in marked]), *bands))
    table = np.array(rows)
    spoint, dpoint, height, s_top, s_bottom, d_top, d_bottom = table.T
    observers = np.concatenate([spoint, dpoint])
    centres = np.concatenate([(s_top + s_bottom) / 2, (d_top + d_bottom) / 2])
    inner = np.concatenate([s_bottom, d_top])
    return {"images": len(table),
            "against_centres": fit(centres, observers), "against_inner_edges": fit(inner, observers),
            "height_over_inner_thickness": float(np.median(height / (d_top - s_bottom - 1))),
            "height_over_centre_distance": float(np.median(height / ((d_top + d_bottom) / 2 - (s_top + s_bottom) / 2)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, help="measurement bundle (default: the shipped one)")
    args = parser.parse_args()
    model = AponeurosisModel(args.model, threads=1)
    for dataset in (2, 3):
        f = dataset_figures(model, args.data / "muscle-us-timtrack", dataset)
        print(f"dataset {dataset} ({f['images']} images):")
        for name in ("against_centres", "against_inner_edges"):
            slope, intercept, spread = f[name]
            print(f"  observers' rows = {slope:.3f} x model {name[8:].replace('_', ' ')} "
                  f"{intercept:+.1f} px (residual SD {spread:.1f} px)")
        print(f"  observers' height / model inner thickness {f['height_over_inner_thickness']:.3f}; "
              f"/ model centre-to-centre distance {f['height_over_centre_distance']:.3f}")


if __name__ == "__main__":
    main()
