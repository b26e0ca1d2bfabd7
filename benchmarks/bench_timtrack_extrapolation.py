"""The model's thickness at TimTrack's extrapolation column, beside its fixed 20 px column.

    PYTHONPATH=. python benchmarks/bench_timtrack_extrapolation.py [--data ../shared/data] [--model MODEL]

TimTrack takes the thickness at one column (model_build/measure/timtrack.py). With
``parms.extrapolation`` on, as ``Example images/run_TimTrack_on_datasets.m`` sets it, that column
is not ``parms.apo.x = 20`` but where a line at the fascicle angle, through the point midway
between the aponeuroses at the frame's centre column, meets the deep aponeurosis
(``auto_ultrasound.m``: ``Mx = round(m/2)``, ``fas_coef = [-tand(alpha), My - Mx * fas_coef(1)]``,
``parms.apo.x = fzero(deep_coef - fas_coef)``). The same script sets dataset 2's deep aponeurosis
to a second-order fit (``parms.apo.deep.order = 2``); datasets 3 and 4 keep a straight line.

Per dataset: the median |model - observers' mean| (% of the observers' mean) and the mean signed
error, read at the 20 px column (what ``sarco measure evaluate`` reports) and at the
extrapolation column, with the model's own fascicle angle and with the observers' mean alpha,
each with a straight and a second-order deep line; and where the extrapolation column lies
(fraction of the scan's width, in TimTrack's frame: dataset 4 mirrored). Nothing is fitted to
the observers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from model_build.measure.evaluate import predicted_frame_labels
from model_build.measure.infer import AponeurosisModel
from model_build.measure.timtrack import (DATASETS, MIRRORED_DATASETS, disagreement, muscle_edge_line,
                                         read_observers, thickness_at_timtrack_position, timtrack_folder)
from sarco_core.measure import DEEP, SUPERFICIAL, measure, pennation_angle

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def at_extrapolation_column(labels: np.ndarray, alpha_deg: float, deep_order: int) -> tuple[float, float] | None:
    """(gap in pixels strictly between the lines, column as a fraction of the width) at TimTrack's
    extrapolation column of ``labels`` (already in TimTrack's frame), or None."""
    superficial, deep = muscle_edge_line(labels, SUPERFICIAL), muscle_edge_line(labels, DEEP, deep_order)
    if superficial is None or deep is None:
        return None
    centre = round(labels.shape[1] / 2)
    middle = (np.polyval(deep, centre) + np.polyval(superficial, centre)) / 2
    slope = -np.tan(np.radians(alpha_deg))
    roots = np.roots(np.polysub(deep, [slope, middle - centre * slope]))
    roots = roots[np.isreal(roots)].real
    if roots.size == 0:
        return None
    column = roots[np.argmin(np.abs(roots - centre))]  # fzero from TimTrack's start: the crossing in view
    return float(np.polyval(deep, column) - np.polyval(superficial, column) - 1), float(column / labels.shape[1])


def dataset_rows(model: AponeurosisModel, dataset: int, timtrack: Path) -> list[dict]:
    images = read_observers(timtrack, dataset)
    rows = []
    for entry in disagreement(images)["per_image"]:
        image = cv2.imread(str(images[entry["image"]]["path"]), cv2.IMREAD_UNCHANGED)
        labels, prepared = predicted_frame_labels(image, model.logits, model.recipe)
        if labels is None:
            continue
        x0, y0, x1, y1 = prepared.box
        crop = labels[y0:y1, x0:x1]
        if measure(prepared.grey, crop).muscle_thickness_px is None:
            continue
        mirrored = dataset in MIRRORED_DATASETS
        model_alpha = pennation_angle(prepared.grey, crop).fascicle_deg
        row = {"observers": entry["height_mean_px"], "20 px column": thickness_at_timtrack_position(crop, mirrored)}
        frame = crop[:, ::-1] if mirrored else crop
        for source, alpha in (("model's alpha", model_alpha), ("observers' alpha", entry["alpha_mean_deg"])):
            for order in (1, 2):
                found = None if alpha is None else at_extrapolation_column(frame, abs(alpha), order)
                row[f"extrapolation, {source}, deep order {order}"] = None if found is None else found[0]
                row[f"column, {source}, deep order {order}"] = None if found is None else found[1]
        rows.append(row)
    return rows


def report(dataset: int, rows: list[dict]) -> None:
    print(f"dataset {dataset}: {len(rows)} images measured")
    if not rows:
        return
    for key in [k for k in rows[0] if k != "observers" and not k.startswith("column")]:
        errors = np.array([100 * (r[key] - r["observers"]) / r["observers"] for r in rows if r[key] is not None])
        print(f"  {key:45s} median |error| {np.median(np.abs(errors)):5.2f} %, mean error {errors.mean():+5.2f} % "
              f"({errors.size} images)")
    for order in (1, 2):
        columns = np.array([r[f"column, model's alpha, deep order {order}"] for r in rows
                            if r[f"column, model's alpha, deep order {order}"] is not None])
        print(f"  extrapolation column (model's alpha, deep order {order}): median {np.median(columns):.2f} of the "
              f"width (quartiles {np.percentile(columns, 25):.2f} to {np.percentile(columns, 75):.2f}; "
              f"outside the frame {np.mean((columns < 0) | (columns > 1)):.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, help="measurement bundle (default: the shipped one)")
    args = parser.parse_args()
    try:
        timtrack = timtrack_folder(args.data)
    except FileNotFoundError as error:
        parser.error(str(error))
    model = AponeurosisModel(args.model, threads=1)
    for dataset in DATASETS:
        report(dataset, dataset_rows(model, dataset, timtrack))


if __name__ == "__main__":
    main()
