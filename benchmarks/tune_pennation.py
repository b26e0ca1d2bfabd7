"""Choose the pennation method's free parameters on TimTrack's dataset 1, and only there.

    PYTHONPATH=. python benchmarks/tune_pennation.py [--data ../shared/data] [--model MODEL] [--out JSON]

The spectrum method (sarco_core/measure/pennation.py) has free parameters: the margin kept clear
of the aponeuroses, the band of fascicle spacings read, the two smoothings of the orientation
profile, and the angles searched. Issue #23 validates the fascicle angle against the TimTrack
observers on datasets 2-4, so the parameters must be chosen on other images. Dataset 1 is the
one: vastus lateralis (another muscle than datasets 2-4's gastrocnemii), 153 images, the same
three observers (TZ, EM, BH), and none of its images is in any training or validation set.

Every image goes through the device's path with the shipped segmentation model (scan region,
labels, deep aponeurosis line, muscle band); the fascicle angle is then read for every setting
of a grid and compared with the observers' mean ``alpha``, as ``sarco measure evaluate`` compares
it on datasets 2-4. The setting with the lowest median absolute error over all images (an image
it does not measure counts as the worst error) is printed with the median over the measured
images and its bootstrap 95 % CI, beside the current defaults and the observers' disagreement on
dataset 1.
The grid's profiles are computed once per (margin, periods) and reused across the peak settings.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from model_build.measure.evaluate import predicted_frame_labels
from model_build.measure.infer import AponeurosisModel
from model_build.measure.metrics import summary
from model_build.measure.timtrack import TUNING_DATASET, disagreement, read_observers, timtrack_folder
from sarco_core.measure import measure
from sarco_core.measure.pennation import (SETTINGS, SpectrumSettings, deep_line_deg, half_turn, orientation_profile,
                                         profile_peak)
from sarco_core.measure.thickness import aponeurosis_edges, band_crop

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GRID = {
    "margin": (2, 4, 8, 12, 16),
    "periods": tuple(itertools.product((3.0, 4.0, 6.0), (15.0, 20.0, 30.0, 45.0))),
    "peak_sigma": (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0),
    "trend_sigma": (6.0, 8.0, 10.0, 15.0, 20.0),
    "min_angle": (5.0, 10.0),
    "max_angle": (80.0,),
}


def bands(model: AponeurosisModel, images: dict[str, dict]) -> list[dict]:
    """Per image: the observers' mean alpha and, where the device measures a thickness (as
    ``sarco measure evaluate`` requires before it reads the angle), the grey crop of the muscle
    band, the band's mask and the deep aponeurosis' line."""
    found = []
    for entry in disagreement(images)["per_image"]:
        image = cv2.imread(str(images[entry["image"]]["path"]), cv2.IMREAD_UNCHANGED)
        labels, prepared = predicted_frame_labels(image, model.logits, model.recipe)
        item = {"image": entry["image"], "alpha": entry["alpha_mean_deg"], "band": None}
        if labels is not None:
            x0, y0, x1, y1 = prepared.box
            crop = labels[y0:y1, x0:x1]
            edges, _ = aponeurosis_edges(crop)
            thick = measure(prepared.grey, crop).muscle_thickness_px is not None
            deep = deep_line_deg(edges) if thick and edges is not None else None
            if deep is not None:
                top, left, band = band_crop(edges)
                grey = prepared.grey[top:top + band.shape[0], left:left + band.shape[1]]
                item.update(band=band, deep=deep, grey=grey)
        found.append(item)
    return found


def errors_by_setting(found: list[dict]) -> dict[SpectrumSettings, list[float | None]]:
    """|fascicle angle - observers' mean alpha| per image (None: not measured) for every grid setting."""
    errors: dict[SpectrumSettings, list[float | None]] = {}
    for margin, periods in itertools.product(GRID["margin"], GRID["periods"]):
        profiles = [None if f["band"] is None else orientation_profile(f["grey"], f["band"], margin, periods)
                    for f in found]
        for peak_sigma, trend_sigma, min_angle, max_angle in itertools.product(
                GRID["peak_sigma"], GRID["trend_sigma"], GRID["min_angle"], GRID["max_angle"]):
            settings = SpectrumSettings(margin, periods, peak_sigma, trend_sigma, min_angle, max_angle)
            row = []
            for f, profile in zip(found, profiles):
                peak = None if profile is None else profile_peak(profile, f["deep"], settings)
                row.append(None if peak is None else abs(abs(half_turn(peak[0])) - f["alpha"]))
            errors[settings] = row
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding muscle-us-timtrack")
    parser.add_argument("--model", type=Path, help="measurement bundle (default: the shipped one)")
    parser.add_argument("--out", type=Path, help="write every setting's figures here (JSON)")
    args = parser.parse_args()
    try:
        timtrack = timtrack_folder(args.data, (TUNING_DATASET,))
    except FileNotFoundError as error:
        parser.error(str(error))
    images = read_observers(timtrack, TUNING_DATASET)
    found = bands(AponeurosisModel(args.model, threads=1), images)
    errors = errors_by_setting(found)

    def score(settings: SpectrumSettings) -> tuple[float, float]:
        """(median |error| over every image, an unmeasured one counting as the worst; share measured).
        A median over the measured images alone would reward settings that give up on hard images."""
        row = errors[settings]
        return (float(np.median([np.inf if e is None else e for e in row])),
                sum(e is not None for e in row) / len(row))

    ranked = sorted(errors, key=lambda s: score(s)[0])
    anchor = np.median([r["alpha_disagreement_deg"] for r in disagreement(images)["per_image"]])
    print(f"dataset {TUNING_DATASET}: {len(found)} images, {sum(f['band'] is not None for f in found)} with a muscle "
          f"band; observers' median disagreement on alpha {anchor:.2f} deg; {len(errors)} settings")
    for label, settings in [("chosen", ranked[0]), *[(f"#{k + 1}", s) for k, s in enumerate(ranked[1:5], 1)],
                            (f"current (#{ranked.index(SETTINGS) + 1})", SETTINGS)]:
        ci = summary(errors[settings])
        print(f"  {label:15s} median |error| {score(settings)[0]:.2f} deg (unmeasured = worst), "
              f"{ci['value']:.2f} over the {score(settings)[1]:.0%} measured (95 % CI {ci['ci95'][0]:.2f}-"
              f"{ci['ci95'][1]:.2f}): {asdict(settings)}")
    if args.out:
        args.out.write_text(json.dumps({"dataset": TUNING_DATASET, "images": len(found),
                                        "observer_disagreement_deg": float(anchor),
                                        "settings": [{**asdict(s), "median_abs_error_deg": score(s)[0],
                                                      "share_measured": score(s)[1]} for s in ranked]}, indent=1))


if __name__ == "__main__":
    main()
