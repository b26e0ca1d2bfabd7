"""How well a measurement model measures (``sarco measure evaluate`` and benchmarks/bench_measure.py).

**Against masks** (a folder with ``index.csv`` of image,mask pairs): every image goes through the
device's path (scan region, model, labels at the frame's size) and is compared with its mask
(through ``labels_from_bands``): Dice per aponeurosis, thickness error in px and in % of the
mask's thickness, the share of images measured, each with a bootstrap 95 % CI.

**Against the TimTrack observers** (the ``muscle-us-timtrack`` folder): datasets 2-4, three
observers each. Per image, the model's muscle thickness against the observers' mean ``height``
and the fascicle angle against their mean ``alpha`` (both in the image's own pixels and against
its horizontal, which is what the observers measured; the fascicle angle is the orientation the
pennation method finds, before it is taken against the deep aponeurosis), beside the per-image
median disagreement between two observers. The issue's target: the model's median error no
larger than the observers' median disagreement. The same labels are also read where TimTrack
takes the thickness (``timtrack_position_*``: one column near the frame's end,
:func:`model_build.measure.timtrack.thickness_at_timtrack_position`), beside the device's value.

Bland-Altman plots (matplotlib) of thickness, and of the fascicle angle for TimTrack.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from model_build.measure.data import read_index, read_pair_arrays
from model_build.measure.metrics import compare_labels, mask_metrics, summary
from model_build.measure.timtrack import (DATASETS, MIRRORED_DATASETS, disagreement, read_observers,
                                         thickness_at_timtrack_position)
from sarco_core.files import atomic_path, write_json
from sarco_core.imaging import ScanRegionNotFound
from sarco_core.measure import NO_SCAN_REGION, pennation_angle
from sarco_core.measure.segmentation import (SegmentationRecipe, frame_labels, labels_from_logits,
                                             prepare_segmentation_input)

LogitsFn = Callable[[np.ndarray], np.ndarray]


def is_timtrack(folder: Path) -> bool:
    return any((Path(folder) / f"dataset{n}").is_dir() for n in DATASETS) and not (Path(folder) / "index.csv").is_file()


def predicted_frame_labels(image: np.ndarray, logits_fn: LogitsFn, recipe: SegmentationRecipe):
    """(frame labels, prepared input) through the device's path; (None, None) with no scan region."""
    try:
        prepared = prepare_segmentation_input(image, recipe)
    except ScanRegionNotFound:
        return None, None
    labels = labels_from_logits(logits_fn(prepared.tensor)[0], prepared.grey.shape, recipe.keep_main_bands)
    return frame_labels(labels, prepared.box, prepared.frame_shape), prepared


def evaluate_masks_with(logits_fn: LogitsFn, recipe: SegmentationRecipe, rows: list[dict],
                        progress: Callable[[int, int], None] | None = None) -> tuple[dict, list[dict]]:
    """Per-image comparison rows and their summary (:func:`mask_metrics`) for index rows."""
    results = []
    for done, row in enumerate(rows, start=1):
        image, truth = read_pair_arrays(row)
        predicted, _ = predicted_frame_labels(image, logits_fn, recipe)
        if predicted is None:
            compared = compare_labels(np.zeros_like(truth), truth)
            compared["status"] = NO_SCAN_REGION
        else:
            compared = compare_labels(predicted, truth)
        results.append({"image": row["name"], **compared})
        if progress is not None:
            progress(done, len(rows))
    return mask_metrics(results), results


