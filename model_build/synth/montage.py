"""A montage of synthetic images beside real ones, for the eye (docs/synthetic-vs-real.png).

Row 1: real exports from ``../shared/data`` (GE crop and screen, Telemed screenshots).
Row 2: synthetic stills of the three centers' scanners, healthy and sarcopenic muscle.
Row 3: 256 x 256 pixel crops inside the scan areas at native scale, real then synthetic, so
speckle grain, striations and grey levels can be compared without resampling.

It also prints, as a Markdown table, the realism statistics (:mod:`model_build.synth.realism`)
of all real images beside those of each scanner over a grid of latents, for
docs/synthetic-images.md.

    python -m model_build.synth.montage docs/synthetic-vs-real.png [--data ../shared/data]
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import typer

from model_build.synth.realism import as_grey, read_scan_boxes, real_statistics, scan_statistics
from model_build.synth.render import PROFILES, MuscleLatent, exported_pixels, render_still
from sarco_core.files import atomic_write

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"
REAL_BOXES = REPO_ROOT / "tests" / "data" / "real_scan_boxes_for_realism.csv"
_TILE_HEIGHT = 300
_CROP = 256
_HEALTHY = MuscleLatent("rectus_femoris", 24.0, 7.0, 0.22, 0.85, 14.0)
_SARCOPENIC = MuscleLatent("rectus_femoris", 12.0, 11.0, 0.55, 0.2, 9.0)
_CALF = MuscleLatent("gastrocnemius", 16.0, 5.0, 0.3, 0.7, 21.0)

# (label, file under the data folder, crop origin (x, y) inside the scan area)
_TIMTRACK = "muscle-us-timtrack/"
REAL_IMAGES = (
    ("real GE Logiq E9 crop (VL)", _TIMTRACK + "dataset1/S2/S2_L20_step_175.png", (120, 60)),
    (
        "real GE Logiq E9 screen (GL)",
        _TIMTRACK + "dataset2/range-of-motion/gastroc_range_of_motion_242.png",
        (220, 150),
    ),
    ("real Telemed screenshot (GM)", _TIMTRACK + "dataset3/030/p6_isokinetic030_01_push_01_73.jpg", (600, 160)),
    ("real Telemed screen (GM)", _TIMTRACK + "dataset4/SampleA/GM_T_6.png", (420, 120)),
)
SYNTHETIC = (
    ("synthetic A cart, healthy RF", _HEALTHY, "A", 11),
    ("synthetic A cart, sarcopenic RF", _SARCOPENIC, "A", 12),
    ("synthetic B usb, calf", _CALF, "B", 13),
    ("synthetic C pocket, sarcopenic RF", _SARCOPENIC, "C", 14),
)


def _bgr(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    return pixels[:, :, :3]


def _labelled(tile: np.ndarray, label: str) -> np.ndarray:
    bar = np.full((26, tile.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(bar, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, tile])


def _to_height(image: np.ndarray, height: int) -> np.ndarray:
    width = int(round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _pad(image: np.ndarray, bottom: int, right: int) -> np.ndarray:
    return cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=(255, 255, 255))


def _row(tiles: list[np.ndarray], gap: int = 8) -> np.ndarray:
    height = max(t.shape[0] for t in tiles)
    return np.hstack([_pad(tile, height - tile.shape[0], gap) for tile in tiles])


def _stack(rows: list[np.ndarray], gap: int = 10) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    return np.vstack([_pad(row, gap, width - row.shape[1]) for row in rows])


def build_montage(data_folder: Path) -> np.ndarray:
    """The montage as a BGR image; raises FileNotFoundError naming a missing real image."""
    full_real, crops_real = [], []
    for label, relative, (x, y) in REAL_IMAGES:
        path = data_folder / relative
        pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if pixels is None:
            raise FileNotFoundError(f"{path}: missing or unreadable; is --data the shared data folder?")
        full_real.append(_labelled(_to_height(pixels, _TILE_HEIGHT), label))
        crops_real.append(_labelled(_bgr(as_grey(pixels)[y : y + _CROP, x : x + _CROP]), label.replace("real ", "")))
    full_synthetic, crops_synthetic = [], []
    for label, latent, center, seed in SYNTHETIC:
        image = render_still(latent, PROFILES[center], np.random.default_rng(seed))
        pixels = exported_pixels(image, PROFILES[center])
        full_synthetic.append(_labelled(_to_height(_bgr(pixels), _TILE_HEIGHT), label))
        x0, y0, x1, _ = image.scan_box
        x = x0 + max(0, (x1 - x0 - _CROP) // 2)
        y = y0 + int(round((2.0 + latent.subcutaneous_fat_mm) / image.mm_per_pixel))
        crop = as_grey(pixels)[y : y + _CROP, x : x + _CROP]
        crops_synthetic.append(_labelled(_bgr(crop), label.replace("synthetic ", "syn ")))
    return _stack([_row(full_real), _row(full_synthetic), _row(crops_real + crops_synthetic, gap=6)])


def _latent_grid() -> list[MuscleLatent]:
    """Corners of the latent space the cohort draws from, both muscles (16 latents)."""
    return [
        MuscleLatent(muscle, thickness, fat, echo, contrast, pennation)
        for muscle, pennation in (("rectus_femoris", 12.0), ("gastrocnemius", 20.0))
        for thickness, fat in ((10.0, 20.0), (28.0, 4.0))
        for echo, contrast in ((0.15, 0.95), (0.7, 0.1))
        for _ in range(2)
    ]


def realism_table(data_folder: Path) -> str:
    """Markdown table: min-max of each statistic over the real images and per scanner."""
    real = [s.as_dict() for _, s in real_statistics(data_folder, read_scan_boxes(REAL_BOXES))]
    columns = {f"real ({len(real)} images)": real}
    for center, profile in PROFILES.items():
        values = []
        for seed, latent in enumerate(_latent_grid()):
            image = render_still(latent, profile, np.random.default_rng(seed))
            x0, y0, x1, y1 = image.scan_box
            values.append(scan_statistics(as_grey(exported_pixels(image, profile))[y0:y1, x0:x1]).as_dict())
        columns[f"{center} {profile.layout}"] = values
    lines = ["| statistic | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for key in real[0]:
        cells = [f"{min(v[key] for v in vs):.2f}-{max(v[key] for v in vs):.2f}" for vs in columns.values()]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(
    out: Path = typer.Argument(..., help="PNG to write, e.g. docs/synthetic-vs-real.png"),
    data: Path = typer.Option(DEFAULT_DATA, help="the shared real-data folder"),
) -> None:
    """Write the synthetic-vs-real montage."""
    if not data.is_dir():
        typer.echo(f"{data}: real data folder not found; pass --data PATH to ../shared/data", err=True)
        raise typer.Exit(code=1)
    try:
        montage = build_montage(data)
    except FileNotFoundError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from None
    atomic_write(out, cv2.imencode(".png", montage)[1].tobytes())
    typer.echo(f"wrote {out} ({montage.shape[1]} x {montage.shape[0]})")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # TIFF tag warnings (DeepACSA)
    typer.echo(realism_table(data))


if __name__ == "__main__":
    typer.run(main)
