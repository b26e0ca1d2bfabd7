"""Scanner screens: the user interface burned in around the B-mode image.

Real exports carry text, rulers, grey bars and buttons around the scan (see the Telemed and
GE screenshots in ``../shared/data``); a model must learn to ignore them and the edge app must
find the scan area among them. Every text here is made up and non-identifying: scanner and
probe names, preset ("MSK"), depth, gain, frequency and a fake date. Three layouts:

- ``cart``: a cart scanner. Stills are grey PNG crops of the B-mode image under a small text
  header; the screen (video) is black with a header line, a grey bar and a depth ruler.
- ``usb``: a USB probe's laptop software. Grey panels with parameter lists, a dotted depth
  ruler and a TGC curve; stills are JPEG screenshots with a white border.
- ``pocket``: a handheld probe's tablet app. Black, a status bar, round-cornered buttons and a
  cm ruler; a cool colour map; stills are PNG screenshots.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model_build.synth.profiles import SyntheticScanner

VIDEO_SIZE = (1280, 720)  # (width, height) of every screen recording
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_USB_BORDER = (96, 40, 96, 88)  # white border of a usb screenshot: left, top, right, bottom


@dataclass(frozen=True)
class RenderedImage:
    """A still as the scanner exports it, UI frame included.

    ``pixels``: uint8, H x W (grey) or H x W x 3 (BGR, OpenCV's order); ``scan_box``: (x0, y0,
    x1, y1) of the B-mode area, x1 and y1 exclusive; ``mm_per_pixel`` (square pixels) and
    ``depth_mm`` (the B-mode area's height in mm).
    """

    pixels: np.ndarray
    scan_box: tuple[int, int, int, int]
    mm_per_pixel: float
    depth_mm: float


@dataclass(frozen=True)
class Screen:
    """A scanner screen without its B-mode image: the UI and where the image goes."""

    canvas: np.ndarray  # uint8 grey (H x W) or BGR (H x W x 3); the scan area is black
    scan_box: tuple[int, int, int, int]
    status_org: tuple[int, int]  # where a per-frame status ("FROZEN") is written
    tint_lut: np.ndarray | None  # 256 x 1 x 3 colour map of a tinted screen, None when neutral

    def show(self, bmode: np.ndarray) -> np.ndarray:
        """The screen with ``bmode`` (uint8 grey, the scan box's size) in its scan area."""
        x0, y0, x1, y1 = self.scan_box
        frame = self.canvas.copy()
        if frame.ndim == 2:
            frame[y0:y1, x0:x1] = bmode
        elif self.tint_lut is None:
            frame[y0:y1, x0:x1] = cv2.cvtColor(bmode, cv2.COLOR_GRAY2BGR)
        else:
            frame[y0:y1, x0:x1] = cv2.LUT(cv2.cvtColor(bmode, cv2.COLOR_GRAY2BGR), self.tint_lut)
        return frame


@dataclass(frozen=True)
class _Acquisition:
    """The made-up settings and date a screen shows."""

    profile: SyntheticScanner
    depth_mm: float
    date: str
    time: str
    gain_percent: int

    @classmethod
    def draw(cls, profile: SyntheticScanner, depth_mm: float, rng: np.random.Generator) -> _Acquisition:
        day = np.datetime64("2023-01-01") + int(rng.integers(0, 730))
        minutes = int(rng.integers(8 * 60, 18 * 60))
        return cls(
            profile=profile,
            depth_mm=depth_mm,
            date=str(day),
            time=f"{minutes // 60:02d}:{minutes % 60:02d}",
            gain_percent=int(np.clip(60 + 2 * profile.gain_db + rng.integers(-4, 5), 10, 99)),
        )


def _filled(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """A BGR canvas of one colour (OpenCV fills it far faster than numpy broadcasting)."""
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    cv2.rectangle(canvas, (0, 0), (width - 1, height - 1), colour, -1)
    return canvas


def _text(
    canvas: np.ndarray, text: str, org: tuple[int, int], scale: float, colour: object, thickness: int = 1
) -> None:
    cv2.putText(canvas, text, org, _FONT, scale, colour, thickness, cv2.LINE_AA)


def _fitting_scale(text: str, width: int, scale: float) -> float:
    """The largest font scale up to ``scale`` at which ``text`` fits in ``width`` pixels."""
    text_width = cv2.getTextSize(text, _FONT, scale, 1)[0][0]
    return scale if text_width <= width else scale * width / text_width


def _depth_ticks(scan_box: tuple[int, int, int, int], depth_mm: float, step_mm: float) -> list[tuple[int, float]]:
    """(row, depth_mm) of every ruler tick inside the scan box."""
    _, y0, _, y1 = scan_box
    pixels_per_mm = (y1 - y0) / depth_mm
    return [(int(round(y0 + d * pixels_per_mm)), d) for d in np.arange(0.0, depth_mm + 1e-6, step_mm)]


def _grey_bar(canvas: np.ndarray, x: int, y: int, width: int, height: int) -> None:
    ramp = np.linspace(255, 0, height).astype(np.uint8)[:, None]
    bar = np.repeat(ramp, width, axis=1)
    canvas[y : y + height, x : x + width] = bar if canvas.ndim == 2 else cv2.cvtColor(bar, cv2.COLOR_GRAY2BGR)


def _centred_box(top: int, scan_shape: tuple[int, int], left: int, right: int) -> tuple[int, int, int, int]:
    """The scan box of ``scan_shape`` at row ``top``, centred between columns ``left`` and ``right``."""
    height, scan_width = scan_shape
    x0 = left + (right - left - scan_width) // 2
    return (x0, top, x0 + scan_width, top + height)


def _tint_lut(profile: SyntheticScanner) -> np.ndarray | None:
    """The colour map of a tinted scanner as an OpenCV LUT; None for a neutral grey one."""
    if profile.tint_bgr == (1.0, 1.0, 1.0):
        return None
    ramp = np.arange(256, dtype=np.float32)
    lut = np.stack([np.clip(ramp * t, 0, 255) for t in profile.tint_bgr], axis=-1)
    return lut.astype(np.uint8)[:, None, :]


def max_scan_width(profile: SyntheticScanner, still: bool) -> int:
    """Widest B-mode area the layout has room for (the probe's field of view is clipped to it);
    a cart's still is a crop, as wide as the field of view."""
    if profile.layout == "cart" and still:
        return 10_000
    return {"cart": 900, "usb": 900, "pocket": 1060}[profile.layout]


def _cart_header(scan_shape: tuple[int, int], info: _Acquisition) -> Screen:
    """Grey PNG export of a cart scanner: the B-mode crop under a two-line text header."""
    height, width = scan_shape
    header = 34
    canvas = np.zeros((header + height, width), dtype=np.uint8)
    p = info.profile
    lines = (
        f"{p.name}  MSK  {p.probe}  {p.frequency_mhz:g}MHz",
        f"D {info.depth_mm / 10:.1f}cm  G {info.gain_percent}  DR {p.dynamic_range_db:.0f}  {info.date} {info.time}",
    )
    for row, line in zip((13, 28), lines):
        _text(canvas, line, (4, row), _fitting_scale(line, width - 8, 0.4), 200)
    return Screen(canvas, (0, header, width, header + height), (4, 13), None)


def _cart_screen(scan_shape: tuple[int, int], info: _Acquisition) -> Screen:
    """Screen of a cart scanner: black, header line, grey bar left, cm ruler right."""
    width, height = VIDEO_SIZE
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    p = info.profile
    header = f"{info.date} {info.time}   ADM   MSK Gen   {p.probe}   MI 0.6  TIs 0.1"
    _text(canvas, header, (12, 28), 0.62, (230, 230, 230))
    _text(canvas, p.name, (20, 88), 0.55, (230, 230, 230))
    box = _centred_box(70, scan_shape, 160, width - 160)
    _grey_bar(canvas, 40, 180, 22, 180)
    for row, depth in _depth_ticks(box, info.depth_mm, 5.0):
        major = depth % 10 < 1e-6
        cv2.line(canvas, (box[2] + 14, row), (box[2] + (30 if major else 22), row), (160, 200, 200), 2)
        if major and depth > 0:
            _text(canvas, f"{depth / 10:.0f}", (box[2] + 36, row + 8), 0.7, (160, 200, 200), 2)
    for x in np.linspace(box[0], box[2] - 1, 6):
        cv2.line(canvas, (int(x), box[1] - 14), (int(x), box[1] - 6), (160, 200, 200), 2)
    settings = f"G {info.gain_percent}  DR {p.dynamic_range_db:.0f}  {p.frequency_mhz:g} MHz"
    _text(canvas, settings, (20, 660), 0.5, (200, 200, 200))
    return Screen(canvas, box, (20, 120), _tint_lut(p))


def _usb_screen(scan_shape: tuple[int, int], info: _Acquisition) -> Screen:
    """Laptop software of a USB probe: grey panels, parameter list, dotted ruler, TGC box."""
    width, height = VIDEO_SIZE
    panel = (58, 58, 58)
    canvas = _filled(height, width, panel)
    p = info.profile
    cv2.rectangle(canvas, (0, 0), (width - 1, 52), (66, 66, 66), -1)
    light = (205, 205, 205)
    _text(canvas, "Clinic: -", (420, 20), 0.45, light)
    _text(canvas, "Operator: -", (700, 20), 0.45, light)
    _text(canvas, f"{info.date}  {info.time}", (980, 20), 0.45, light)
    _text(canvas, "MSK", (420, 42), 0.45, light)
    _text(canvas, p.probe, (700, 42), 0.45, light)
    _text(canvas, "TIS 0.1   MI 0.3", (980, 42), 0.45, light)
    cv2.drawMarker(canvas, (28, 26), (210, 150, 60), cv2.MARKER_DIAMOND, 30, 3)
    params = (
        "[B]", f"FPS {p.fps:.0f}", f"De {info.depth_mm:.0f} mm", f"DR {p.dynamic_range_db:.0f} dB",
        f"Gn {info.gain_percent} %", f"Frq {p.frequency_mhz:g} MHz", "LnDens Hi", "FrmAvg 2", "Rej 8", "ImEnh 3",
    )  # fmt: skip
    for i, line in enumerate(params):
        _text(canvas, line, (24, 90 + 19 * i), 0.45, light)
    box = _centred_box(60, scan_shape, 200, width - 130)
    for row, depth in _depth_ticks(box, info.depth_mm, 10.0):
        cv2.line(canvas, (box[0] - 24, row), (box[0] - 14, row), light, 1)
        if depth == 0.0 or abs(depth - info.depth_mm) < 1e-6:  # labels at the top and the bottom
            _text(canvas, f"{depth:.0f}", (box[0] - 52, row + 5), 0.45, light)
    for y in range(box[1], box[3], 6):
        canvas[y : y + 2, box[0] - 19] = light
    _grey_bar(canvas, width - 90, 80, 24, 130)
    cv2.rectangle(canvas, (width - 110, 240), (width - 40, 310), light, 1)
    curve = np.array([[width - 108 + t, 308 - int(64 * (t / 66) ** 1.6)] for t in range(0, 67, 3)], np.int32)
    cv2.polylines(canvas, [curve], False, light, 1, cv2.LINE_AA)
    return Screen(canvas, box, (24, 310), _tint_lut(p))


def _rounded_button(canvas: np.ndarray, x: int, y: int, w: int, h: int, label: str) -> None:
    fill, radius = (52, 44, 38), h // 2
    cv2.rectangle(canvas, (x + radius, y), (x + w - radius, y + h), fill, -1)
    cv2.circle(canvas, (x + radius, y + radius), radius, fill, -1, cv2.LINE_AA)
    cv2.circle(canvas, (x + w - radius, y + radius), radius, fill, -1, cv2.LINE_AA)
    size = cv2.getTextSize(label, _FONT, 0.5, 1)[0]
    _text(canvas, label, (x + (w - size[0]) // 2, y + (h + size[1]) // 2), 0.5, (235, 235, 235))


def _pocket_screen(scan_shape: tuple[int, int], info: _Acquisition) -> Screen:
    """Tablet app of a handheld probe: status bar, round buttons, cm ruler, battery."""
    width, height = VIDEO_SIZE
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    p = info.profile
    cv2.rectangle(canvas, (0, 0), (width - 1, 40), (48, 36, 28), -1)
    _text(canvas, f"{p.name}  |  MSK  |  {p.probe}", (16, 27), 0.6, (240, 240, 240))
    _text(canvas, f"{info.time}", (610, 27), 0.6, (240, 240, 240))
    cv2.rectangle(canvas, (1190, 12), (1236, 30), (240, 240, 240), 1)
    cv2.rectangle(canvas, (1193, 15), (1226, 27), (120, 220, 120), -1)
    cv2.rectangle(canvas, (1237, 17), (1240, 25), (240, 240, 240), -1)
    _text(canvas, "87%", (1140, 27), 0.5, (240, 240, 240))
    box = _centred_box(52, scan_shape, 110, width - 110)
    for row, depth in _depth_ticks(box, info.depth_mm, 5.0):
        major = depth % 10 < 1e-6
        cv2.line(canvas, (box[2] + 8, row), (box[2] + (24 if major else 16), row), (230, 230, 230), 2)
        if major:
            _text(canvas, f"{depth / 10:.0f}", (box[2] + 30, row + 6), 0.55, (230, 230, 230))
    _text(canvas, "cm", (box[2] + 26, box[1] - 4 if box[1] > 60 else box[3] + 20), 0.45, (230, 230, 230))
    cv2.circle(canvas, (box[0] + 14, box[1] + 14), 6, (60, 170, 250), -1, cv2.LINE_AA)
    buttons = ("FREEZE", "SAVE", f"GAIN {info.gain_percent}", f"DEPTH {info.depth_mm / 10:.1f}", "MSK")
    for i, label in enumerate(buttons):
        _rounded_button(canvas, 190 + i * 185, 636, 160, 44, label)
    return Screen(canvas, box, (20, 80), _tint_lut(p))


_SCREENS = {"cart": _cart_screen, "usb": _usb_screen, "pocket": _pocket_screen}


def video_screen(
    profile: SyntheticScanner, scan_shape: tuple[int, int], depth_mm: float, rng: np.random.Generator
) -> Screen:
    """The 1280 x 720 BGR screen a recording of this scanner shows around a ``scan_shape`` image."""
    return _SCREENS[profile.layout](scan_shape, _Acquisition.draw(profile, depth_mm, rng))


def still_screen(
    profile: SyntheticScanner, scan_shape: tuple[int, int], depth_mm: float, rng: np.random.Generator
) -> Screen:
    """The frame of an exported still: a cart's grey crop with a header, a usb screenshot with a
    white border, or a pocket app's screenshot."""
    info = _Acquisition.draw(profile, depth_mm, rng)
    if profile.layout == "cart":
        return _cart_header(scan_shape, info)
    screen = _SCREENS[profile.layout](scan_shape, info)
    if profile.layout != "usb":
        return screen
    left, top, right, bottom = _USB_BORDER
    canvas = cv2.copyMakeBorder(screen.canvas, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    x0, y0, x1, y1 = screen.scan_box
    return Screen(canvas, (x0 + left, y0 + top, x1 + left, y1 + top), screen.status_org, screen.tint_lut)
