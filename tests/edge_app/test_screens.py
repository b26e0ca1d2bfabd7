"""The device's screen as a screening team reads it: every state at 800x480 and 1024x600,
drawn headless, checked for what matters at arm's length in daylight (contrast, text size,
touch targets, nothing cut or on top of something else), for what it must never say, and
against the checked-in reference images (tests/support/screens.py says how to regenerate)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from edge_app.app import assemble
from edge_app.capture import SourceSpec
from edge_app.config import EdgeConfig
from edge_app.controls import OperatorInput
from edge_app.locallog import ResultLog
from edge_app.display import ScreenState, draw
from edge_app.ui import words
from edge_app.ui.views import primary_action
from edge_app.ui.canvas import AMBER, GREEN, MIN_TEXT, contrast_ratio
from tests.support.edge import make_bundle
from tests.support.screens import SIZES, STATES, differences, drawn, reference_paths, \
    scan_frame, write_reference

CASES = [(name, size) for name in STATES for size in SIZES]
WRITE = os.environ.get("SARCO_WRITE_SCREENS") == "1"


def texts(drawing) -> str:  # noqa: ANN001
    """Everything written, as one text (a wrapped sentence reads whole)."""
    return " ".join(t.text for t in drawing.texts)


@pytest.mark.parametrize("name, size", CASES, ids=[f"{n}-{w}x{h}" for n, (w, h) in CASES])
def test_every_state_reads_at_arms_length_and_takes_a_finger(name, size) -> None:
    drawing = drawn(name, size)
    unit = min(size[0] / 800, size[1] / 480)
    assert drawing.image.shape == (size[1], size[0], 3)
    assert not drawing.clipped, f"text with no room: {drawing.clipped}"
    for item in drawing.texts:
        x0, y0, x1, y1 = item.box
        assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1], item
        # WCAG 2 AAA for body text: daylight washes a screen out
        assert contrast_ratio(item.colour, item.background) >= 7.0, item
        # capitals of at least 14 px at 800x480 (2.7 mm on a 7-inch screen), measured ink
        assert item.cap >= MIN_TEXT * unit - 0.5, f"{item.text!r}: capitals {item.cap} px"
    for a, first in enumerate(drawing.texts):
        for second in drawing.texts[a + 1:]:
            assert not _overlap(first.box, second.box), (first, second)
    for button in drawing.buttons:  # 48 px: about 9 mm on a 7-inch 800x480 screen
        assert button.box[2] - button.box[0] >= 48 * unit and \
            button.box[3] - button.box[1] >= 48 * unit, button
    actions = {b.action for b in drawing.buttons}
    if STATES[name].view != "error" or STATES[name].error == "disk":
        assert primary_action(STATES[name]) in actions  # Enter is a button one can see
    assert "status" in actions  # the device status is one tap away from every screen


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("name, size", CASES, ids=[f"{n}-{w}x{h}" for n, (w, h) in CASES])
def test_each_state_matches_its_reference_image(name, size) -> None:
    drawing = drawn(name, size)
    png, layout = reference_paths(name, size)
    if WRITE:
        write_reference(name, size, drawing)
    assert png.is_file(), f"{png} missing: see tests/support/screens.py to write it"
    assert differences(drawing, png, layout) == []


def test_a_layout_change_fails_the_reference_comparison() -> None:
    """The tolerance is for fonts, not for moved blocks: the result banner 30 px lower fails."""
    drawing = drawn("result-positive", SIZES[0])
    drawing.image[:] = np.roll(drawing.image, 30, axis=0)
    png, layout = reference_paths("result-positive", SIZES[0])
    assert differences(drawing, png, layout)


def test_the_result_screen_never_shows_a_live_hint() -> None:
    for name in ("result-positive", "result-negative", "result-borderline", "rescan"):
        drawing = drawn(name, SIZES[0])
        assert STATES[name].quality == "no_tissue"  # the last frame's hint is still in the state
        lines = [t.text for t in drawing.texts]
        for hint, fix in words.PROBLEMS.values():
            # a rescan counts causes ("Probe lifted in 120 frames"); no screen shows the banner
            assert hint not in lines and fix.split(" {")[0] not in texts(drawing), (name, lines)


def test_a_borderline_result_says_borderline_with_its_interval() -> None:
    shown = texts(drawn("result-borderline", SIZES[0]))
    assert "Borderline" in shown and "Repeat the scan" in shown
    assert "positive" not in shown.lower() and "negative" not in shown.lower()
    assert "Probability 0.45" in shown and "90% interval" in shown and "threshold 0.43" in shown


def test_the_positive_result_says_what_to_do_next() -> None:
    shown = texts(drawn("result-positive", SIZES[0]))
    assert "Screen positive" in shown and "Refer for assessment" in shown
    assert "grip strength" in shown and "AWGS 2019" in shown


def test_a_rescan_shows_why_and_no_probability() -> None:
    shown = texts(drawn("rescan", SIZES[0]))
    assert "Rescan needed" in shown and "Only 8 good frames of the 20 needed" in shown
    assert "Probe lifted in 120 frames" in shown
    assert "robability" not in shown and "0.50" not in shown and "threshold" not in shown


def test_the_scanning_screen_shows_progress_not_a_probability() -> None:
    shown = texts(drawn("scanning-lifted", SIZES[0]))
    assert "Probe lifted" in shown and "Place it on the thigh with gel" in shown
    assert "Good frames 12 of 20" in shown and "0:42" in shown
    assert "robability" not in shown
    muscles = texts(drawn("scanning-muscles", SIZES[0]))
    assert "Rectus femoris: done (11/10)" in muscles and "Gastrocnemius: now (3/10)" in muscles


@pytest.mark.parametrize("quality, colour", [("ok", GREEN), ("frozen", AMBER),
                                             ("no_tissue", AMBER)])
def test_the_scan_outline_follows_the_quality_gate(quality, colour) -> None:
    state = ScreenState(mode="scanning", screening_id="SCR-0042", quality=quality,
                        region=(128, 45, 512, 333))
    image = draw(state, scan_frame(), SIZES[0]).image
    # the region's left edge: 128 px of a 640 px frame letterboxed into the left 400 px
    scale = 400 / 640
    top = 54 + (480 - 54 - int(360 * scale)) // 2
    x, y = int(128 * scale), top + int(190 * scale)
    assert tuple(int(v) for v in image[y, x]) == colour


class Taps:
    """A touch screen: one tapped action (or key code) per poll."""

    def __init__(self, events: list) -> None:
        self.events = events

    def poll_key(self):  # noqa: ANN201
        return self.events.pop(0) if self.events else None


class Controls:
    def __init__(self) -> None:
        self.session, self.started, self.ended, self.released = None, [], 0, []

    def start_session(self, screening_id: str) -> bool:
        self.started.append(screening_id)
        self.session = object()
        return True

    def end_session(self) -> None:
        self.ended += 1
        self.session = None

    def release(self, assessment: dict | None = None) -> None:
        self.released.append(assessment)

    def stop(self) -> None:
        pass


class Screen:
    def __init__(self, state: ScreenState) -> None:
        self.screen = state
        self.moves: list[str] = []

    def next_muscle(self) -> None:
        self.moves.append("next_muscle")

    def to_idle(self) -> None:
        self.screen.mode, self.screen.result = "idle", None

    def toggle_status(self) -> None:
        self.screen.status_open = not self.screen.status_open

    def dismiss(self) -> None:
        self.screen.error = None


def test_the_on_screen_keypad_types_the_id_and_starts() -> None:
    screen = Screen(ScreenState())
    controls = Controls()
    taps = [f"type:{c}" for c in "SCR-0042X"] + ["delete", "start"]
    operator = OperatorInput(controls, screen, Taps(list(taps)))
    for _ in taps:
        operator.poll()
    assert controls.started == ["SCR-0042"] and screen.screen.typed_id == ""


def test_keys_and_taps_are_the_same_actions_on_every_screen() -> None:
    state = ScreenState(mode="result", screening_id="SCR-0042", result=STATES["rescan"].result)
    screen, controls = Screen(state), Controls()
    operator = OperatorInput(controls, screen, Taps([13, 9, 9, "next", ord("a")]))
    operator.poll()  # Enter on a rescan: scan the same participant again
    assert controls.started == ["SCR-0042"]
    controls.session = None
    operator.poll()
    assert state.status_open  # Tab: device status
    operator.poll()
    assert not state.status_open
    operator.poll()  # "Next participant"
    assert state.view == "idle"
    operator.poll()  # typing starts the next id
    assert state.typed_id == "a"


def _replayed(bundle, video, tmp_path, min_usable_frames: int = 5):  # noqa: ANN001, ANN202
    """The screen state and drawing after replaying ``video`` as one session."""
    config = EdgeConfig().override("model", bundle=str(bundle), backend="onnx-cpu") \
        .override("device", data_dir=str(tmp_path)).override("display", headless=True) \
        .override("session", min_usable_frames=min_usable_frames)
    edge = assemble(config, SourceSpec("file", str(video)), realtime=False)
    result = edge.replay_session("SCR-0800")
    edge.close()
    screen = edge.pipeline.screen
    return result, screen, draw(screen, None, SIZES[0])


def test_on_a_replayed_recording_the_screen_says_what_the_issue_asks(video, bundle,
                                                                      tmp_path) -> None:
    """The result screen shows no live hint; at a threshold inside the session's interval
    the call is borderline; too few frames is a rescan without a probability."""
    result, screen, drawing = _replayed(bundle, video[0], tmp_path / "plain")
    assert screen.view == "result" and result["screen"]["call"] in ("positive", "negative")
    lines = [t.text for t in drawing.texts]
    assert not {hint for hint, _ in words.PROBLEMS.values()} & set(lines)
    assert screen.quality_message not in texts(drawing)
    probability = result["probability"]
    assert result["screen"]["low"] < probability < result["screen"]["high"]
    at_the_point = make_bundle(tmp_path / "bundle", threshold=round(probability, 4))
    result, screen, drawing = _replayed(at_the_point, video[0], tmp_path / "borderline")
    assert (result["screen"]["call"], screen.view) == ("borderline", "result")
    assert "Borderline" in texts(drawing) and "Repeat the scan" in texts(drawing)
    result, screen, drawing = _replayed(bundle, video[0], tmp_path / "rescan", 10_000)
    assert (result["decision"], screen.view) == ("rescan", "rescan")
    shown = texts(drawing)
    assert "robability" not in shown and f"{result['probability']:.2f}" not in shown


def test_a_positive_screen_waits_for_the_calculator_and_carries_the_measurements(
        video, tmp_path) -> None:
    """On a touch screen a positive result is held (on disk too) while the team enters
    grip and gait speed; Send queues it once, with the numbers and the categories."""
    bundle = make_bundle(tmp_path / "bundle", threshold=0.01)  # every session screens positive
    config = EdgeConfig().override("model", bundle=str(bundle), backend="onnx-cpu") \
        .override("device", data_dir=str(tmp_path / "data")).override("display", headless=True) \
        .override("session", min_usable_frames=5)
    edge = assemble(config, SourceSpec("file", str(video[0])), realtime=False)
    pipeline = edge.pipeline
    pipeline.display.interactive = True  # as a window is
    held = edge.replay_session("SCR-0900")
    log = ResultLog(tmp_path / "data" / "results.jsonl")
    assert held["screen"]["call"] == "positive" and "seq" not in held
    assert (tmp_path / "data" / "held-result.json").is_file() and log.read() == []
    assert pipeline.screen.view == "result" and pipeline.screen.held
    for action in ("criteria", "sex:F", "field:grip_kg", "type:1", "type:6", "type:.", "type:5",
                   "field:gait_speed_m_s", "type:0", "type:.", "type:7", "done"):
        pipeline.operator.act(action)
    (sent,) = log.read()
    assert sent["result_id"] == held["result_id"] and sent["seq"] == 0
    assert sent["assessment"] == {"sex": "F", "grip_kg": 16.5, "gait_speed_m_s": 0.7,
                                  "chair_stand_s": None, "asmi_kg_m2": None,
                                  "asmi_method": None, "awgs2019": "possible_sarcopenia",
                                  "ewgsop2": "no_sarcopenia"}
    assert not (tmp_path / "data" / "held-result.json").exists()
    assert pipeline.screen.view == "result" and not pipeline.screen.held
    edge.close()
    assert len(log.read()) == 1  # closing sends nothing twice


def test_a_result_held_when_the_power_went_goes_out_at_the_next_start(video, tmp_path) -> None:
    bundle = make_bundle(tmp_path / "bundle", threshold=0.01)
    config = EdgeConfig().override("model", bundle=str(bundle), backend="onnx-cpu") \
        .override("device", data_dir=str(tmp_path / "data")).override("display", headless=True) \
        .override("session", min_usable_frames=5)
    edge = assemble(config, SourceSpec("file", str(video[0])), realtime=False)
    edge.pipeline.display.interactive = True
    held = edge.replay_session("SCR-0901")
    edge.pipeline._held = None  # the power went: nothing in memory survives
    edge.close()
    assert ResultLog(tmp_path / "data" / "results.jsonl").read() == []
    again = assemble(config, SourceSpec("file", str(video[0])), realtime=False)
    again.close()
    (sent,) = ResultLog(tmp_path / "data" / "results.jsonl").read()
    assert sent["result_id"] == held["result_id"] and "assessment" not in sent
