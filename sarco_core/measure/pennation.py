"""Pennation angle: the dominant fascicle orientation in the muscle band, against the deep
aponeurosis' line.

Method: an orientation field read from the band's power spectrum (a Fourier/Radon-type
dominant-orientation estimate, like TimTrack's Hough-based fascicle angle a search over line
directions; no learned model, numpy + OpenCV only):

1. The deep aponeurosis' line: a robust straight-line fit (``cv2.fitLine``, Huber distance) to
   its first row in every column that holds both aponeuroses (the edge that faces the muscle).
2. The region: the muscle band (the pixels strictly between the aponeuroses), cut out at its
   bounding box and shrunk (area averaging) to at most 65536 pixels, which bounds the time per
   frame and keeps fascicles a few pixels apart whatever the scanner's resolution (shrinking
   both axes by one factor leaves angles unchanged); then eroded by 4 pixels so that neither the
   bright aponeuroses nor the crop's edges count, and tapered to zero at its edge (a Gaussian of
   3 pixels) so that the band's own straight edges add little to the spectrum.
3. The power spectrum of the tapered band, kept between periods of 3 and 30 pixels: finer is
   speckle, coarser is the band's shading. Parallel fascicles put their power along one
   direction of the spectrum (perpendicular to them); the power is summed per 1-degree bin of
   orientation.
4. The orientation profile is smoothed (4 degrees) and its broad trend (an 8-degree smoothing)
   subtracted, and the highest local peak 5-80 degrees either side of the deep aponeurosis' line
   is the fascicles' orientation (parabolic refinement between bins). The range is TimTrack's
   idea (it searches 10-80 degrees): power along the aponeurosis (its echo, and the lateral
   elongation of speckle that B-mode's poorer lateral resolution causes) is not fascicles, nor is
   near-vertical power (acoustic shadows). Subtracting the trend keeps the fascicle peak from
   being pulled toward that strong along-aponeurosis power, which biased a plain maximum (and a
   structure-tensor estimate, tried first) by 10-30 degrees on real scans (docs/measurements.md).
5. The pennation angle is the acute angle between that orientation and the deep aponeurosis'
   line, so it does not depend on which way round the probe is held.

The numbers in steps 2-4 are :class:`SpectrumSettings`' defaults, chosen on development images
only (TimTrack's dataset 1 and synthetic stills; ``benchmarks/tune_pennation.py``), so that
TimTrack's datasets 2-4 stay a validation.

Not measured (``None``) when the eroded band holds too few pixels (300), is flat (texture below
1 grey level rms) or no peak stands out of the trend by 2 %. That last check only rejects a
flat profile: pure speckle usually passes it with a chance peak, so frames without visible
fascicles can get a spurious angle; the quality gate, the aponeurosis check before it and the
session's median are the defences, and a confidence that tells the two apart is still to come.

Known limits: curved fascicles get one (the dominant) angle; fascicles closer than 5 degrees to
the deep aponeurosis, or beyond 80, are not found; another regular texture crossing the band (a
vessel, an intramuscular septum) can win the peak.
Validation against the TimTrack observers: docs/measurements.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from sarco_core.measure.labels import check_labels
from sarco_core.measure.thickness import ApoEdges, aponeurosis_edges, band_crop

OK = "ok"
NO_DEEP_LINE = "no_deep_aponeurosis_line"
NO_FASCICLES = "no_fascicle_orientation"

MAX_PIXELS = 65536        # the band crop is shrunk to at most this many pixels
TAPER_SIGMA = 3.0         # px, the window's fall-off at the band's edge
MIN_PIXELS = 300          # eroded band pixels needed to measure
MIN_PROMINENCE = 0.02     # the peak must stand this far (relative) above the trend
MIN_TEXTURE = 1.0         # grey levels (rms about the mean): below it the band is flat


@dataclass(frozen=True)
class SpectrumSettings:
    """The method's free parameters (steps 2-4 of the module's method).

    The defaults are chosen by ``benchmarks/tune_pennation.py`` on development images only:
    TimTrack's dataset 1 (vastus lateralis, three observers) and synthetic stills with the
    generator's angle. TimTrack's datasets 2-4, the validation of docs/measurements.md, take no
    part in the choice.
    """

    margin: int = 4                             # px (working scale) kept clear of the aponeuroses and crop edges
    periods: tuple[float, float] = (3.0, 30.0)  # px, the fascicle spacings the spectrum is read over
    peak_sigma: float = 4.0                     # degrees, the smoothing of the orientation profile
    trend_sigma: float = 8.0                    # degrees, the smoothing that gives the profile's trend
    min_angle: float = 5.0                      # degrees either side of the deep aponeurosis not searched
    max_angle: float = 80.0                     # degrees from the deep aponeurosis searched up to


SETTINGS = SpectrumSettings()


@dataclass(frozen=True)
class PennationResult:
    """Angles in degrees, counter-clockwise from the image's x axis with y pointing up
    (the TimTrack convention: its observers' ``alpha`` is ``fascicle_deg``, ``gamma``
    ``deep_deg``). ``pennation_deg`` is the acute angle between the two lines."""

    pennation_deg: float | None
    fascicle_deg: float | None
    deep_deg: float | None
    prominence: float | None
    status: str


def deep_line_deg(edges: ApoEdges) -> float | None:
    """Angle of the deep aponeurosis' line in (-90, 90] degrees (y up), None below 2 columns."""
    if edges.columns.size < 2:
        return None
    points = np.column_stack([edges.columns, edges.deep_first]).astype(np.float32)
    vx, vy, _, _ = cv2.fitLine(points, cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
    angle = float(np.degrees(np.arctan2(-vy, vx)))  # image rows point down: flip y
    return half_turn(angle)


def orientation_profile(grey: np.ndarray, region: np.ndarray, margin: int, periods: tuple[float, float]
                        ) -> np.ndarray | None:
    """Steps 2-3 on a crop already cut to the region's bounding box: the band's spectral power per
    1-degree orientation bin (y up), or None when the eroded band is too small or flat."""
    if not region.any():
        return None
    crop = grey.astype(np.float32)
    inside = region.astype(np.uint8)
    scale = min(1.0, float(np.sqrt(MAX_PIXELS / crop.size)))
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        inside = cv2.resize(inside, size, interpolation=cv2.INTER_NEAREST)
    inside = cv2.copyMakeBorder(inside, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    inside = cv2.erode(inside, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1)))
    inside = inside[1:-1, 1:-1].astype(np.float32)
    if float(inside.sum()) < MIN_PIXELS:
        return None

    window = cv2.GaussianBlur(inside, (0, 0), TAPER_SIGMA) * inside
    tissue = (crop - float((crop * window).sum() / window.sum())) * window
    if float(np.sqrt((tissue ** 2).sum() / window.sum())) < MIN_TEXTURE:
        return None
    power = np.abs(np.fft.rfft2(tissue)) ** 2
    bins, weights = _orientation_bins(tissue.shape, periods)
    profile = np.bincount(bins, weights=power.ravel()[weights], minlength=180)
    return profile if float(profile.sum()) > 0.0 else None


