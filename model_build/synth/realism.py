"""Image statistics that compare synthetic B-mode images with real ones.

Three numbers per scan area (grey, uint8), chosen because a CNN sees them and a generator can
get them wrong: the mean grey level (gain, echogenicity), the speckle contrast std/mean, and
the speckle grain size as the full width at half maximum of the autocorrelation, laterally and
axially, of the central 384 x 384 pixels minus their local mean (a Gaussian high-pass of
sigma 3 px, which keeps the speckle and drops anatomy). Real values come from ``../shared/data`` cropped to the scan
areas listed in tests/data/real_scan_boxes_for_realism.csv.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_HIGH_PASS_SIGMA_PX = 3.0
_MAX_LAG_PX = 64  # speckle grains are far narrower; a wider half-maximum reads as 2 * 64
_ACF_SIZE_PX = 384  # grain size is read from the central 384 x 384 pixels (plenty of grains)


@dataclass(frozen=True)
class ScanStatistics:
    """Mean grey, speckle contrast (std / mean) and speckle FWHM in pixels (lateral, axial)."""

    mean: float
    contrast: float
    lateral_fwhm_px: float
    axial_fwhm_px: float

    def as_dict(self) -> dict[str, float]:
        return {
            "mean": self.mean,
            "contrast": self.contrast,
            "lateral_fwhm_px": self.lateral_fwhm_px,
            "axial_fwhm_px": self.axial_fwhm_px,
        }


def _half_maximum_width(autocorrelation: np.ndarray) -> float:
    """Twice the first lag where a normalised autocorrelation falls under 0.5 (interpolated)."""
    below = np.flatnonzero(autocorrelation < 0.5)
    if below.size == 0:
        return float(2 * autocorrelation.size)
    lag = int(below[0])
    before, after = autocorrelation[lag - 1], autocorrelation[lag]
    return float(2.0 * (lag - 1 + (before - 0.5) / (before - after)))


def scan_statistics(grey: np.ndarray) -> ScanStatistics:
    """Statistics of a grey scan area (uint8 H x W; colour images: convert to grey first)."""
    if grey.ndim != 2 or min(grey.shape) < _MAX_LAG_PX:
        raise ValueError(
            f"scan_statistics needs a 2-D grey scan area of at least {_MAX_LAG_PX} pixels a side, got {grey.shape}"
        )
    image = grey.astype(np.float32)
    mean = float(image.mean())
    rows, columns = (max((n - _ACF_SIZE_PX) // 2, 0) for n in image.shape)
    centre = image[rows : rows + _ACF_SIZE_PX, columns : columns + _ACF_SIZE_PX]
    detail = centre - cv2.GaussianBlur(centre, (0, 0), _HIGH_PASS_SIGMA_PX)
    # Zero-padded to a fast DFT size with room for the lags read: a linear, not circular,
    # autocorrelation.
    padded = np.zeros([cv2.getOptimalDFTSize(n + _MAX_LAG_PX) for n in detail.shape], dtype=np.float32)
    padded[: detail.shape[0], : detail.shape[1]] = detail
    spectrum = cv2.dft(padded, flags=cv2.DFT_COMPLEX_OUTPUT)
    power = cv2.mulSpectrums(spectrum, spectrum, 0, conjB=True)
    autocorrelation = cv2.idft(power, flags=cv2.DFT_REAL_OUTPUT)[:_MAX_LAG_PX, :_MAX_LAG_PX]
    autocorrelation /= autocorrelation[0, 0]
    return ScanStatistics(
        mean=mean,
        contrast=float(image.std() / max(mean, 1e-6)),
        lateral_fwhm_px=_half_maximum_width(autocorrelation[0, :]),
        axial_fwhm_px=_half_maximum_width(autocorrelation[:, 0]),
    )


def as_grey(pixels: np.ndarray) -> np.ndarray:
    """Grey version of a grey, BGR or BGRA image, as the statistics use it."""
    if pixels.ndim == 2:
        return pixels
    code = cv2.COLOR_BGRA2GRAY if pixels.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(pixels, code)


@dataclass(frozen=True)
class RealScanBox:
    """Files matching ``pattern`` (relative to the data folder) and their scan area."""

    pattern: str
    box: tuple[int, int, int, int]
    scanner: str


def read_scan_boxes(table: Path) -> list[RealScanBox]:
    """The hand-picked scan areas of the real images (a CSV: pattern, x0, y0, x1, y1, scanner, note)."""
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [RealScanBox(r["pattern"], tuple(int(r[k]) for k in ("x0", "y0", "x1", "y1")), r["scanner"]) for r in rows]


def real_statistics(data_folder: Path, boxes: list[RealScanBox]) -> list[tuple[Path, ScanStatistics]]:
    """Statistics of every real image the boxes name, cropped to its scan area."""
    results = []
    for entry in boxes:
        x0, y0, x1, y1 = entry.box
        for path in sorted(data_folder.glob(entry.pattern)):
            pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if pixels is None:
                raise ValueError(f"{path}: OpenCV cannot read this image")
            results.append((path, scan_statistics(as_grey(pixels)[y0:y1, x0:x1])))
    return results
