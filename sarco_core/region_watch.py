"""When the scan region found by the tracker may be used to count frames.

The tracker (sarco_core.imaging.tracker) detects the region once per session and re-checks it
periodically. A detection made while the probe is in the air only sees the reverberation
bands under the skin line and returns a strip of the scan area; judged through that strip,
tissue looks wrong (and the air can even look like tissue). So a region is *trusted* only when
it was detected right after a run of frames the gate passed, i.e. with tissue in view:

- a detection that gives a new box is trusted if the ``ok_run`` frames before it passed the
  gate;
- while the region is untrusted, passing frames do not count; after ``ok_run`` of them the
  region is detected again (now on tissue) and that detection is trusted;
- while untrusted and nothing passes for ``retry_s`` seconds (the strip may be too small to
  ever pass), the region is detected again, at most once per ``retry_s``.

Detection is the costly step (about 13 ms median on a 1280x720 frame on an idle core, against
2-4 ms for a frame with a known region: benchmarks/bench_imaging.py, docs/imaging.md); it runs
at session start, on the tracker's periodic re-check, and at most once a second while
untrusted.
"""

from __future__ import annotations

import numpy as np

from sarco_core.imaging.pixels import Box
from sarco_core.imaging.tracker import ScanRegionTracker


class RegionWatch:
    def __init__(self, tracker: ScanRegionTracker, ok_run: int = 3, retry_s: float = 1.0) -> None:
        self.tracker = tracker
        self.ok_run = ok_run
        self.retry_s = retry_s
        self.reset()

    def reset(self) -> None:
        """A new session or a new frame size: forget the region."""
        self.tracker.reset()
        self.region: Box | None = None
        self.trusted = False
        self._run = 0
        self._last_try = float("-inf")

    def locate(self, grey: np.ndarray, at: float) -> tuple[Box | None, bool]:
        """The region for this frame and whether it differs from the previous frame's."""
        detections = self.tracker.detections
        region = self.tracker.update(grey)
        changed = region != self.region
        if self.tracker.detections > detections:
            self._last_try = at
            if changed or not self.trusted:
                self.trusted = self._run >= self.ok_run
        self.region = region
        return region, changed

    def may_count(self, passed: bool, at: float) -> bool:
        """Record the gate's verdict on this frame; True when a passing frame may count."""
        self._run = self._run + 1 if passed else 0
        if self.trusted:
            return passed
        if self._run >= self.ok_run or at - self._last_try >= self.retry_s:
            self.tracker.reset()  # detect again on the next frame
            self._last_try = at
        return False
