"""The device measures the muscle on every usable frame of a session with the shipped
aponeurosis model, and the result carries the session's medians: checked against the synthetic
generator's own geometry, through a real broker, on the screen and with the stage off, failing
or given a checklist of muscles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_app.app import SetupError, assemble
from edge_app.capture import SourceSpec
from edge_app.cli import app
from edge_app.config import ConfigError, load_config
from edge_app.display import render
from sarco_core.bundle import default_measurement_bundle, load_measurement_bundle
from sarco_core.wire import schema
from testkit.mosquitto import Collector, MosquittoBroker, requires_mosquitto
from tests.support.edge import DEVICE, SITE, USERS, one_muscle_video, replay, write_config


@pytest.fixture(scope="module")
def thigh(tmp_path_factory) -> tuple[Path, dict]:
    return one_muscle_video(tmp_path_factory.getbasetemp() / "muscle-videos", "rectus_femoris")


def _assembled(tmp_path: Path, bundle: Path, video: Path, **measure: object):
    config = load_config(write_config(tmp_path / "edge.toml", bundle, tmp_path / "data",
                                      sections={"measure": measure} if measure else None))
    return assemble(config, SourceSpec("file", str(video)), realtime=False)


@requires_mosquitto
def test_a_replayed_recording_publishes_the_generators_muscle(thigh, bundle, tmp_path) -> None:
    video, truth = thigh
    with MosquittoBroker(tmp_path / "broker", USERS) as broker:
        collector = Collector(broker, "dashboard", USERS["dashboard"])
        config = write_config(tmp_path / "edge.toml", bundle, tmp_path / "data", broker.url)
        done = replay(config, video, "--screening-id", "SCR-0700",
                      "--mm-per-pixel", str(truth["mm_per_pixel"]))
        assert done.exit_code == 0, done.output
        assert collector.wait_for(lambda m: collector.of_kind("result"), 15)
        collector.close()
    (data,) = collector.of_kind("result")
    result = schema.decode(schema.topic_for(SITE, DEVICE, "result"), data)[1]
    measured = result["measurements"]
    assert measured["frames_measured"] == result["usable_frames"] > 5
    error = measured["muscle_thickness_mm"] / truth["muscle_thickness_mm"] - 1
    assert abs(error) <= 0.05, (measured, truth)
    assert measured["muscle_thickness_px"] == pytest.approx(
        measured["muscle_thickness_mm"] / truth["mm_per_pixel"], rel=1e-3)
    assert abs(measured["pennation_deg"] - truth["pennation_deg"]) <= 3.0
    assert 0 < measured["echo_intensity"] < 255
    shipped = load_measurement_bundle(default_measurement_bundle())
    assert measured["model"] == {"name": shipped.model_name, "sha256": shipped.model_sha256}
    assert f"Muscle: thickness {measured['muscle_thickness_mm']:.1f} mm" in done.output


def test_without_a_pixel_size_thickness_is_in_pixels_and_the_screen_says_so(
        thigh, bundle, tmp_path) -> None:
    video, _ = thigh
    edge = _assembled(tmp_path, bundle, video)
    result = edge.replay_session("SCR-0701")
    screen = edge.pipeline.screen
    edge.close()
    measured = result["measurements"]
    assert measured["muscle_thickness_mm"] is None and measured["muscle_thickness_px"] > 0
    assert measured["spread"]["muscle_thickness_mm"] is None
    saved = json.loads((tmp_path / "data" / "results.jsonl").read_text().splitlines()[-1])
    assert saved["measurements"] == measured
    # the live summary followed the session; the result screen shows the result's
    assert screen.measurements["frames_measured"] == measured["frames_measured"]
    assert screen.view == "result" and screen.result["measurements"] == measured
    assert render(screen, None).shape == (480, 800, 3)
    snapshot = json.loads(next((tmp_path / "data" / "snapshots").glob("*-SCR-0701-*.json")).read_text())
    assert snapshot["result"]["measurements"]["muscle_thickness_px"] == measured["muscle_thickness_px"]


def test_measuring_off_sends_no_measurements(thigh, bundle, tmp_path) -> None:
    video, _ = thigh
    edge = _assembled(tmp_path, bundle, video, enabled=False)
    result = edge.replay_session("SCR-0702")
    edge.close()
    assert "measurements" not in result and edge.pipeline.measure is None
    assert result["usable_frames"] > 5


def test_a_missing_measurement_model_stops_the_start_with_the_fix(thigh, bundle, tmp_path) -> None:
    video, _ = thigh
    with pytest.raises(SetupError, match=r"\[measure\] model: .*nowhere.*enabled = false"):
        _assembled(tmp_path, bundle, video, model=str(tmp_path / "nowhere"))


@pytest.mark.parametrize("table, words", [
    ({"backend": "tensorrt"}, r"\[measure\] backend 'tensorrt': use onnx-cpu or onnx-cuda"),
    ({"threads": -1}, r"\[measure\] threads must be >= 0"),
    ({"enable": True}, r"unknown key\(s\) \['enable'\]"),
])
def test_bad_measure_settings_are_named(table, words, bundle, tmp_path) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(write_config(tmp_path / "edge.toml", bundle, tmp_path / "data",
                                 sections={"measure": table}))


def test_a_frame_whose_measurement_fails_still_counts(thigh, bundle, tmp_path) -> None:
    video, _ = thigh
    edge = _assembled(tmp_path, bundle, video)
    measure, calls = edge.pipeline.measure, []

    def every_third_fails(pixels: np.ndarray, region):  # noqa: ANN001, ANN202
        calls.append(region)
        if len(calls) % 3 == 0:
            raise RuntimeError("segmentation blew up")
        return measure(pixels, region)

    edge.pipeline.measure = every_third_fails
    result = edge.replay_session("SCR-0703")
    edge.close()
    failed = len(calls) // 3
    assert failed > 0 and edge.pipeline.stats.measure_errors == failed
    assert edge.pipeline.stats.errors == 0  # the frames themselves went through
    assert result["usable_frames"] == len(calls)
    assert result["measurements"]["frames_measured"] == len(calls) - failed


def test_with_a_checklist_only_the_first_muscle_is_measured(thigh, bundle, tmp_path) -> None:
    video, _ = thigh
    edge = _assembled(tmp_path, bundle, video)
    pipeline = edge.pipeline
    pipeline.screen.muscles = ["thigh", "calf"]
    add = pipeline.sessions.add

    def add_then_move_on(*args) -> None:  # noqa: ANN002
        add(*args)
        if pipeline.session.usable_frames == 8:
            pipeline.screen.muscle = 1  # the team taps Next muscle

    pipeline.sessions.add = add_then_move_on
    result = edge.replay_session("SCR-0704")
    edge.close()
    assert result["usable_frames"] > 8
    assert result["measurements"]["frames_measured"] == 8


def test_the_device_bench_times_the_measure_stage_unless_told_not_to(thigh, bundle) -> None:
    video, _ = thigh
    common = ["bench", "--bundle", str(bundle), "--video", str(video), "--frames", "10",
              "--backend", "onnx-cpu"]
    runner = CliRunner()
    timed = runner.invoke(app, common)
    assert timed.exit_code == 0, timed.output
    assert [line.split()[0] for line in timed.output.splitlines()[1:5]] == \
        ["grey+gate", "preprocess", "inference", "measure"]
    without = runner.invoke(app, [*common, "--no-measure"])
    assert without.exit_code == 0 and "measure " not in without.output
