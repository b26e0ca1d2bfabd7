"""The TimTrack observers' sheets (``../shared/data/muscle-us-timtrack``): read them, and how much the
observers disagree with each other (the human anchor of docs/measurements.md).

Datasets 2-4 validate the measurements; dataset 1 (vastus lateralis, another muscle) is where the
pennation method's free parameters are chosen (``benchmarks/tune_pennation.py``), so the two never
overlap. Each dataset has three observers: datasets 2-4 in
``datasetN_for_manual_estimation_obsK.xlsx``, one sheet per recording; dataset 1 in one file, one
sheet per observer (TZ, EM, BH). Per image: ``height`` (muscle thickness, pixels of the image),
``alpha`` (fascicle angle against the image's horizontal, degrees), ``betha``/``beta`` and
``gamma`` (superficial and deep aponeurosis angles) and, in datasets 1 and 2, the aponeuroses'
vertical points ``spoint``/``dpoint``.
Reading the .xlsx files needs pandas and openpyxl (the workstation install).

**Where TimTrack takes the thickness.** TimTrack (van der Zee & Kuo 2022; MATLAB,
github.com/timvanderzee/ultrasound-automated-algorithm) evaluates it at one column, not over the
image: ``thickness = (polyval(deep_coef, parms.apo.x) - polyval(super_coef, parms.apo.x)) *
cosd(betha)`` (``auto_ultrasound.m``), straight lines fitted to each aponeurosis, with
``parms.apo.x = parms.apo.apomargin = 20`` px from the left edge of the frame it analyses, the
scan region cropped out of the screenshot (``Parameters/default_parms.m``, ``do_TimTrack.m``).
It analyses dataset 4 mirrored (``parms.flip_image = 1`` in ``Example images/
run_TimTrack_on_datasets.m``), so there that column is 20 px from the stored image's right edge.
``Manual estimates/compare_algorithm_to_manual.m`` sets that value against the observers'
``height * cosd(betha)``. :func:`thickness_at_timtrack_position` is that convention on the
model's labels (``benchmarks/bench_timtrack_scale.py`` shows the observers' own rows sit on the
aponeuroses at that end of the image; docs/measurements.md). The device's thickness
(:func:`sarco_core.measure.muscle_thickness_px`) is unchanged.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np

from sarco_core.measure import DEEP, SUPERFICIAL

DATASETS = (2, 3, 4)  # validation
TUNING_DATASET = 1    # where the pennation method's parameters are chosen
TIMTRACK_MARGIN_PX = 20  # parms.apo.apomargin (= parms.apo.x) in TimTrack's default_parms.m
MIRRORED_DATASETS = frozenset({4})  # parms.flip_image = 1 in TimTrack's run_TimTrack_on_datasets.m
COLUMNS = {  # normalised name -> the spellings the observers' sheets use (lower case)
    "alpha": ("alpha", "alpha (deg)", "fascicle angle"),
    "betha": ("betha", "beta (deg)", "superficial aponeurosis angle"),
    "gamma": ("gamma", "gamma (deg)"),
    "height": ("height", "height (pixels)"),
    "spoint": ("spoint", "vertical point superficial aponeurosis", "y1 height (pixels)"),
    "dpoint": ("dpoint", "vertical point deep aponeurosis", "y2 height (pixels)"),
}


def read_observers(timtrack: Path, dataset: int) -> dict[str, dict]:
    """{image key: {"path": Path, "obs": {observer: {column: value}}}} for the images on disk of
    ``timtrack/datasetN`` (``timtrack``: the muscle-us-timtrack folder)."""
    root = Path(timtrack) / f"dataset{dataset}"
    images: dict[str, dict] = {}
    for observer, sheet, frame in _observer_sheets(root, dataset):
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        names = {key: next((c for c in frame.columns if c in spellings), None) for key, spellings in COLUMNS.items()}
        for _, row in frame.iterrows():
            path = _dataset1_path(root, row) if dataset == 1 else _image_path(root, dataset, sheet, row.iloc[0])
            if path is None:
                continue
            values = {key: float(row[col]) for key, col in names.items() if col is not None and _number(row[col])}
            if "alpha" in values and "height" in values:
                entry = images.setdefault(path.relative_to(root).as_posix(), {"path": path, "obs": {}})
                entry["obs"].setdefault(observer, values)  # a sheet repeating an image: the first wins
    return images


def _observer_sheets(root: Path, dataset: int):
    """(observer, sheet name, table) for every sheet of a dataset's observer files."""
    import pandas as pd  # workstation-only dependency, like the .xlsx files themselves

    if dataset == 1:
        for observer, frame in pd.read_excel(root / "dataset1_for_manual_estimation.xlsx", sheet_name=None).items():
            yield observer, observer, frame
        return
    for sheet_file in sorted(root.glob(f"dataset{dataset}_for_manual_estimation_obs*.xlsx")):
        observer = int(re.search(r"obs(\d+)", sheet_file.name).group(1))
        for sheet, frame in pd.read_excel(sheet_file, sheet_name=None).items():
            yield observer, sheet, frame