def evaluate_timtrack(model, timtrack: Path, progress: Callable[[int, int], None] | None = None) -> dict:
    """Per dataset: the model against the observers' mean, beside the observers' disagreement."""
    report: dict = {"datasets": {}}
    work = []
    for dataset in DATASETS:
        if (Path(timtrack) / f"dataset{dataset}").is_dir():
            images = read_observers(timtrack, dataset)
            work.append((dataset, images, disagreement(images)["per_image"]))
    total, done = sum(len(anchor) for _, _, anchor in work), 0
    for dataset, images, anchor in work:
        rows = []
        for entry in anchor:
            path = images[entry["image"]]["path"]
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            labels, prepared = predicted_frame_labels(image, model.logits, model.recipe)
            row = {"dataset": dataset, "image": entry["image"], "thickness_observers_px": entry["height_mean_px"],
                   "thickness_disagreement_px": entry["height_disagreement_px"],
                   "thickness_disagreement_pct": entry["height_disagreement_pct"],
                   "alpha_observers_deg": entry["alpha_mean_deg"],
                   "alpha_disagreement_deg": entry["alpha_disagreement_deg"],
                   "thickness_model_px": None, "thickness_model_timtrack_position_px": None,
                   "fascicle_model_deg": None,
                   "status": NO_SCAN_REGION if labels is None else None}
            if labels is not None:
                from sarco_core.measure import measure

                x0, y0, x1, y1 = prepared.box
                crop = labels[y0:y1, x0:x1]
                measured = measure(prepared.grey, crop)
                row["status"] = measured.status
                row["thickness_model_px"] = measured.muscle_thickness_px
                row["thickness_model_timtrack_position_px"] = thickness_at_timtrack_position(
                    crop, mirrored=dataset in MIRRORED_DATASETS)
                if measured.muscle_thickness_px is not None:
                    found = pennation_angle(prepared.grey, crop)
                    row["fascicle_model_deg"] = None if found.fascicle_deg is None else abs(found.fascicle_deg)
            rows.append(row)
            done += 1
            if progress is not None:
                progress(done, total)
        report["datasets"][f"dataset{dataset}"] = timtrack_summary(rows)
        report.setdefault("rows", []).extend(rows)
    return report


def timtrack_summary(rows: list[dict]) -> dict:
    def errors(model_key: str, truth_key: str, relative: bool = False) -> list[float | None]:
        values = []
        for r in rows:
            if r[model_key] is None:
                values.append(None)
                continue
            difference = abs(r[model_key] - r[truth_key])
            values.append(100.0 * difference / r[truth_key] if relative else difference)
        return values

    return {
        "images": len(rows),
        "share_measured": summary([1.0 if r["thickness_model_px"] is not None else 0.0 for r in rows], np.mean),
        "thickness_abs_error_px_median": summary(errors("thickness_model_px", "thickness_observers_px")),
        "thickness_abs_error_pct_median": summary(errors("thickness_model_px", "thickness_observers_px", True)),
        "thickness_observer_disagreement_px_median": summary([r["thickness_disagreement_px"] for r in rows]),
        "thickness_observer_disagreement_pct_median": summary([r["thickness_disagreement_pct"] for r in rows]),
        "thickness_bias_pct_mean": summary([None if r["thickness_model_px"] is None else
                                            100.0 * (r["thickness_model_px"] - r["thickness_observers_px"])
                                            / r["thickness_observers_px"] for r in rows], np.mean),
        # the same labels read where TimTrack takes the thickness (timtrack.thickness_at_timtrack_position)
        "timtrack_position_abs_error_px_median": summary(errors("thickness_model_timtrack_position_px",
                                                                "thickness_observers_px")),
        "timtrack_position_abs_error_pct_median": summary(errors("thickness_model_timtrack_position_px",
                                                                 "thickness_observers_px", True)),
        "timtrack_position_bias_pct_mean": summary([None if r["thickness_model_timtrack_position_px"] is None else
                                                    100.0 * (r["thickness_model_timtrack_position_px"]
                                                             - r["thickness_observers_px"])
                                                    / r["thickness_observers_px"] for r in rows], np.mean),
        "fascicle_abs_error_deg_median": summary(errors("fascicle_model_deg", "alpha_observers_deg")),
        "fascicle_observer_disagreement_deg_median": summary([r["alpha_disagreement_deg"] for r in rows]),
    }


