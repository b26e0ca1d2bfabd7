"""Scan region for a video session: detect once, then re-check now and then.

A scanner's layout does not change from frame to frame, so detecting the region on every
frame wastes the frame budget (and lets a dark frame jitter the crop). The layout does
change when the operator changes depth or preset, so the tracker re-detects every
``recheck_every`` frames; a different box is confirmed on the following frames and adopted
only when ``confirmations`` detections in a row agree on it.
"""

from __future__ import annotations

import numpy as np

from sarco_core.imaging.pixels import Box, box_iou
from sarco_core.imaging.region import ScanRegionNotFound, find_scan_region


class ScanRegionTracker:
    """Per-session cache of :func:`find_scan_region`.

    ``update(frame)`` returns the box to crop this frame with, or ``None`` while no scan region
    has been found yet (blank frames at the start of a capture). Detection is retried on every
    frame until it succeeds, then only every ``recheck_every`` frames.
    """

    def __init__(self, recheck_every: int = 150, min_iou: float = 0.9, confirmations: int = 2) -> None:
        if recheck_every < 1:
            raise ValueError(f"recheck_every must be at least 1 frame, got {recheck_every}")
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        if confirmations < 1:
            raise ValueError(f"confirmations must be at least 1, got {confirmations}")
        self.recheck_every = recheck_every
        self.min_iou = min_iou
        self.confirmations = confirmations
        self.box: Box | None = None
        self.frames_seen = 0
        self.detections = 0
        self._since_check = 0
        self._candidate: Box | None = None
        self._candidate_votes = 0

    def update(self, frame: np.ndarray) -> Box | None:
        """The scan box for ``frame`` (detecting or re-checking when due)."""
        self.frames_seen += 1
        self._since_check += 1
        if self.box is None:
            self.box = self._detect(frame)
            self._since_check = 0
        elif self._since_check >= self.recheck_every:
            self._since_check = 0
            self._recheck(self._detect(frame))
        return self.box

    def reset(self) -> None:
        """Forget the layout (new session, new scanner)."""
        self.__init__(self.recheck_every, self.min_iou, self.confirmations)

    def _detect(self, frame: np.ndarray) -> Box | None:
        self.detections += 1
        try:
            return find_scan_region(frame)
        except ScanRegionNotFound:
            return None

    def _recheck(self, found: Box | None) -> None:
        if found is None or box_iou(found, self.box) >= self.min_iou:
            self._candidate, self._candidate_votes = None, 0  # a blank frame proves nothing
            return
        if self._candidate is not None and box_iou(found, self._candidate) >= self.min_iou:
            self._candidate_votes += 1
        else:
            self._candidate, self._candidate_votes = found, 1
        if self._candidate_votes >= self.confirmations:
            self.box, self._candidate, self._candidate_votes = self._candidate, None, 0
        else:
            self._since_check = self.recheck_every - 1  # confirm on the very next frame
