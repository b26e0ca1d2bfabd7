"""Shared by several test modules (moved from test_scan_region.py)."""

from __future__ import annotations

import cv2
import numpy as np


def speckle(shape: tuple[int, int], seed: int, level: float = 40.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = rng.rayleigh(level, size=shape).astype(np.float32)
    return np.clip(cv2.GaussianBlur(field, (5, 5), 1.2), 0, 255).astype(np.uint8)


def screen(seed: int = 0, panel: int = 56) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 1280x720 scanner screen: grey UI with text, a ruler and a grey bar around the B-mode."""
    frame = np.full((720, 1280, 3), panel, np.uint8)
    box = (300, 90, 1020, 690)
    x0, y0, x1, y1 = box
    bmode = speckle((y1 - y0, x1 - x0), seed)
    bmode[350:, :] //= 6  # a dark deep field, still not the panel colour
    frame[y0:y1, x0:x1] = bmode[..., None]
    cv2.putText(frame, "DOE JANE  15/01/2024 10:15  EXAMPLE HOSPITAL", (40, 45),
                cv2.FONT_HERSHEY_SIMPLEX, 0.9, (230, 230, 230), 2)
    for row, label in enumerate(("B", "FPS 21", "De 50 mm", "Gn 80 %")):
        cv2.putText(frame, label, (x1 + 20, y0 + 30 + 22 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 200, 200), 1)
    cv2.line(frame, (x0 - 40, y1), (x1 + 100, y1), (170, 170, 170), 1)  # axis line touching the scan
    cv2.line(frame, (x0 - 30, y0), (x0 - 30, y1), (170, 170, 170), 1)  # ruler
    for tick in range(y0, y1, 120):
        cv2.line(frame, (x0 - 30, tick), (x0 - 24, tick), (170, 170, 170), 1)
    frame[200:400, 40:60] = np.linspace(0, 255, 200, dtype=np.uint8)[:, None, None]  # grey bar
    cv2.rectangle(frame, (x0 + 10, y0 + 10), (x0 + 20, y0 + 20), (0, 220, 220), 1)  # yellow marker
    return frame, box
