"""What `sarco`, `sarco-calibrate` and `sarco-edge` share (sarco_core/cli.py and
sarco_core/progress.py): --version, help on every option, choices, brackets printed as written,
the old `--model` spelling, and progress that says something when output is redirected."""

from __future__ import annotations

import io
from pathlib import Path

import click
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from dashboard.cli import app as dashboard_app
from edge_app.cli import app as edge_app
from model_build.calibration.cli import app as calibrate_app
from model_build.cli import app as sarco_app
from sarco_core import __version__
from sarco_core.progress import CommandProgress

APPS = {"sarco": sarco_app, "sarco-calibrate": calibrate_app, "sarco-edge": edge_app,
        "sarco-dashboard": dashboard_app}
runner = CliRunner()


def _parameters(command: click.Command, path: str):
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _parameters(sub, f"{path} {name}")
    for parameter in command.params:
        yield path, parameter


@pytest.mark.parametrize("name", APPS)
def test_every_command_group_prints_the_package_version(name: str) -> None:
    result = runner.invoke(APPS[name], ["--version"])
    assert result.exit_code == 0 and result.stdout == f"sarco {__version__}\n"


@pytest.mark.parametrize("name", APPS)
def test_every_option_and_argument_has_help(name: str) -> None:
    missing = [f"{path} {parameter.name}"
               for path, parameter in _parameters(typer.main.get_command(APPS[name]), name)
               if not getattr(parameter, "help", None)]
    assert missing == []


def test_config_sections_in_brackets_survive_help_and_errors() -> None:
    help_text = runner.invoke(edge_app, ["run", "--help"]).stdout
    assert "Override [capture] source" in " ".join(help_text.split())
    help_text = runner.invoke(sarco_app, ["synth", "--help"]).stdout
    assert "[default: off for large, on for the others]" in " ".join(help_text.split())
    error = runner.invoke(edge_app, ["run", "--log-level", "error"])
    assert error.exit_code == 2
    assert "error: no model bundle: set [model] bundle in the config file given with --config" \
        in error.output
    assert "--model" not in error.output  # `run` has no such option


def test_a_config_error_keeps_its_section_name(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('model = "not a table"\n', encoding="utf-8")
    result = runner.invoke(edge_app, ["run", "--config", str(config)])
    assert result.exit_code == 2 and "[model] must be a table" in result.output


@pytest.mark.parametrize(("app", "args", "listed"), [
    (sarco_app, ["train", "--help"], "<evidential|concat|late>"),
    (sarco_app, ["study", "--help"], "<fewest-not-worse|non-inferior|best>"),
    (calibrate_app, ["quantize", "--help"], "<tensorrt|cpu|tensorrt-cache>"),
    (calibrate_app, ["select", "--help"], "<ok|no_region|no_tissue|frozen|transition>"),
    (edge_app, ["bench", "--help"], "<auto|tensorrt|onnx-cuda|onnx-cpu>"),
    (edge_app, ["replay", "--help"], "<debug|info|warning|error>"),
])
def test_help_lists_the_choices(app: typer.Typer, args: list[str], listed: str) -> None:
    assert listed in runner.invoke(app, args).stdout


@pytest.mark.parametrize(("app", "args", "expected"), [
    (sarco_app, ["train", "{cohort}", "--out", "x", "--device", "gpu"],
     "'gpu' is not one of 'auto', 'cpu', 'cuda'"),
    (calibrate_app, ["quantize", "{cohort}", "{cohort}", "--out", "x", "--target", "jetson"],
     "'jetson' is not one of 'tensorrt', 'cpu', 'tensorrt-cache'"),
    (edge_app, ["bench", "--bundle", "{cohort}", "--backend", "cuda"],
     "'cuda' is not one of 'auto', 'tensorrt', 'onnx-cuda', 'onnx-cpu'"),
])
def test_a_wrong_choice_is_a_usage_error_listing_the_valid_ones(app: typer.Typer, args: list[str],
                                                                 expected: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [arg.format(cohort=tmp_path) for arg in args])
    assert result.exit_code == 2 and expected in result.output


def test_the_old_model_option_still_names_the_bundle(tmp_path: Path) -> None:
    absent = tmp_path / "no-such-bundle"
    result = runner.invoke(edge_app, ["replay", str(tmp_path / "scan.mp4"), "--model", str(absent),
                                      "--headless", "--log-level", "error"])
    assert "note: --model is deprecated; use --bundle" in result.stderr
    assert result.exit_code == 2 and str(absent) in result.stderr  # the bundle it tried to load
    both = runner.invoke(edge_app, ["bench", "--bundle", str(absent), "--model", str(absent)])
    assert both.exit_code == 2 and "give --bundle only" in both.output


def _stopped_clock(progress: CommandProgress) -> CommandProgress:
    progress.get_time = lambda: 0.0  # every step takes "0 s", however slow the test machine
    return progress


def _plain_progress(interval_s: float) -> tuple[CommandProgress, io.StringIO]:
    output = io.StringIO()  # not a terminal, as with `> log` or in CI
    return _stopped_clock(CommandProgress(Console(file=output), interval_s=interval_s)), output


def test_redirected_progress_prints_running_and_finished_steps() -> None:
    progress, output = _plain_progress(interval_s=0.0)
    with progress:
        task = progress.add_task("reading images", total=4)
        progress.advance(task, 2)
        progress.update(task, description="reading videos")
        progress.advance(task, 2)
        epoch = progress.add_task("epoch 1/2", total=3)
        progress.update(epoch, completed=3, outcome="train loss 0.6931, validation log loss 0.6812")
        progress.remove_task(epoch)
    lines = output.getvalue().splitlines()
    assert lines[0] == "reading images (2/4, 50%, 0 s so far)"
    assert lines[1] == "reading videos (2/4, 50%, 0 s so far)"
    assert "epoch 1/2: train loss 0.6931, validation log loss 0.6812 (done 3/3 in 0 s)" in lines
    assert lines[-1] == "reading videos (done 4/4 in 0 s)"  # ended with the command


def test_redirected_progress_waits_the_interval_between_lines() -> None:
    progress, output = _plain_progress(interval_s=3600.0)
    with progress:
        task = progress.add_task("checking media", total=100)
        for _ in range(100):
            progress.advance(task)
    assert output.getvalue().splitlines() == ["checking media (done 100/100 in 0 s)"]


def test_progress_prints_nothing_more_when_the_command_fails() -> None:
    progress, output = _plain_progress(interval_s=3600.0)
    with pytest.raises(RuntimeError), progress:
        progress.add_task("rendering media", total=10)
        raise RuntimeError("disk full")
    assert output.getvalue() == ""


def test_on_a_terminal_only_steps_with_an_outcome_leave_a_line() -> None:
    output = io.StringIO()
    with _stopped_clock(CommandProgress(Console(file=output, force_terminal=True, width=100))) as progress:
        reading = progress.add_task("reading images", total=2)
        progress.advance(reading, 2)
        progress.remove_task(reading)
        epoch = progress.add_task("epoch 1/1", total=1)
        progress.update(epoch, advance=1, outcome="train loss 0.5000, validation log loss 0.4000")
        progress.remove_task(epoch)
    text = output.getvalue()
    assert "epoch 1/1: train loss 0.5000, validation log loss 0.4000 (done 1/1 in 0 s)" in text
    assert "reading images (done" not in text