def bland_altman(path: Path, truth: list[float], found: list[float], title: str, unit: str) -> None:
    """Difference against mean, with the bias and its 95 % limits of agreement."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth_a, found_a = np.asarray(truth, float), np.asarray(found, float)
    mean, difference = (truth_a + found_a) / 2.0, found_a - truth_a
    figure, axes = plt.subplots(figsize=(6, 4), dpi=110)
    axes.scatter(mean, difference, s=12, alpha=0.7)
    if difference.size:
        bias, spread = float(difference.mean()), 1.96 * float(difference.std(ddof=1)) if difference.size > 1 else 0.0
        for value, style in ((bias, "-"), (bias - spread, "--"), (bias + spread, "--")):
            axes.axhline(value, color="grey", linestyle=style, linewidth=1)
        axes.set_title(f"{title}\nbias {bias:+.2f} {unit}, limits of agreement ±{spread:.2f} {unit} (n={difference.size})",
                       fontsize=9)
    axes.set_xlabel(f"mean of model and reference ({unit})")
    axes.set_ylabel(f"model - reference ({unit})")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)


def write_rows(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    names = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)


def evaluate_folder(model, data: Path, out: Path, progress: Callable[[int, int], None] | None = None) -> dict:
    """``sarco measure evaluate``: masks or TimTrack, whichever ``data`` is; metrics.json, the
    per-image CSV and the Bland-Altman figures in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    model_record = {"path": str(model.bundle.path), "sha256": model.bundle.model_sha256,
                    "recipe": model.recipe.to_dict()}
    if is_timtrack(data):
        report = evaluate_timtrack(model, data, progress)
        rows = report.pop("rows", [])
        metrics = {"reference": "timtrack-observers", "data": str(data), "model": model_record, **report}
        write_rows(out / "per_image.csv", rows)
        for dataset in sorted({r["dataset"] for r in rows}):
            chosen = [r for r in rows if r["dataset"] == dataset and r["thickness_model_px"] is not None]
            bland_altman(out / f"bland_altman_thickness_dataset{dataset}.png",
                         [r["thickness_observers_px"] for r in chosen], [r["thickness_model_px"] for r in chosen],
                         f"TimTrack dataset {dataset}: muscle thickness vs the observers' mean", "px")
            angled = [r for r in chosen if r["fascicle_model_deg"] is not None]
            bland_altman(out / f"bland_altman_fascicle_dataset{dataset}.png",
                         [r["alpha_observers_deg"] for r in angled], [r["fascicle_model_deg"] for r in angled],
                         f"TimTrack dataset {dataset}: fascicle angle vs the observers' mean alpha", "deg")
    else:
        rows_in = read_index(data)
        summary_, rows = evaluate_masks_with(model.logits, model.recipe, rows_in, progress)
        metrics = {"reference": "masks", "data": str(data), "model": model_record, **summary_}
        write_rows(out / "per_image.csv", rows)
        chosen = [r for r in rows if r["thickness_pred_px"] is not None and r["thickness_true_px"] is not None]
        bland_altman(out / "bland_altman_thickness.png", [r["thickness_true_px"] for r in chosen],
                     [r["thickness_pred_px"] for r in chosen], "Muscle thickness: model vs mask", "px")
    write_json(out / "metrics.json", metrics)
    return metrics


def _fmt(entry: dict, unit: str = "", digits: int = 2) -> str:
    if entry["value"] is None:
        return "n/a"
    ci = entry["ci95"]
    text = f"{entry['value']:.{digits}f}{unit}"
    return text + (f" (95% CI {ci[0]:.{digits}f}-{ci[1]:.{digits}f})" if ci else "")


