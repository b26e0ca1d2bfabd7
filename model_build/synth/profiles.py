"""Scanner profiles: what differs between the three synthetic centers' ultrasound machines.

Each center of a synthetic cohort images its participants on its own (made-up) scanner, so a
model trained on center A meets a real domain shift at B and C: different gain, dynamic range,
resolution (point-spread function), speckle, depth settings, post-processing, export format
and a different burned-in user interface. The names are invented; none is a real product.
The `consortium` size adds five development sites, each with a scanner of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SyntheticScanner:
    """Acquisition and export settings of one synthetic scanner.

    Physical sizes are in mm, gains in dB. ``layout`` selects the screen drawn around the
    B-mode image (see :mod:`model_build.synth.screen`).
    """

    name: str
    layout: str  # "cart" (grey crop with a header) | "usb" (laptop screenshot) | "pocket" (tablet app)
    probe: str  # probe label shown on screen (made up)
    frequency_mhz: float  # shown on screen
    colour: bool  # False: grey HxW export; True: BGR HxWx3
    still_suffix: str  # ".png" or ".jpg": how the scanner exports a still
    jpeg_quality: int  # quality of its JPEG stills (pass to write_still)
    gain_db: float  # overall gain: shifts the log-compressed image up
    dynamic_range_db: float  # dB mapped onto the 0..255 grey scale
    psf_axial_mm: float  # Gaussian point-spread sigma along the beam
    psf_lateral_mm: float  # Gaussian point-spread sigma across the beam
    min_psf_px: float  # display interpolation: speckle grains never get smaller than this
    render_scale: float  # B-mode computed at this fraction of the displayed size, then upscaled
    attenuation_db_per_cm: float  # what time-gain compensation leaves of tissue attenuation
    noise_floor_db: float  # electronic noise relative to a specular reflector
    compounding_px: float  # power averaged over this sigma before log compression (compounding)
    smoothing_px: float  # "speckle reduction" post-filter sigma after log compression (0: none)
    gamma: float  # grey map exponent after log compression
    tint_bgr: tuple[float, float, float]  # colour map of a colour export (1, 1, 1: neutral)
    depth_presets_mm: tuple[float, ...]  # depth settings the operator chooses from
    probe_width_mm: float  # field of view of the linear probe
    still_scan_height_px: int  # B-mode height of an exported still
    video_scan_height_px: int  # B-mode height inside the 1280x720 screen recording
    fps: float  # frame rate of the screen recording


PROFILES: dict[str, SyntheticScanner] = {
    # Development center: a cart scanner that exports grey PNG crops of the B-mode image with
    # a small header line; fine resolution, moderate dynamic range, little attenuation left.
    "A": SyntheticScanner(
        name="SYN-Cart 9",
        layout="cart",
        probe="L12-5",
        frequency_mhz=12.0,
        colour=False,
        still_suffix=".png",
        jpeg_quality=95,
        gain_db=-8.0,
        dynamic_range_db=54.0,
        psf_axial_mm=0.11,
        psf_lateral_mm=0.30,
        min_psf_px=1.1,
        render_scale=0.85,
        attenuation_db_per_cm=0.6,
        noise_floor_db=-48.0,
        compounding_px=1.2,
        smoothing_px=0.0,
        gamma=1.0,
        tint_bgr=(1.0, 1.0, 1.0),
        depth_presets_mm=(40.0, 50.0, 60.0, 70.0, 80.0),
        probe_width_mm=44.0,
        still_scan_height_px=460,
        video_scan_height_px=600,
        fps=20.0,
    ),
    # External center: a USB probe on a laptop; the software's screenshot (JPEG, white border,
    # grey panels) with lower-frequency, wider speckle, a darker image and more depth fall-off.
    "B": SyntheticScanner(
        name="SYN-USB L128",
        layout="usb",
        probe="L7.5/60",
        frequency_mhz=7.5,
        colour=True,
        still_suffix=".jpg",
        jpeg_quality=80,
        gain_db=-16.0,
        dynamic_range_db=66.0,
        psf_axial_mm=0.10,
        psf_lateral_mm=0.48,
        min_psf_px=0.8,
        render_scale=0.7,
        attenuation_db_per_cm=2.2,
        noise_floor_db=-58.0,
        compounding_px=1.5,
        smoothing_px=0.0,
        gamma=1.25,
        tint_bgr=(1.0, 1.0, 1.0),
        depth_presets_mm=(40.0, 50.0, 60.0, 70.0, 80.0),
        probe_width_mm=60.0,
        still_scan_height_px=600,
        video_scan_height_px=600,
        fps=20.0,
    ),
    # Proof-of-concept center: a handheld wireless probe and a tablet app; coarse, smoothed
    # speckle, high gain and a narrow dynamic range, a cool colour map, PNG screenshots.
    "C": SyntheticScanner(
        name="SYN-Pocket L7",
        layout="pocket",
        probe="L7 HD",
        frequency_mhz=7.0,
        colour=True,
        still_suffix=".png",
        jpeg_quality=90,
        gain_db=-3.0,
        dynamic_range_db=48.0,
        psf_axial_mm=0.12,
        psf_lateral_mm=0.50,
        min_psf_px=1.0,
        render_scale=0.75,
        attenuation_db_per_cm=1.2,
        noise_floor_db=-44.0,
        compounding_px=1.5,
        smoothing_px=0.8,
        gamma=0.9,
        tint_bgr=(1.06, 1.0, 0.9),
        depth_presets_mm=(40.0, 55.0, 70.0, 85.0),
        probe_width_mm=38.0,
        still_scan_height_px=560,
        video_scan_height_px=560,
        fps=24.0,
    ),
}
"""Scanner per synthetic center code: A development, B external, C proof of concept."""


_A, _B, _C = PROFILES["A"], PROFILES["B"], PROFILES["C"]
CONSORTIUM_PROFILES: dict[str, SyntheticScanner] = {
    # An older cart at a second hospital: coarser lateral resolution, more attenuation left by
    # its time-gain compensation, JPEG stills and shallower presets.
    "D": replace(_A, name="SYN-Cart 7", probe="L10-4", frequency_mhz=10.0, still_suffix=".jpg",
                 jpeg_quality=88, gain_db=-10.0, dynamic_range_db=60.0, psf_lateral_mm=0.36,
                 attenuation_db_per_cm=0.9, depth_presets_mm=(30.0, 45.0, 60.0, 75.0)),
    # A cheaper USB probe: brighter, a narrower field of view, heavy JPEG and some smoothing.
    "E": replace(_B, name="SYN-USB L64", probe="L6/50", frequency_mhz=6.0, jpeg_quality=70,
                 gain_db=-12.0, dynamic_range_db=60.0, psf_lateral_mm=0.52, attenuation_db_per_cm=1.8,
                 smoothing_px=0.5, probe_width_mm=50.0),
    # A compact cart whose "speckle reduction" is on by default: smooth, flat, narrow range.
    "F": replace(_A, name="SYN-Cart 5 Lite", probe="L9-3", frequency_mhz=9.0, gain_db=-5.0,
                 dynamic_range_db=50.0, psf_lateral_mm=0.40, render_scale=0.8, compounding_px=1.6,
                 smoothing_px=0.6, depth_presets_mm=(40.0, 60.0, 80.0)),
    # A higher-frequency handheld probe with a warmer colour map and JPEG screenshots.
    "G": replace(_C, name="SYN-Pocket L10", probe="L10 HD", frequency_mhz=10.0, still_suffix=".jpg",
                 jpeg_quality=85, gain_db=-6.0, dynamic_range_db=52.0, psf_lateral_mm=0.42,
                 tint_bgr=(0.95, 1.0, 1.05), fps=30.0),
    # An old USB probe: dark, a wide dynamic range, strong fall-off with depth, low JPEG quality.
    "H": replace(_B, name="SYN-USB L40", probe="L5/40", frequency_mhz=5.0, jpeg_quality=65,
                 gain_db=-20.0, dynamic_range_db=72.0, attenuation_db_per_cm=2.6, gamma=1.35,
                 probe_width_mm=40.0),
}
"""Scanners of the consortium's other development sites (`sarco synth --size consortium`),
derived from A, B and C. Kept out of :data:`PROFILES`, whose three scanners also make the
measurement model's synthetic training images and a figure in the docs."""


def scanner(center: str) -> SyntheticScanner:
    """The scanner of any synthetic center, the three of :data:`PROFILES` or a consortium site's."""
    return PROFILES[center] if center in PROFILES else CONSORTIUM_PROFILES[center]
