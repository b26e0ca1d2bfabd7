"""B-mode image formation: speckle, point-spread function, attenuation, log compression.

The echo of many sub-resolution scatterers is a circular complex Gaussian (fully developed
speckle): white complex noise scaled by the square root of the diffuse power, blurred by the
scanner's Gaussian point-spread function (PSF), gives a Rayleigh-distributed envelope with
grains the size of the PSF. Specular interfaces add a coherent amplitude to that field (a
Rician envelope: bright, continuous lines). Residual depth attenuation (what time-gain
compensation leaves), an electronic noise floor, log compression onto the scanner's dynamic
range, its grey map and its post-processing then give the displayed grey image.

Two independent fields of the same tissue mixed as ``cos(t) Z1 + sin(t) Z2`` are again fully
developed speckle with the same statistics and a correlation ``cos(t)`` with ``Z1``: the video
uses that to decorrelate speckle from frame to frame at the cost of a few array operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model_build.synth.profiles import SyntheticScanner
from model_build.synth.tissue import TissueMaps

_HEADROOM_DB = 4.0  # a specular reflector of amplitude 1 lands this far under full white at 0 dB gain


@dataclass(frozen=True)
class EchoField:
    """Complex echo after the PSF (float32 H x W each): diffuse speckle (``real``, ``imag``)
    and the coherent amplitude of specular interfaces (``coherent``)."""

    real: np.ndarray
    imag: np.ndarray
    coherent: np.ndarray

    def window(self, x0: int, x1: int) -> EchoField:
        """Columns x0..x1 (exclusive): the probe's view of a panorama."""
        return EchoField(self.real[:, x0:x1], self.imag[:, x0:x1], self.coherent[:, x0:x1])


def psf_sigmas_px(profile: SyntheticScanner, pixel_mm: float) -> tuple[float, float]:
    """(axial, lateral) PSF sigma in pixels, never under the display's interpolation limit."""
    return (
        max(profile.psf_axial_mm / pixel_mm, profile.min_psf_px),
        max(profile.psf_lateral_mm / pixel_mm, profile.min_psf_px * 2.0),
    )


def echo_fields(
    maps: TissueMaps, profile: SyntheticScanner, pixel_mm: float, rng: np.random.Generator, count: int = 1
) -> list[EchoField]:
    """``count`` independent speckle realisations of the same tissue (they share ``coherent``)."""
    height = maps.diffuse.shape[0]
    depth_cm = (np.arange(height, dtype=np.float32) + 0.5)[:, None] * (pixel_mm / 10.0)
    attenuation = 10.0 ** (-profile.attenuation_db_per_cm * depth_cm / 10.0)
    noise_floor = 10.0 ** (profile.noise_floor_db / 10.0)
    axial, lateral = psf_sigmas_px(profile, pixel_mm)
    # White noise of unit power blurred by a Gaussian keeps 1 / (4 pi sx sy) of its power.
    scale = np.sqrt(2.0 * np.pi * axial * lateral).astype(np.float32)  # sqrt(4 pi sx sy) / sqrt(2)
    amplitude = np.sqrt(maps.diffuse * attenuation + noise_floor) * scale

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=lateral, sigmaY=axial)

    coherent = blur(np.sqrt(attenuation) * maps.specular)
    return [
        EchoField(
            real=blur(amplitude * rng.standard_normal(maps.diffuse.shape, dtype=np.float32)),
            imag=blur(amplitude * rng.standard_normal(maps.diffuse.shape, dtype=np.float32)),
            coherent=coherent,
        )
        for _ in range(count)
    ]


def mix(first: EchoField, second: EchoField, angle: float) -> EchoField:
    """``cos(angle) first + sin(angle) second``: same speckle statistics, partly decorrelated."""
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return EchoField(cos * first.real + sin * second.real, cos * first.imag + sin * second.imag, first.coherent)


def grey_image(field: EchoField, profile: SyntheticScanner) -> np.ndarray:
    """Log-compressed, grey-mapped and post-processed B-mode image (uint8 H x W)."""
    power = cv2.magnitude(field.real + field.coherent, field.imag)
    cv2.multiply(power, power, dst=power)
    if profile.compounding_px > 0:  # averaging partly independent looks fills the speckle nulls
        power = cv2.GaussianBlur(power, (0, 0), sigmaX=profile.compounding_px, sigmaY=0.35 * profile.compounding_px)
    level_db = 10.0 * np.log10(power + 1e-12)
    grey = (level_db + (profile.gain_db - _HEADROOM_DB + profile.dynamic_range_db)) * np.float32(
        1.0 / profile.dynamic_range_db
    )
    np.clip(grey, 0.0, 1.0, out=grey)
    if profile.gamma != 1.0:
        grey **= np.float32(profile.gamma)
    grey *= np.float32(255.0)
    if profile.smoothing_px > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), sigmaX=profile.smoothing_px, sigmaY=0.5 * profile.smoothing_px)
    return np.clip(grey, 0, 255).astype(np.uint8)


def choose_depth_mm(deepest_mm: float, profile: SyntheticScanner, rng: np.random.Generator) -> float:
    """The depth setting a sonographer picks: the shallowest preset that shows ``deepest_mm``
    (the deep aponeurosis) with 8 mm to spare, or the next one up 30% of the time. Beyond the
    presets, the next whole centimetre."""
    needed = deepest_mm + 8.0
    fitting = [depth for depth in profile.depth_presets_mm if depth >= needed]
    deeper = rng.random() < 0.3
    if not fitting:
        return float(np.ceil(needed / 10.0) * 10.0)
    return float(fitting[1] if deeper and len(fitting) > 1 else fitting[0])