def print_mask_metrics(title: str, metrics: dict) -> None:
    print(f"{title}: median |thickness error| {_fmt(metrics['thickness_abs_error_pct_median'], ' %')}, "
          f"{_fmt(metrics['thickness_abs_error_px_median'], ' px', 1)}; measured "
          f"{_fmt(metrics['share_measured'], '', 3)}; Dice superficial {_fmt(metrics['dice_superficial'], '', 3)}, "
          f"deep {_fmt(metrics['dice_deep'], '', 3)}; mean signed error "
          f"{_fmt(metrics['thickness_error_pct_mean'], ' %')}", flush=True)


def print_timtrack(report: dict) -> None:
    for name, m in report["datasets"].items():
        print(f"TimTrack {name} ({m['images']} images): measured {_fmt(m['share_measured'], '', 3)}; thickness "
              f"|model - observers' mean| median {_fmt(m['thickness_abs_error_pct_median'], ' %')} "
              f"({_fmt(m['thickness_abs_error_px_median'], ' px', 1)}), bias {_fmt(m['thickness_bias_pct_mean'], ' %')}; "
              f"at TimTrack's position {_fmt(m['timtrack_position_abs_error_pct_median'], ' %')}, bias "
              f"{_fmt(m['timtrack_position_bias_pct_mean'], ' %')}; "
              f"observers' disagreement {_fmt(m['thickness_observer_disagreement_pct_median'], ' %')}; fascicle angle "
              f"|model - observers' mean alpha| median {_fmt(m['fascicle_abs_error_deg_median'], ' deg')} vs observers' "
              f"disagreement {_fmt(m['fascicle_observer_disagreement_deg_median'], ' deg')}", flush=True)


def overlay(image: np.ndarray, truth: np.ndarray | None, predicted: np.ndarray | None, title: str,
            width: int = 420) -> np.ndarray:
    """One panel: the frame in grey, the predicted aponeuroses filled (red superficial, yellow deep)
    and the mask's outlined (green), shrunk to ``width`` pixels, with ``title`` on top."""
    from sarco_core.imaging import to_grey_u8

    grey = to_grey_u8(image)
    panel = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR).astype(np.float32)
    if predicted is not None:
        for label, colour in ((1, (40, 40, 255)), (2, (0, 220, 255))):
            where = predicted == label
            panel[where] = 0.45 * panel[where] + 0.55 * np.array(colour, np.float32)
    panel = panel.astype(np.uint8)
    if truth is not None:
        thickness = max(1, round(grey.shape[1] / width))
        for label in (1, 2):
            contours, _ = cv2.findContours((truth == label).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(panel, contours, -1, (60, 220, 60), thickness)
    height = round(panel.shape[0] * width / panel.shape[1])
    panel = cv2.resize(panel, (width, height), interpolation=cv2.INTER_AREA)
    banner = np.full((22, width, 3), 255, np.uint8)
    cv2.putText(banner, title[:60], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([banner, panel])


def overlay_grid(path: Path, panels: list[np.ndarray], columns: int = 4) -> None:
    """Panels in rows of ``columns`` (padded white), written atomically as PNG."""
    if not panels:
        return
    width = max(p.shape[1] for p in panels)
    rows = []
    for start in range(0, len(panels), columns):
        chunk = panels[start:start + columns]
        height = max(p.shape[0] for p in chunk)
        padded = [cv2.copyMakeBorder(p, 0, height - p.shape[0], 0, width - p.shape[1], cv2.BORDER_CONSTANT,
                                     value=(255, 255, 255)) for p in chunk]
        padded += [np.full((height, width, 3), 255, np.uint8)] * (columns - len(chunk))
        rows.append(np.hstack([cv2.copyMakeBorder(p, 3, 3, 3, 3, cv2.BORDER_CONSTANT, value=(255, 255, 255))
                               for p in padded]))
    ok, encoded = cv2.imencode(".png", np.vstack(rows))
    if not ok:
        raise ValueError(f"{path}: the figure could not be encoded")
    with atomic_path(path) as temporary:
        temporary.write_bytes(encoded.tobytes())
