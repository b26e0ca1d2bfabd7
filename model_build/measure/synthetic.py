"""Synthetic training pairs with exact aponeurosis masks, from the synthetic generator.

The generator lays the tissue out itself (model_build.synth.tissue), so it knows where each
aponeurosis is to the pixel: :func:`model_build.synth.render.render_still_with_labels` returns an
exported still of one of the synthetic scanners (a cart's crop, a USB scanner's screenshot, a
pocket app; scanner UI and JPEG export included) with its labels (1 superficial, 2 deep). This
module draws muscles over the range the measurements meet (rectus femoris and gastrocnemius,
8-35 mm thick under 2-20 mm of fat, echo intensity, fascicle crispness and pennation 8-25
degrees), renders them and writes a data folder like ``dl-track-aponeuroses``: ``images/``,
``masks/`` (label images 0/1/2) and ``index.csv`` (image, mask, width, height, plus each
frame's truth: muscle, thickness in mm, mm per pixel, pennation and echo intensity latent).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from model_build.synth.render import PROFILES, MuscleLatent, encode_still, render_still_with_labels
from model_build.synth.tissue import MUSCLES

SYNTHETIC_FOLDER = "synthetic-aponeuroses"


def draw_latent(rng: np.random.Generator) -> MuscleLatent:
    return MuscleLatent(muscle=str(rng.choice(MUSCLES)), muscle_thickness_mm=float(rng.uniform(8.0, 35.0)),
                        subcutaneous_fat_mm=float(rng.uniform(2.0, 20.0)), echo_intensity=float(rng.uniform(0.1, 0.6)),
                        fascicle_contrast=float(rng.uniform(0.2, 1.0)), pennation_deg=float(rng.uniform(8.0, 25.0)))


def write_synthetic_pairs(folder: Path, count: int, seed: int = 0,
                          progress: Callable[[int, int], None] | None = None) -> Path:
    """``count`` rendered stills with their masks in ``folder`` (created); returns it."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    names = sorted(PROFILES)
    rows = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        latent = draw_latent(rng)
        profile = PROFILES[names[index % len(names)]]
        image, labels = render_still_with_labels(latent, profile, rng)
        suffix = profile.still_suffix
        name = f"syn_{index:05d}"
        (folder / "images" / f"{name}{suffix}").write_bytes(encode_still(image, suffix, profile.jpeg_quality))
        cv2.imwrite(str(folder / "masks" / f"{name}.png"), labels)
        rows.append({"image": f"images/{name}{suffix}", "mask": f"masks/{name}.png",
                     "width": image.pixels.shape[1], "height": image.pixels.shape[0], "scanner": profile.name,
                     "muscle": latent.muscle, "muscle_thickness_mm": round(latent.muscle_thickness_mm, 4),
                     "mm_per_pixel": round(image.mm_per_pixel, 6), "pennation_deg": round(latent.pennation_deg, 3),
                     "echo_intensity_latent": round(latent.echo_intensity, 4)})
        if progress is not None:
            progress(index + 1, count)
    with (folder / "index.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (folder / "README.md").write_text(
        f"# Synthetic aponeurosis pairs\n\n{count} stills rendered by sarco's synthetic generator (seed {seed}), "
        "with exact aponeurosis masks (0 other, 1 superficial, 2 deep). Made by `sarco measure synth` or "
        "`sarco measure train --synthetic N`; no real person is shown.\n", encoding="utf-8")
    return folder
