"""The tissue under the probe: layer geometry and the echo (reflectivity) maps it produces.

A longitudinal scan of a thigh or calf shows, from the skin down: skin, subcutaneous fat with
connective-tissue septa, the superficial aponeurosis, the pennate muscle with its fascicle
striations, the deep aponeurosis, a deeper muscle (vastus intermedius, soleus) and bone with
its acoustic shadow. This module turns a :class:`MuscleLatent` into two maps on the pixel grid:

- ``diffuse``: scattering power (linear, relative to a specular reflector), later multiplied
  by Rayleigh speckle;
- ``specular``: the amplitude of coherent, mirror-like interfaces (aponeuroses, bone surface),
  later added to the speckle field so they appear as bright continuous lines.

The layers are first laid out flat, from 1-D depth profiles, and then mapped column by column
onto a gently curved geometry: one shared tilt and undulation below the skin, and aponeuroses
that converge by up to 2 degrees (linearly, about the image centre). The vertical distance
between the aponeuroses' inner borders is therefore exactly ``muscle_thickness_mm /
mm_per_pixel`` pixels at the centre column and on average over the columns; the fat
thickness is the latent one at the centre column.

Muscle echo is built in decibels: the mean level rises with ``echo_intensity`` and the
oriented striation texture's amplitude and sharpness rise with ``fascicle_contrast``, so the
rendered mean grey and striation energy follow the latent monotonically.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MUSCLES = ("rectus_femoris", "gastrocnemius")
SKIN_MM = 1.6  # epidermis + dermis
APONEUROSIS_MM = 1.2  # thickness of each aponeurosis (superficial and deep)
_BONE_SURFACE_MM = 1.0
# Fascicle direction in the displayed image, degrees clockwise from horizontal per unit of
# pennation: rectus/vastus fascicles rise to the right, gastrocnemius fascicles descend.
_FASCICLE_SIGN = {"rectus_femoris": -1.0, "gastrocnemius": 1.0}
_DEEP_MUSCLE_MM = {"rectus_femoris": (10.0, 18.0), "gastrocnemius": (12.0, 20.0)}
_BONE_GAP_MM = {"rectus_femoris": (0.0, 0.0), "gastrocnemius": (6.0, 12.0)}
_COARSE = 8  # textures are drawn this much coarser along their long axis


@dataclass(frozen=True)
class MuscleLatent:
    """What the image of one muscle is rendered from (the image modality's latent truth)."""

    muscle: str  # "rectus_femoris" | "gastrocnemius"
    muscle_thickness_mm: float  # ~8-35
    subcutaneous_fat_mm: float  # ~2-25
    echo_intensity: float  # 0..1 mean muscle echogenicity (healthy ~0.25, sarcopenic ~0.5)
    fascicle_contrast: float  # 0..1 crispness of fascicle striations (1 crisp)
    pennation_deg: float  # ~8-25

    def __post_init__(self) -> None:
        problems = []
        if self.muscle not in MUSCLES:
            problems.append(f"muscle {self.muscle!r} is not one of {', '.join(MUSCLES)}")
        if not 1.0 <= self.muscle_thickness_mm <= 80.0:
            problems.append(f"muscle_thickness_mm {self.muscle_thickness_mm} is outside 1-80 mm")
        if not 0.5 <= self.subcutaneous_fat_mm <= 60.0:
            problems.append(f"subcutaneous_fat_mm {self.subcutaneous_fat_mm} is outside 0.5-60 mm")
        for name in ("echo_intensity", "fascicle_contrast"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} {getattr(self, name)} is outside 0..1")
        if not 0.0 <= self.pennation_deg <= 45.0:
            problems.append(f"pennation_deg {self.pennation_deg} is outside 0-45 degrees")
        if problems:
            raise ValueError("invalid MuscleLatent: " + "; ".join(problems) + " (fix the latent draw)")

    @property
    def deep_aponeurosis_bottom_mm(self) -> float:
        """Depth below the skin of the deepest structure a sonographer keeps in view."""
        return SKIN_MM + self.subcutaneous_fat_mm + 2 * APONEUROSIS_MM + self.muscle_thickness_mm


@dataclass(frozen=True)
class TissueMaps:
    """Echo maps on the pixel grid (float32, H x W): diffuse power and specular amplitude; and
    ``labels`` (uint8, H x W, when the maps come from a muscle latent): the aponeuroses in the
    measurement label convention, 1 superficial, 2 deep, 0 other (sarco_core.measure), exactly
    where the layers were laid."""

    diffuse: np.ndarray
    specular: np.ndarray
    labels: np.ndarray | None = None


def muscle_level_db(echo_intensity: float) -> float:
    """Mean muscle echo in dB under a specular reflector: -32 dB (dark) to -2 dB.

    Fatty infiltration and fibrosis raise echogenicity: healthy muscle (0.25) sits about 25 dB
    under an aponeurosis, a sarcopenic one (0.5) about 17 dB under it.
    """
    return -32.0 + 30.0 * echo_intensity


def _rotated_canvas(shape: tuple[int, int], angle_deg: float) -> tuple[int, int, np.ndarray]:
    """Canvas size (rows at full resolution, columns ``_COARSE`` times coarser) covering an
    image of ``shape`` in any rotation, and the affine map image (x, y) -> canvas (col, row)."""
    height, width = shape
    side = int(np.ceil(np.hypot(height, width))) + 4
    columns = side // _COARSE + 4
    theta = np.deg2rad(angle_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    cx, cy = width / 2.0, height / 2.0
    matrix = np.array(
        [
            [cos / _COARSE, sin / _COARSE, columns / 2.0 - (cos * cx + sin * cy) / _COARSE],
            [-sin, cos, side / 2.0 - (-sin * cx + cos * cy)],
        ]
    )
    return side, columns, matrix


def _unrotate(canvas: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(canvas, matrix, (shape[1], shape[0]), flags=flags, borderMode=cv2.BORDER_REFLECT)


def _standardise(texture: np.ndarray) -> np.ndarray:
    texture -= texture.mean()
    texture /= texture.std() + 1e-6
    return texture


def oriented_noise(
    shape: tuple[int, int], angle_deg: float, along_px: float, across_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian texture elongated along ``angle_deg`` (clockwise).

    Noise is blurred anisotropically in a rotated frame sampled ``_COARSE`` times coarser along
    the streaks (they are long there anyway); one affine warp rotates and upsamples it, which
    keeps this cheap. The number of random draws depends only on ``shape``, so two latents
    rendered with one seed share their noise and differ only where the latent differs.
    """
    side, columns, matrix = _rotated_canvas(shape, angle_deg)
    canvas = rng.standard_normal((side, columns), dtype=np.float32)
    canvas = cv2.GaussianBlur(canvas, (0, 0), sigmaX=max(along_px / _COARSE, 0.5), sigmaY=max(across_px, 0.4))
    return _standardise(_unrotate(canvas, matrix, shape))


def fascicle_lines(
    shape: tuple[int, int],
    angle_deg: float,
    spacing_px: float,
    width_px: float,
    dash_px: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Zero-mean, unit-variance striations: straight parallel bright lines (perimysium between
    fascicles) at ``angle_deg``, ``spacing_px`` apart on average, ``width_px`` thick (Gaussian
    sigma), broken into dashes about ``dash_px`` long. The random draws depend only on
    ``shape`` and ``spacing_px``, not on the angle or width."""
    side, columns, matrix = _rotated_canvas(shape, angle_deg)
    count = int(side / spacing_px)
    profile = np.zeros(side, dtype=np.float32)
    np.add.at(profile, rng.integers(0, side, count), rng.exponential(1.0, count).astype(np.float32) ** 1.5)
    profile = cv2.GaussianBlur(profile[:, None], (0, 0), sigmaX=0.1, sigmaY=max(width_px, 0.4))
    dashes = rng.standard_normal((side, columns), dtype=np.float32)
    dashes = cv2.GaussianBlur(dashes, (0, 0), sigmaX=max(dash_px / _COARSE, 0.5), sigmaY=max(width_px, 0.7))
    dashes = np.clip(0.1 + 1.5 * dashes / (dashes.std() + 1e-6), 0.0, 1.0)
    lines = _unrotate(profile * dashes, matrix, shape)
    # In decibels: bright lines over a darker background of fibres, not symmetric noise.
    return _standardise(np.log(lines + 0.15 * float(lines.mean())))


def smooth_noise(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance isotropic texture of feature size ~``scale_px`` (drawn coarse)."""
    step = max(scale_px / 2.0, 1.0)
    coarse = rng.standard_normal((int(shape[0] / step) + 3, int(shape[1] / step) + 3), dtype=np.float32)
    coarse = cv2.GaussianBlur(coarse, (0, 0), 1.0)
    return _standardise(cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC))


def _band(depth: np.ndarray, top: float, bottom: float, pixel_mm: float) -> np.ndarray:
    """Anti-aliased indicator of top <= depth < bottom (pixel-coverage weights in 0..1)."""
    upper = np.clip((depth - top) / pixel_mm + 0.5, 0.0, 1.0)
    lower = np.clip((bottom - depth) / pixel_mm + 0.5, 0.0, 1.0)
    return (upper * lower).astype(np.float32)


def _column_mm(width: int, pixel_mm: float) -> np.ndarray:
    """Lateral position of each column's centre relative to the image centre (mean exactly 0)."""
    return (np.arange(width, dtype=np.float32) + 0.5 - width / 2.0) * pixel_mm


def _lateral_offset(width: int, pixel_mm: float, fat_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Shared depth offset (mm) of every layer below the fat: a gentle tilt and undulation.

    Zero at the centre, so the latent fat thickness holds there; never brings the fascia
    closer than 0.8 mm to the skin.
    """
    x_mm = _column_mm(width, pixel_mm)
    tilt = np.tan(np.deg2rad(rng.uniform(-2.0, 2.0)))
    amplitude, wavelength, phase = rng.uniform(0.1, 0.6), rng.uniform(80.0, 160.0), rng.uniform(0, 2 * np.pi)
    offset = tilt * x_mm + amplitude * (np.sin(2 * np.pi * x_mm / wavelength + phase) - np.sin(phase))
    return np.maximum(offset, 0.8 - fat_mm).astype(np.float32)


def _thickness_spread(width: int, pixel_mm: float, thickness_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Per-column change of muscle thickness (mm): the aponeuroses converge by up to 2 degrees.

    Linear in the column position and zero at the centre, so the thickness is the latent one
    at the centre column and on average over the columns; never more than 25% either way.
    """
    x_mm = _column_mm(width, pixel_mm)
    limit = 0.25 * thickness_mm / max(float(np.abs(x_mm).max()), pixel_mm)
    slope = float(np.clip(np.tan(np.deg2rad(rng.uniform(-2.0, 2.0))), -limit, limit))
    return (slope * x_mm).astype(np.float32)


def _flat_depth(
    shown_mm: np.ndarray, latent: MuscleLatent, offset_mm: np.ndarray, spread_mm: np.ndarray
) -> np.ndarray:
    """Depth in the flat layout (mm) that each displayed pixel shows (H x W), piecewise linear.

    Skin stays put; fat stretches to its per-column thickness (latent + offset); the
    superficial aponeurosis shifts by the offset; muscle stretches to latent + spread; every
    deeper layer shifts by offset + spread.
    """
    fat_shown = latent.subcutaneous_fat_mm + offset_mm
    muscle_shown = latent.muscle_thickness_mm + spread_mm
    muscle_top = SKIN_MM + latent.subcutaneous_fat_mm + APONEUROSIS_MM
    muscle_top_shown = muscle_top + offset_mm
    fat = SKIN_MM + (shown_mm - SKIN_MM) * (latent.subcutaneous_fat_mm / fat_shown)
    muscle = muscle_top + (shown_mm - muscle_top_shown) * (latent.muscle_thickness_mm / muscle_shown)
    depth = np.where(shown_mm < muscle_top_shown + muscle_shown, muscle, shown_mm - offset_mm - spread_mm)
    depth = np.where(shown_mm < muscle_top_shown, shown_mm - offset_mm, depth)
    depth = np.where(shown_mm < SKIN_MM + fat_shown, fat, depth)
    return np.where(shown_mm < SKIN_MM, shown_mm, depth).astype(np.float32)


def _decibels(level_db: np.ndarray) -> np.ndarray:
    return np.exp(level_db * np.float32(np.log(10.0) / 10.0))


@dataclass(frozen=True)
class _Layers:
    """Depths (mm below the skin) of the layer borders in the flat layout."""

    fascia_top: float
    muscle_top: float
    muscle_bottom: float
    deep_top: float
    deep_bottom: float
    bone_top: float
    bone_bottom: float

    @classmethod
    def of(cls, latent: MuscleLatent, rng: np.random.Generator) -> _Layers:
        fascia_top = SKIN_MM + latent.subcutaneous_fat_mm
        muscle_bottom = fascia_top + APONEUROSIS_MM + latent.muscle_thickness_mm
        deep_bottom = muscle_bottom + APONEUROSIS_MM + rng.uniform(*_DEEP_MUSCLE_MM[latent.muscle])
        bone_top = deep_bottom + rng.uniform(*_BONE_GAP_MM[latent.muscle])
        return cls(
            fascia_top=fascia_top,
            muscle_top=fascia_top + APONEUROSIS_MM,
            muscle_bottom=muscle_bottom,
            deep_top=muscle_bottom + APONEUROSIS_MM,
            deep_bottom=deep_bottom,
            bone_top=bone_top,
            bone_bottom=bone_top + _BONE_SURFACE_MM,
        )


def _flat_maps(
    latent: MuscleLatent, layers: _Layers, shape: tuple[int, int], pixel_mm: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse power and specular amplitude of the flat (horizontal) layout."""
    depth = ((np.arange(shape[0], dtype=np.float32) + 0.5) * pixel_mm)[:, None]
    crisp = latent.fascicle_contrast
    angle = _FASCICLE_SIGN[latent.muscle] * latent.pennation_deg
    line_px, spacing_px, dash_px = (0.08 + 0.30 * (1.0 - crisp)) / pixel_mm, 0.7 / pixel_mm, 1.6 / pixel_mm
    fascicles = fascicle_lines(shape, angle, spacing_px, line_px, dash_px, rng)
    deep_fascicles = fascicle_lines(shape, -0.5 * angle, spacing_px, line_px, dash_px, rng)
    horizontal = oriented_noise(shape, rng.uniform(-3.0, 3.0), 4.0 / pixel_mm, 0.15 / pixel_mm, rng)
    bundles = oriented_noise(shape, angle, 6.0 / pixel_mm, 2.0 / pixel_mm, rng)  # fascicle bundles
    along = smooth_noise((1, shape[1]), 6.0 / pixel_mm, rng)  # brightness of the interfaces along x

    def band(top: float, bottom: float) -> np.ndarray:
        return _band(depth, top, bottom, pixel_mm)

    striation_db = 3.0 + 6.0 * crisp
    muscle_db = muscle_level_db(latent.echo_intensity)
    septa = 12.0 * np.maximum(horizontal - 1.0, 0.0)  # sparse bright connective tissue in the fat
    n = layers
    level_db = (
        (-16.0 + 3.0 * horizontal) * band(0.0, SKIN_MM)
        + (-35.0 + septa + 2.0 * bundles) * band(SKIN_MM, n.fascia_top)
        + (-5.0 + 3.0 * horizontal) * (band(n.fascia_top, n.muscle_top) + band(n.muscle_bottom, n.deep_top))
        + (muscle_db + striation_db * fascicles + 4.0 * bundles) * band(n.muscle_top, n.muscle_bottom)
        + (muscle_db - 2.0 + 0.8 * striation_db * deep_fascicles + 4.0 * bundles) * band(n.deep_top, n.deep_bottom)
        + (muscle_db - 4.0 + 3.0 * bundles) * band(n.deep_bottom, n.bone_top)
        + (-6.0 + 3.0 * horizontal) * band(n.bone_top, n.bone_bottom)
        + (-30.0 + 3.0 * bundles) * band(n.bone_bottom, np.inf)
    )
    shadow = 1.0 - 0.99 * np.clip((depth - n.bone_bottom) / (2.0 * pixel_mm), 0.0, 1.0)
    interfaces = (
        0.45 * band(0.1, 0.4)  # skin entry echo
        + 1.5 * band(n.fascia_top, n.muscle_top)
        + 1.3 * band(n.muscle_bottom, n.deep_top)
        + 2.2 * band(n.bone_top, n.bone_bottom)
    )
    return _decibels(level_db) * shadow, interfaces * np.clip(1.0 + 0.5 * along, 0.15, None)


def tissue_maps(
    latent: MuscleLatent, shape: tuple[int, int], pixel_mm: float, rng: np.random.Generator
) -> TissueMaps:
    """Diffuse and specular echo maps of a scan ``shape`` (H, W) pixels at ``pixel_mm``.

    Attenuation, speckle and the scanner's grey map come later (:mod:`model_build.synth.bmode`).
    """
    height, width = shape
    offset_mm = _lateral_offset(width, pixel_mm, latent.subcutaneous_fat_mm, rng)
    spread_mm = _thickness_spread(width, pixel_mm, latent.muscle_thickness_mm, rng)
    margin = int(np.ceil(max(0.0, -float((offset_mm + spread_mm).min())) / pixel_mm)) + 2
    layers = _Layers.of(latent, rng)
    diffuse, specular = _flat_maps(latent, layers, (height + margin, width), pixel_mm, rng)

    # Lay the flat layers onto the curved, converging geometry, column by column.
    shown_mm = ((np.arange(height, dtype=np.float32) + 0.5) * pixel_mm)[:, None]
    map_y = _flat_depth(shown_mm, latent, offset_mm[None, :], spread_mm[None, :]) / pixel_mm - 0.5
    map_x = np.ascontiguousarray(np.broadcast_to(np.arange(width, dtype=np.float32)[None, :], (height, width)))

    def lay(flat: np.ndarray) -> np.ndarray:
        return cv2.remap(flat.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    labels = cv2.remap(_flat_labels(layers, height + margin, width, pixel_mm), map_x, map_y, cv2.INTER_NEAREST,
                       borderMode=cv2.BORDER_REPLICATE)
    return TissueMaps(diffuse=lay(diffuse), specular=lay(specular), labels=labels)


def _flat_labels(layers: _Layers, height: int, width: int, pixel_mm: float) -> np.ndarray:
    """The aponeuroses of the flat layout as labels (1 superficial, 2 deep): the rows whose centre
    lies in the fascia (fascia_top..muscle_top) or the deep aponeurosis (muscle_bottom..deep_top)."""
    depth = (np.arange(height, dtype=np.float32) + 0.5) * pixel_mm
    column = np.zeros(height, np.uint8)
    column[(depth >= layers.fascia_top) & (depth < layers.muscle_top)] = 1
    column[(depth >= layers.muscle_bottom) & (depth < layers.deep_top)] = 2
    return np.ascontiguousarray(np.broadcast_to(column[:, None], (height, width)))