def timtrack_folder(data: Path, datasets: tuple[int, ...] = DATASETS) -> Path:
    """``data/muscle-us-timtrack``, checked to hold a ``datasetN`` folder for each of ``datasets``."""
    folder = Path(data) / "muscle-us-timtrack"
    missing = [f"dataset{n}" for n in datasets if not (folder / f"dataset{n}").is_dir()]
    if missing:
        raise FileNotFoundError(f"{folder}: no {', '.join(missing)}; fix: give the folder that holds "
                                "muscle-us-timtrack (../shared/data)")
    return folder


def thickness_at_timtrack_position(labels: np.ndarray, mirrored: bool = False,
                                   margin_px: int = TIMTRACK_MARGIN_PX) -> float | None:
    """The muscle thickness where TimTrack takes it (module docstring), in pixels, or None.

    ``labels``: the scan region's labels (TimTrack's analysed frame). A straight line is fitted
    (least squares, rows on columns) to each aponeurosis' edge that faces the muscle (the
    superficial one's last row and the deep one's first row in every column holding it) and the
    value is the vertical gap between the lines, pixels strictly between them as in
    :func:`sarco_core.measure.muscle_thickness_px`, at ``margin_px`` from the left edge (from the
    right edge when ``mirrored``). Vertical, as the observers' ``height``: TimTrack's own
    ``* cosd(betha)`` is not applied. None when an aponeurosis spans fewer than two columns or
    the gap is not positive.
    """
    labels = np.asarray(labels)
    lines = [muscle_edge_line(labels, label) for label in (SUPERFICIAL, DEEP)]
    if any(line is None for line in lines):
        return None
    x = labels.shape[1] - 1 - margin_px if mirrored else margin_px
    gap = float(np.polyval(lines[1], x) - np.polyval(lines[0], x) - 1)
    return gap if gap > 0 else None


def muscle_edge_line(labels: np.ndarray, label: int, order: int = 1) -> np.ndarray | None:
    """Least-squares polynomial (rows on columns, ``np.polyfit``'s coefficients) through the edge
    of aponeurosis ``label`` that faces the muscle: the superficial one's last row and the deep
    one's first row in every column holding it; None when it spans too few columns."""
    present = np.asarray(labels) == label
    columns = np.flatnonzero(present.any(axis=0))
    if columns.size <= order:
        return None
    rows = (present.shape[0] - 1 - np.argmax(present[::-1, columns], axis=0) if label == SUPERFICIAL
            else np.argmax(present[:, columns], axis=0))
    return np.polyfit(columns.astype(float), rows.astype(float), order)


def _number(value) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def _dataset1_path(root: Path, row) -> Path | None:
    """Dataset 1's image of a sheet row (``subject``, ``leg``, ``name``: S10/S10_L20_step_025.png)."""
    if not all(_number(row.get(column)) for column in ("subject", "name")):
        return None
    subject = int(row["subject"])
    path = root / f"S{subject}" / f"S{subject}_{row['leg']}20_step_{int(row['name']):03d}.png"
    return path if path.is_file() else None


def _image_path(root: Path, dataset: int, sheet: str, name) -> Path | None:
    if not isinstance(name, (str, int, float)) or (isinstance(name, float) and np.isnan(name)):
        return None
    if dataset == 2:
        jumping = "jump" in sheet
        folder, stem = ("jumping", "gastroc_jumping") if jumping else ("range-of-motion", "gastroc_range_of_motion")
        path = root / folder / f"{stem}_{int(float(name)):03d}.png"
    elif dataset == 3:
        name = str(name).strip()
        key = name if name.startswith("p6_") else f"{sheet}_{name}"
        found = sorted(root.glob(f"*/{key}.jpg"))
        path = found[0] if found else None
    else:  # dataset 4: SampleA holds GM_T_n.png, SampleB GM_P_n.bmp (one sheet names them GM_T_n too)
        number = re.search(r"(\d+)\s*$", str(name))
        if number is None or sheet not in ("SampleA", "SampleB"):
            return None
        path = root / sheet / (f"GM_T_{number.group(1)}.png" if sheet == "SampleA" else f"GM_P_{number.group(1)}.bmp")
    return path if path is not None and path.is_file() else None


def disagreement(images: dict[str, dict]) -> dict:
    """Per image: median over observer pairs of |difference|, for height (px, %) and alpha."""
    per_image, per_pair = [], {}
    for key, entry in sorted(images.items()):
        obs = entry["obs"]
        if len(obs) < 2:
            continue
        mean_height = np.mean([v["height"] for v in obs.values()])
        pairs = list(itertools.combinations(sorted(obs), 2))
        d_height = [abs(obs[a]["height"] - obs[b]["height"]) for a, b in pairs]
        d_alpha = [abs(obs[a]["alpha"] - obs[b]["alpha"]) for a, b in pairs]
        for (a, b), dh, da in zip(pairs, d_height, d_alpha):
            per_pair.setdefault((a, b), []).append((dh, 100 * dh / mean_height, da))
        per_image.append({"image": key, "observers": len(obs), "height_mean_px": mean_height,
                          "height_disagreement_px": float(np.median(d_height)),
                          "height_disagreement_pct": float(100 * np.median(d_height) / mean_height),
                          "alpha_mean_deg": float(np.mean([v["alpha"] for v in obs.values()])),
                          "alpha_disagreement_deg": float(np.median(d_alpha))})
    return {"per_image": per_image, "per_pair": per_pair}