def profile_peak(profile: np.ndarray, reference_deg: float, settings: SpectrumSettings = SETTINGS
                 ) -> tuple[float, float] | None:
    """Step 4: (the highest local peak of the profile above its trend, in the searched range,
    refined between bins; its prominence), or None when no peak stands out."""
    trend = _circular_smooth(profile, settings.trend_sigma)
    excess = _circular_smooth(profile, settings.peak_sigma) - trend
    relative = (np.arange(180) + 0.5 - reference_deg) % 180.0
    searched = (relative >= settings.min_angle) & (relative <= 180.0 - settings.min_angle) \
        & ((relative <= settings.max_angle) | (relative >= 180.0 - settings.max_angle))
    peaks = searched & (excess > np.roll(excess, 1)) & (excess >= np.roll(excess, -1)) & (excess > 0)
    if not peaks.any():
        return None
    peak = int(np.argmax(np.where(peaks, excess, -np.inf)))
    prominence = float(excess[peak] / trend[peak])
    if prominence < MIN_PROMINENCE:
        return None
    before, at, after = excess[peak - 1], excess[peak], excess[(peak + 1) % 180]
    curvature = before - 2.0 * at + after
    shift = float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0
    return float((peak + 0.5 + shift) % 180.0), prominence


def pennation_angle(grey_u8: np.ndarray, labels: np.ndarray, edges: ApoEdges | None = None,
                    settings: SpectrumSettings = SETTINGS) -> PennationResult:
    """Pennation angle of the muscle between the labelled aponeuroses (see the module's method)."""
    labels = check_labels(labels)
    if grey_u8.shape != labels.shape:
        raise ValueError(f"grey image {grey_u8.shape} and labels {labels.shape} differ in size")
    if edges is None:
        edges, _ = aponeurosis_edges(labels)
    deep = None if edges is None else deep_line_deg(edges)
    if deep is None:
        return PennationResult(None, None, None, None, NO_DEEP_LINE)
    crop, band = band_pixels(grey_u8, edges)
    profile = orientation_profile(crop, band, settings.margin, settings.periods)
    found = None if profile is None else profile_peak(profile, deep, settings)
    if found is None:
        return PennationResult(None, None, deep, None, NO_FASCICLES)
    fascicle, prominence = found
    return PennationResult(acute_angle(fascicle, deep), half_turn(fascicle), deep, prominence, OK)


def band_pixels(grey_u8: np.ndarray, edges: ApoEdges) -> tuple[np.ndarray, np.ndarray]:
    """(the grey image cut to the muscle band's bounding box, the band's mask there): the region
    :func:`orientation_profile` reads."""
    top, left, band = band_crop(edges)
    return grey_u8[top:top + band.shape[0], left:left + band.shape[1]], band


def acute_angle(orientation_deg: float, line_deg: float) -> float:
    """The acute angle (0-90 degrees) between two undirected lines: the pennation angle of a
    fascicle orientation against the deep aponeurosis' line."""
    between = (orientation_deg - line_deg) % 180.0
    return float(min(between, 180.0 - between))


def half_turn(angle: float) -> float:
    """An undirected line's angle in (-90, 90]."""
    angle = (angle + 90.0) % 180.0 - 90.0
    return 90.0 if angle == -90.0 else angle


def _circular_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    padded = np.concatenate([values[-radius:], values, values[:radius]])
    return np.convolve(padded, kernel / kernel.sum(), mode="valid")


@lru_cache(maxsize=32)
def _orientation_bins(shape: tuple[int, int], periods: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """For ``rfft2`` of an image of ``shape``: the 1-degree orientation bin (y up) of the
    structures each frequency within ``periods`` stands for, and where those frequencies are.

    A frequency vector points across its stripes, so the stripes run 90 degrees from it; the
    half-plane ``rfft2`` keeps covers every orientation once.
    """
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    radius = np.hypot(fx, fy)
    kept = ((radius >= 1.0 / periods[1]) & (radius <= 1.0 / periods[0])).ravel()
    degrees = (np.degrees(np.arctan2(-fy, fx)) + 90.0) % 180.0  # rows point down: flip y
    bins = np.floor(np.broadcast_to(degrees, radius.shape).ravel()[kept]).astype(np.int64) % 180
    return bins, np.flatnonzero(kept)
