"""The quality gate on the synthetic cohort's scanner videos, whose frames come with their true
state (tissue, lifted, frozen, transition). The scan region is the generator's own box here, so
this tests the gate alone."""

from __future__ import annotations

import math
from collections import Counter

import cv2
import numpy as np
import pytest

from sarco_core.quality import QualityGate
from tests.support.edge import synthetic_scanner_video


def gate_states(path, box) -> list[str]:  # noqa: ANN001
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    x0, y0, x1, y1 = box
    gate, states = QualityGate(), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[y0:y1, x0:x1]
        states.append(gate.check(grey, len(states) / fps).state)
    capture.release()
    return states


@pytest.mark.parametrize("profile", ["A", "B"])  # B: the darkest screen
def test_the_gate_passes_only_tissue_and_names_the_other_states(profile, tmp_path_factory) -> None:
    path, truth, box = synthetic_scanner_video(tmp_path_factory.getbasetemp() / "edge-videos",
                                               profile, seconds=4.0)
    found = gate_states(path, box)
    assert len(found) == len(truth)
    pairs = Counter(zip(truth, found))
    # no frame without tissue contact ever counts towards a result
    assert sum(n for (t, g), n in pairs.items() if g == "ok" and t != "tissue") == 0
    assert pairs[("lifted", "no_tissue")] == truth.count("lifted")
    assert pairs[("frozen", "frozen")] == truth.count("frozen")
    assert sum(n for (t, g), n in pairs.items() if t == "transition" and g != "ok") == \
        truth.count("transition")
    # tissue frames pass, apart from the settling time after the probe is put down
    fps = cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS)
    settle_frames = math.ceil(QualityGate().settings.settle_s * fps) + 1
    for index, (true_state, state) in enumerate(zip(truth, found)):
        if true_state == "tissue" and state != "ok":
            assert state == "transition", (index, state)
            assert "transition" in truth[max(0, index - settle_frames):index], index
    assert pairs[("tissue", "ok")] >= 0.5 * truth.count("tissue")


def test_a_missing_region_and_a_black_frame() -> None:
    gate = QualityGate()
    assert gate.check(None, 0.0).state == "no_region"
    assert gate.check(np.zeros((200, 200), np.uint8), 0.1).state == "no_tissue"
    assert gate.check(np.zeros((200, 200), np.uint8), 0.2).message.startswith("No tissue")
