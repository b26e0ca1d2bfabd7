"""The device's screen states as the tests and docs/edge.md show them (no tests here), and the
comparison of a drawing with its checked-in reference image.

A reference is two files in tests/data/screens/: ``<state>-<W>x<H>.png`` (the picture, for
people) and ``.json`` (its texts and buttons as drawn, for the comparison). Fonts differ
between OpenCV builds, so the comparison does not look at glyphs: it takes the words in
order, the buttons with their places, the pixels outside every text box (colour blocks, the
scan, outlines) and which parts of the screen hold text, each with a tolerance that a font
change stays within and a layout change does not. Regenerate after an intended change with

    SARCO_WRITE_SCREENS=1 .venv/bin/python -m pytest tests/edge_app/test_screens.py

which rewrites tests/data/screens/ and docs/figures/edge/ (look at every picture before
committing them).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edge_app.display import ScreenState, draw
from edge_app.ui.canvas import Drawing
from sarco_core.criteria import Measurements
from sarco_core.screening import call_of_result
from sarco_core.wire.payloads import assessment
from tests.support.paths import REPO
from tests.support.wire import measurements_entry, result_payload

REFERENCES = REPO / "tests" / "data" / "screens"
FIGURES = REPO / "docs" / "figures" / "edge"
SIZES = ((800, 480), (1024, 600))
RESULT_ID = "a163c173-f7a6-4dbd-b353-a3afd7c9f978"


def scan_frame(width: int = 640, height: int = 360) -> np.ndarray:
    """A scanner's screen without speckle (deterministic, small as a PNG): a UI bar over
    bright fascia bands in a dark B-mode area."""
    frame = np.full((height, width, 3), 28, np.uint8)
    frame[: height // 12] = 70
    rows, cols = np.mgrid[0:height * 4 // 5, 0:width * 3 // 5]
    bands = 50 + 90 * np.exp(-((rows + 8 * np.sin(cols / 50)) % 60 - 30) ** 2 / 40)
    frame[height // 8: height // 8 + rows.shape[0], width // 5: width // 5 + cols.shape[1]] = \
        bands.astype(np.uint8)[..., None]
    return frame


def result(**changes: object) -> dict:
    """A result payload as the device queues it, with its screen call."""
    payload = result_payload(result_id=RESULT_ID, **changes)
    call = call_of_result(payload)
    payload["screen"] = {"call": call.call, "low": call.low, "high": call.high, "level": 0.9,
                         "independent_frames": 10, "evidence": False}
    return payload


_DEVICE = dict(link="online", link_detail="connected to mqtts://dashboard.example.org:8883",
               model="efficientnet-lite0-evidential (3f2a9c81d0e4)", app_version="0.1.0",
               fps=14.8, free_mb=5120, threshold=0.43)
_SCANNING = dict(_DEVICE, mode="scanning", screening_id="SCR-0042", region=(128, 45, 512, 333),
                 min_usable_frames=20)
_RESULT = dict(_DEVICE, mode="result", screening_id="SCR-0042", quality="no_tissue",
               quality_message="No tissue: place the probe on the skin")  # the last live hint

_MEASURED = measurements_entry()  # a device with the measurement model
_FEW_MEASURED = measurements_entry(frames_measured=6, muscle_thickness_mm=None, spread={
    **_MEASURED["spread"], "muscle_thickness_mm": None})  # no pixel size: thickness in px

STATES: dict[str, ScreenState] = {
    "idle": ScreenState(**_DEVICE, typed_id="SCR-004"),
    "idle-refused": ScreenState(**_DEVICE, typed_id="Jane", notice=(
        "ID 'Jane' must contain a digit (a pseudonymous code such as SCR-0042, never a name)")),
    "scanning-lifted": ScreenState(**_SCANNING, quality="no_tissue", usable_frames=12,
                                   elapsed_s=42),
    "scanning-frozen": ScreenState(**{**_SCANNING, "link": "offline"}, quality="frozen",
                                   usable_frames=3, elapsed_s=9, queued_results=3),
    "scanning-muscles": ScreenState(**_SCANNING, quality="ok", usable_frames=14, elapsed_s=51,
                                    muscles=["rectus_femoris", "gastrocnemius"], muscle=1,
                                    muscle_frames=[11, 3], measurements=measurements_entry(
                                        frames_measured=11)),
    "result-positive": ScreenState(**_RESULT, result=result(probability=0.81, threshold=0.43)),
    "result-negative": ScreenState(**_RESULT, result=result(
        decision="no_sarcopenia", probability=0.12, threshold=0.43, measurements=_MEASURED)),
    "result-borderline": ScreenState(**_RESULT, result=result(
        probability=0.45, threshold=0.43, measurements=_FEW_MEASURED,
        uncertainty={"logit_sd": 0.6, "agreement": 0.55, "dirichlet_u": None})),
    "rescan": ScreenState(**_RESULT, result=result(
        decision="rescan", probability=0.5, usable_frames=8, measurements=_FEW_MEASURED,
        skipped={"no_tissue": 120, "frozen": 30, "transition": 50, "no_region": 0})),
    "result-held": ScreenState(**_RESULT, held=True, result=result(
        probability=0.81, threshold=0.43, measurements=_MEASURED)),
    "criteria": ScreenState(**_RESULT, held=True, criteria_open=True,
                            criteria_field="gait_speed_m_s",
                            criteria={"sex": "F", "grip_kg": "16.5", "gait_speed_m_s": "0.7"},
                            result=result(probability=0.81, threshold=0.43)),
    "result-measured": ScreenState(**_RESULT, result=result(
        probability=0.81, threshold=0.43, measurements=_MEASURED, assessment=assessment(Measurements(
            sex="F", grip_kg=16.5, gait_speed_m_s=0.7, asmi_kg_m2=5.1, asmi_method="bia")))),
    "error-camera": ScreenState(**_SCANNING, error="camera",
                                error_detail="device /dev/video0: no frame for 2 s"),
    "error-model": ScreenState(**_DEVICE, error="model", error_detail=(
        "/opt/sarco/bundle/model.onnx: SHA-256 differs from MANIFEST.sha256 (the file was "
        "changed after signing)")),
    "error-disk": ScreenState(**_DEVICE, error="disk",
                              error_detail="/var/lib/sarco-edge: 12 MB free, 50 MB needed"),
    "status": ScreenState(**{**_DEVICE, "link": "offline", "link_detail": (
        "cannot reach dashboard.example.org:8883 (connection refused); next try in 30 s")},
        status_open=True, queued_results=3),
}


def drawn(name: str, size: tuple[int, int]) -> Drawing:
    state = STATES[name]
    frame = scan_frame() if state.mode == "scanning" else None
    return draw(state, frame, size)


def structure(drawing: Drawing) -> dict:
    return {"texts": [[t.text, list(t.box)] for t in drawing.texts],
            "buttons": [[b.action, list(b.box)] for b in drawing.buttons]}


def reference_paths(name: str, size: tuple[int, int]) -> tuple[Path, Path]:
    stem = REFERENCES / f"{name}-{size[0]}x{size[1]}"
    return stem.with_suffix(".png"), stem.with_suffix(".json")


def write_reference(name: str, size: tuple[int, int], drawing: Drawing) -> None:
    png, layout = reference_paths(name, size)
    png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(png), drawing.image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    layout.write_text(json.dumps(structure(drawing), indent=1) + "\n")
    if size == SIZES[0] or name in ("scanning-muscles", "result-borderline"):
        FIGURES.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(FIGURES / png.name), drawing.image, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def differences(drawing: Drawing, png: Path, layout: Path) -> list[str]:
    """What differs from the reference beyond what another font explains; empty when none."""
    reference = cv2.imread(str(png))
    expected = json.loads(layout.read_text())
    found = structure(drawing)
    problems = []
    words = [" ".join(text for text, _ in part["texts"]).split() for part in (expected, found)]
    if words[0] != words[1]:
        problems.append(f"the words differ: {' '.join(words[0])!r} -> {' '.join(words[1])!r}")
    if [action for action, _ in expected["buttons"]] != [a for a, _ in found["buttons"]]:
        problems.append(f"buttons {expected['buttons']} -> {found['buttons']}")
    else:
        for (action, old), (_, new) in zip(expected["buttons"], found["buttons"]):
            if max(abs(a - b) for a, b in zip(old, new)) > 1:
                problems.append(f"button {action} moved: {old} -> {new}")
    if reference is None or reference.shape != drawing.image.shape:
        return problems + [f"{png.name}: missing or another size"]
    text = _text_mask(reference.shape, [box for _, box in expected["texts"] + found["texts"]])
    changed = (np.abs(reference.astype(int) - drawing.image.astype(int)).max(axis=2) > 40) & ~text
    if changed.mean() > 0.003:
        problems.append(f"{changed.mean():.2%} of the pixels outside the texts changed "
                        "(colour blocks, the scan, outlines)")
    cells = [_text_cells(reference.shape, [box for _, box in part["texts"]])
             for part in (expected, found)]
    moved = (cells[0] ^ cells[1]).sum() / max(1, (cells[0] | cells[1]).sum())
    if moved > 0.15:
        problems.append(f"{moved:.0%} of the screen's text area moved")
    return problems


def _text_mask(shape: tuple[int, ...], boxes: list[list[int]], grow: int = 4) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, y0 - grow):y1 + grow, max(0, x0 - grow):x1 + grow] = True
    return mask


def _text_cells(shape: tuple[int, ...], boxes: list[list[int]], cell: int = 16) -> np.ndarray:
    """Which cells of a coarse grid hold text."""
    mask = _text_mask(shape, boxes, grow=0)
    height, width = shape[0] // cell, shape[1] // cell
    return mask[:height * cell, :width * cell].reshape(height, cell, width, cell).any(axis=(1, 3))
