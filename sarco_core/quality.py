"""Quality gate: which frames may count towards a session, and why the others may not.

Checked on a small blurred thumbnail of the scan region (cheap, and blind to speckle, which
changes every frame even when nothing else does):

- ``no_region``: no scan region on the screen (menu, black screen, another app);
- ``no_tissue``: the probe is lifted: almost no echo above the noise floor;
- ``frozen``: the picture did not change since the previous frame (scanner frozen or paused);
- ``transition``: the picture changed a lot at once (probe moved to another muscle, a cut, a
  fade), and for ``settle_s`` afterwards, while the operator settles.

The thresholds are in grey levels (0-255) and correlations; docs/edge.md explains how they were
chosen and how to tune them for a scanner.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MESSAGES = {
    "ok": "Good image",
    "no_region": "No scan on screen: check the capture and the scanner layout",
    "no_tissue": "No tissue: place the probe on the skin",
    "frozen": "Frozen image: unfreeze the scanner",
    "transition": "Moving: hold the probe still",
    "no_signal": "No video signal: check the capture cable",
}


@dataclass(frozen=True)
class QualitySettings:
    """Defaults measured on the synthetic scanner videos of all three profiles and checked
    against the real images in ../shared/data (docs/edge.md, "Quality gate")."""

    thumb_size: int = 64
    tissue_level: float = 20.0  # a thumbnail pixel above this grey level shows echo
    min_tissue_fraction: float = 0.4  # below this share of echo pixels the probe is lifted
    frozen_mad: float = 1.0  # mean |difference| (grey levels) below which nothing moved
    transition_correlation: float = 0.8  # below this the scene changed at once
    settle_s: float = 0.2


@dataclass(frozen=True)
class Verdict:
    state: str  # one of MESSAGES

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @property
    def message(self) -> str:
        return MESSAGES[self.state]


class QualityGate:
    """Stateful: compares each frame with the previous one. ``reset()`` between sessions."""

    def __init__(self, settings: QualitySettings | None = None) -> None:
        self.settings = settings or QualitySettings()
        self._previous: np.ndarray | None = None
        self._settle_until = float("-inf")

    def reset(self) -> None:
        self._previous = None
        self._settle_until = float("-inf")

    def check(self, scan: np.ndarray | None, at: float) -> Verdict:
        """``scan``: the grey (uint8) scan region of the frame, or None when none was found;
        ``at``: the frame's capture time in seconds."""
        if scan is None or scan.size == 0:
            self._previous = None
            return Verdict("no_region")
        s = self.settings
        thumb = cv2.resize(scan, (s.thumb_size, s.thumb_size), interpolation=cv2.INTER_AREA)
        thumb = cv2.GaussianBlur(thumb.astype(np.float32), (5, 5), 0)
        previous, self._previous = self._previous, thumb
        if float(np.mean(thumb > s.tissue_level)) < s.min_tissue_fraction:
            return Verdict("no_tissue")
        if previous is None:
            # first view after a gap: let the operator settle before counting frames
            self._settle_until = at + s.settle_s
            return Verdict("transition")
        if float(np.mean(np.abs(thumb - previous))) < s.frozen_mad:
            return Verdict("frozen")
        if _correlation(thumb, previous) < s.transition_correlation:
            self._settle_until = at + s.settle_s
            return Verdict("transition")
        if at < self._settle_until:
            return Verdict("transition")
        return Verdict("ok")


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0
