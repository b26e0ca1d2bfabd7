"""``sarco-edge``: run on a live scanner feed, replay a recording, or benchmark the model.

Bad input (a missing or corrupt video, a wrong config key, an unreachable camera) ends with a
one-paragraph message and exit code 2, never a traceback. A broker that is down is not an
error: results wait in the outbox.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Optional

import typer
from rich.markup import escape

from edge_app.app import SetupError, assemble, muscle_measure, show_problem
from edge_app.capture import SourceError, SourceSpec, parse_source
from edge_app.config import UNNAMED, load_config
from edge_app.deploy.cli import register as register_deploy_commands
from edge_app.deploy.layout import DEFAULT_CONFIG
from edge_app.deploy.sdnotify import service_notifications
from edge_app.inference import BACKENDS, BackendError
from edge_app.logs import LEVELS, setup_logging
from edge_app.ui.words import CALLS, muscle_summary
from sarco_core.cli import CliConsole, command_group, old_option_name, renamed_option
from sarco_core.bundle import BundleError
from sarco_core.errors import SarcoError, reportable

app = command_group("sarco-edge", "Point-of-care sarcopenia screening on a scanner's video feed.")
console = CliConsole(soft_wrap=True)  # long paths in messages stay on one line
# what a command turns into one error line while it sets up: a SarcoError names the place and
# the fix; OpenCV, ONNX Runtime and the file system raise ValueError and OSError with the cause
USER_ERRORS = (SarcoError, ValueError, OSError)

CONFIG = typer.Option(None, "--config", help="TOML config (docs/edge.md).")
HEADLESS = typer.Option(None, "--headless/--window",
                        help="Write screen snapshots instead of opening a window.")
LOG_LEVEL = typer.Option("info", "--log-level", help="Least severe log records written to stderr.")
OLD_BUNDLE = old_option_name("--model", "--bundle")
# systemd's watchdog (WatchdogSec=30 in jetson/sarco-edge.service) is fed only while the loop
# has passed within this many seconds (an idle loop passes every 0.5 s, a frame in well under
# a second), so only a loop hung for this long gets the service restarted
WATCHDOG_STALL_S = 20.0



def _say_where(config) -> None:  # noqa: ANN001
    """Loudly: the names results will carry when none were given, and where they are kept."""
    unnamed = config.device.unnamed
    if unnamed and not config.mqtt.broker:
        console.print(f"[yellow]no {' or '.join(unnamed)} name given[/]: results are labelled "
                      f"{escape(repr(UNNAMED))} and stay on this machine (give --site and "
                      "--device, or set them in \\[device], to publish)")
    console.print(f"results, outbox and snapshots in {escape(config.device.data_dir)}")


def _require_bundle(bundle: object, how_to_give: str) -> None:
    """Checked here rather than left to assemble(), which cannot say what each command takes."""
    if not bundle:
        raise SetupError(f"no model bundle: {how_to_give}")


@contextmanager
def _stop_on_signals(pipeline):  # noqa: ANN001, ANN202
    """SIGTERM (systemd stop) and Ctrl-C end the loop cleanly: the open session is kept,
    queued results stay on disk. The previous handlers come back afterwards."""

    def handler(signum, frame) -> None:  # noqa: ANN001
        pipeline.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@app.command()
def run(
    config_path: Optional[Path] = CONFIG,
    source: Optional[str] = typer.Option(None, "--source",
                                         help="Override [capture] source: 0, /dev/video0, a "
                                              "GStreamer pipeline, rtsp://..., or a file."),
    headless: Optional[bool] = HEADLESS,
    loop: bool = typer.Option(False, "--loop", help="Play a video file source over and over "
                                                    "at its frame rate (demos)."),
    log_level: Literal[LEVELS] = LOG_LEVEL,
) -> None:
    """Run on the live feed: sessions start and end with Enter (or an MQTT command)."""
    setup_logging(log_level)
    config = load_config(config_path)
    _require_bundle(config.model.bundle,
                    "set [model] bundle in the config file given with --config (docs/edge.md)")
    try:
        config = config.override("capture", source=source).override("display", headless=headless)
        c = config.capture
        spec = parse_source(c.source, width=c.width or None, height=c.height or None,
                            fps=c.fps or None, fourcc=c.fourcc or None)
        _say_where(config)
        edge = assemble(config, spec, realtime=True, loop=loop,
                        config_path=config_path or DEFAULT_CONFIG)
    except (BundleError, BackendError) as exc:
        show_problem(config, "model", str(exc))  # the team sees it, not a blank screen
        raise reportable(exc) from None
    except USER_ERRORS as exc:
        raise reportable(exc) from None
    try:
        with _stop_on_signals(edge.pipeline), \
                service_notifications(lambda: edge.pipeline.last_beat, WATCHDOG_STALL_S):
            edge.pipeline.run(open_timeout_s=config.capture.open_timeout_s)
    except SourceError as exc:
        edge.close()
        raise reportable(exc) from None
    edge.pipeline.end_session()  # a session still open when the service stops is kept
    queued = edge.close(drain_timeout_s=config.mqtt.drain_timeout_s)
    if queued:
        why = f" ({escape(edge.link.waiting_reason())})" if edge.link is not None else ""
        console.print(f"{queued} result(s) wait in the outbox{why}; they go out on the next run.")


@app.command()
def replay(
    video: Path = typer.Argument(..., help="A recording of the scanner's screen."),
    bundle: Optional[Path] = typer.Option(None, "--bundle",
                                          help="Model bundle folder (overrides [model] bundle)."),
    old_bundle: Optional[Path] = OLD_BUNDLE,
    config_path: Optional[Path] = CONFIG,
    broker: Optional[str] = typer.Option(None, "--broker", help="mqtt://HOST:PORT or mqtts://."),
    username: Optional[str] = typer.Option(None, "--username", help="Broker user name."),
    password_file: Optional[Path] = typer.Option(
        None, "--password-file", help="File whose first line is the broker password."),
    site: Optional[str] = typer.Option(
        None, "--site", help="Site name in results (overrides [device] site; needed to "
                                  "publish)."),
    device: Optional[str] = typer.Option(
        None, "--device", help="Device name in results (overrides [device] device; "
                                    "needed to publish)."),
    screening_id: str = typer.Option("REPLAY-001", "--screening-id",
                                     help="Pseudonymous id for the session (never a name)."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Outbox, result log and snapshots (default: [device] data_dir, "
                                 "else $XDG_DATA_HOME/sarco-edge or ~/.local/share/sarco-edge)."),
    headless: Optional[bool] = HEADLESS,
    mm_per_pixel: Optional[float] = typer.Option(
        None, "--mm-per-pixel", min=0.001, max=10.0,
        help="The recording's pixel size at its depth (overrides [capture] mm_per_pixel): "
             "muscle thickness in mm; without it, in pixels."),
    realtime: bool = typer.Option(True, "--realtime/--every-frame",
                                  help="Play at the recorded frame rate (dropping frames the "
                                       "model cannot keep up with), or process every frame."),
    log_level: Literal[LEVELS] = LOG_LEVEL,
) -> None:
    """Replay a video as one session, from the first frame to the last."""
    bundle = renamed_option(bundle, old_bundle, "--model", "--bundle")
    setup_logging(log_level)
    config = load_config(config_path)
    _require_bundle(bundle or config.model.bundle,
                    "give --bundle BUNDLE, or set [model] bundle in the --config file")
    try:
        config = (config
                  .override("model", bundle=str(bundle) if bundle else None)
                  .override("device", site=site, device=device,
                            data_dir=str(data_dir) if data_dir else None)
                  .override("mqtt", broker=broker, username=username,
                            password_file=str(password_file) if password_file else None)
                  .override("display", headless=headless)
                  .override("capture", mm_per_pixel=mm_per_pixel))
        _say_where(config)
        edge = assemble(config, SourceSpec("file", str(video)), realtime=realtime,
                        config_path=config_path or DEFAULT_CONFIG)
    except USER_ERRORS as exc:
        raise reportable(exc) from None
    started = time.monotonic()
    try:
        with _stop_on_signals(edge.pipeline):
            result = edge.replay_session(screening_id)
    except SetupError as exc:
        edge.close()
        raise reportable(exc) from None
    queued = edge.close(drain_timeout_s=config.mqtt.drain_timeout_s)
    _report(result, edge.pipeline.stats, time.monotonic() - started, queued,
            edge.link.waiting_reason() if edge.link is not None else None)


def _report(result: dict, stats, seconds: float, queued: int,  # noqa: ANN001
            waiting: str | None) -> None:
    """``waiting``: why results stay queued (None: no broker configured)."""
    probability, screen = result["probability"], result.get("screen") or {}
    headline, meaning, _ = CALLS[screen.get("call", "rescan")]
    interval = (f" ({screen['level']:.0%} interval {screen['low']:.3f} to {screen['high']:.3f})"
                if screen.get("low") is not None else "")
    console.print(
        f"[bold]{headline}[/]: {meaning} ({result['decision']})  probability "
        f"{'--' if probability is None else f'{probability:.3f}'}{interval}  threshold "
        f"{result['threshold']:.3f}  usable frames {result['usable_frames']}/"
        f"{result['processed_frames']}  ({stats.frames / max(seconds, 1e-9):.1f} fps processed)")
    summary = muscle_summary(result.get("measurements"))
    if summary is not None:
        console.print(escape(summary))
    console.print(f"result id {result['result_id']}")
    if waiting is not None:
        console.print("published to the broker" if queued == 0 else
                      f"[yellow]{queued} result(s) wait in the outbox[/]: {escape(waiting)}; "
                      "they are sent on the next run")


@app.command()
def bench(
    bundle: Optional[Path] = typer.Option(None, "--bundle",
                                          help="Model bundle folder (required)."),
    old_bundle: Optional[Path] = OLD_BUNDLE,
    backend: Literal[BACKENDS] = typer.Option(
        "auto", "--backend", help="Inference backend; auto takes the first that works."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="TensorRT engine."),
    video: Optional[Path] = typer.Option(None, "--video",
                                         help="Frames to use (default: a synthetic frame)."),
    frames: int = typer.Option(200, "--frames", min=10, help="Frames timed per stage."),
    threads: int = typer.Option(0, "--threads", help="ONNX Runtime threads (0: automatic)."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="Device config: its [measure] section adds the muscle "
                               "measurement stage (default: the shipped model, one thread)."),
    no_measure: bool = typer.Option(False, "--no-measure", help="Leave the measurement out."),
) -> None:
    """Per-stage latency on this device: region + gate, preprocessing, inference, measure."""
    from edge_app.bench import benchmark_stages

    bundle = renamed_option(bundle, old_bundle, "--model", "--bundle")
    if bundle is None:
        raise typer.BadParameter("give the model bundle folder", param_hint="--bundle")
    setup_logging("warning")
    try:
        settings = load_config(config)
        if no_measure:
            settings = settings.override("measure", enabled=False)
        figures = benchmark_stages(bundle, backend, engine, video, frames, threads,
                                   muscle_measure(settings))
    except USER_ERRORS as exc:
        raise reportable(exc) from None
    console.print(f"backend {figures.backend}, {figures.frames} frames of {figures.frame_shape}")
    for stage, (p50, p95) in figures.stage_ms.items():
        console.print(f"  {stage:<12} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")
    console.print(f"  max sustained: {figures.fps:.1f} fps (all stages, one thread)")


register_deploy_commands(app)

if __name__ == "__main__":
    app()
