"""Assembling the pipeline from a config: bundle, backend, source, outbox, MQTT and what the
status topic reports about the device (health telemetry, the last update) in ``assemble``;
the pipeline's stages and sinks, wired in one place, in ``compose``.

Kept apart from the command line so tests and the benchmark build exactly what ``sarco-edge``
runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge_app.capture import FrameGrabber, SourceSpec
from edge_app.config import UNNAMED, EdgeConfig, broker_settings
from edge_app.deploy.layout import DEFAULT_CONFIG, DeviceLayout
from edge_app.deploy.telemetry import AppMetrics, TegrastatsMonitor, status_extras
from edge_app.deploy.update import write_request
from edge_app.display import ScreenState, SnapshotWriter, WindowDisplay
from edge_app.inference import InferenceBackend, load_backend
from edge_app.inference.onnx_runtime import OnnxRuntimeBackend
from edge_app.locallog import ResultLog
from edge_app.mqtt.link import MqttLink
from edge_app.mqtt.outbox import Outbox
from edge_app.pipeline import EdgePipeline
from edge_app.session import LiveSmoother, SessionAggregator, SessionStage
from edge_app.sinks import DisplaySink, LocalLogSink, MqttSink, Sink
from edge_app.stages import Inference, MuscleMeasure, PipelineStats, ScanGate
from sarco_core import __version__
from sarco_core.bundle import (BundleError, DeviceBundle, default_measurement_bundle, load_device_bundle,
                               load_measurement_bundle)
from sarco_core.errors import SarcoError
from sarco_core.imaging.tracker import ScanRegionTracker
from sarco_core.quality import QualityGate
from sarco_core.readout import ProbabilityReadout
from sarco_core.region_watch import RegionWatch
from sarco_core.update import DeployError
from sarco_core.wire.broker import BrokerSettings

log = logging.getLogger("edge_app.app")


class SetupError(SarcoError, ValueError):
    """A setting that prevents starting; the message says which and how to fix it."""


@dataclass
class EdgeApp:
    pipeline: EdgePipeline
    link: MqttLink | None
    outbox: Outbox | None
    data_dir: Path
    monitor: TegrastatsMonitor | None = None

    def replay_session(self, screening_id: str) -> dict:
        """A file from its first frame to its last as one session; returns the result."""
        if not self.pipeline.start_session(screening_id):
            raise SetupError(self.pipeline.screen.notice)
        self.pipeline.run()
        result = self.pipeline.end_session()
        assert result is not None  # the session started above
        return result

    def close(self, drain_timeout_s: float = 0.0) -> int:
        """Wait up to ``drain_timeout_s`` for queued results to be acknowledged, then
        disconnect; returns how many results stay queued on disk."""
        self.pipeline.release()  # a result held for its measurements goes out as it is
        if self.link is not None:
            if drain_timeout_s > 0:
                self.link.wait_until_drained(drain_timeout_s)
            self.link.stop()
        if self.monitor is not None:
            self.monitor.stop()
        queued = 0
        if self.outbox is not None:
            queued = len(self.outbox)
            self.outbox.close()
        self.pipeline.close()
        return queued


def assemble(config: EdgeConfig, source: SourceSpec, realtime: bool = True,
             loop: bool = False, config_path: Path = DEFAULT_CONFIG) -> EdgeApp:
    """Build everything ``config`` describes; raises SetupError/BundleError/SourceError/
    BackendError with a clear message when something is missing. ``config_path`` is where
    ``config`` came from: the deployment layout (update requests, the last update's outcome)
    follows from it and from ``[device] data_dir``."""
    if not config.model.bundle:
        raise SetupError("no model bundle: set [model] bundle in the config")
    config = _named(config)
    bundle = load_device_bundle(config.model.bundle)
    backend = load_backend(config.model.backend, bundle.onnx_path,
                           Path(config.model.engine) if config.model.engine else None,
                           config.model.threads)
    settings = _broker_settings(config) if config.mqtt.broker else None
    data_dir = Path(config.device.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    layout = DeviceLayout.from_config(config_path, config.device.data_dir)
    grabber = FrameGrabber(source, realtime=realtime, loop=loop).open()
    try:
        outbox = link = monitor = None
        if settings is not None:
            outbox = Outbox(data_dir / "outbox.sqlite3", config.mqtt.outbox_capacity)
            monitor = TegrastatsMonitor()
            # the link calls this only once started, below, when ``pipeline`` exists
            extras = status_extras(layout, monitor, lambda: _metrics(pipeline, outbox))
            link = MqttLink(settings, config.device.site, config.device.device, outbox,
                            status_fields=lambda: {
                                "app_version": __version__,
                                "model": {"name": bundle.model_name,
                                          "sha256": bundle.model_sha256},
                                **extras()},
                            status_interval_s=config.mqtt.status_interval_s)
        pipeline = compose(config, bundle, backend, grabber, data_dir, link, outbox)
        pipeline.deliver_left_over()
    except BaseException:
        grabber.stop()  # release the camera or file before reporting
        raise
    if link is not None:
        monitor.start()  # without tegrastats (not a Jetson) health has the app's figures only
        link.on_command = lambda command: _route_command(command, pipeline, layout)
        link.start()
    log.info("edge app ready", extra={
        "event": "ready", "backend": backend.name, "source": source.describe(),
        "model": bundle.model_name, "broker": config.mqtt.broker or None})
    return EdgeApp(pipeline, link, outbox, data_dir, monitor)


def _named(config: EdgeConfig) -> EdgeConfig:
    """Results say where they come from: publishing needs the site and device named; without
    a broker the unnamed ones are labelled ``unnamed`` (the command line says so)."""
    unnamed = config.device.unnamed
    if unnamed and config.mqtt.broker:
        raise SetupError(
            f"publishing to {config.mqtt.broker} needs the {' and '.join(unnamed)} name: give "
            "--site and --device (replay), or set [device] site and device in the config")
    return config.override("device", **dict.fromkeys(unnamed, UNNAMED))


def compose(config: EdgeConfig, bundle: DeviceBundle, backend: InferenceBackend,
            grabber: FrameGrabber, data_dir: Path, link: MqttLink | None = None,
            outbox: Outbox | None = None) -> EdgePipeline:
    """The pipeline's stages built from ``config`` and wired, in one place (as a Holoscan
    application's ``compose()``): source -> scan gate -> inference -> session -> sinks. The
    sinks get each frame and result in the order listed: MQTT, the local log, the display."""
    site, device = config.device.site, config.device.device
    readout = ProbabilityReadout(bundle.readout)
    stats = PipelineStats()
    gate = ScanGate(QualityGate(config.quality), RegionWatch(
        ScanRegionTracker(recheck_every=config.session.region_recheck_frames)))
    inference = Inference(bundle, backend, readout, config.capture.mm_per_pixel or None)
    measure = muscle_measure(config)
    sessions = SessionStage(
        SessionAggregator(bundle.threshold, readout, config.session.aggregation,
                          config.session.min_usable_frames, config.session.rule),
        LiveSmoother(config.session.smoothing_s), site, device, bundle, outbox, data_dir,
        measurement_bundle=None if measure is None else measure.bundle)
    screen = _display(config, data_dir)
    display = DisplaySink(screen, bundle.threshold, link, outbox,
                          config.session.min_usable_frames, config.session.muscles,
                          f"{bundle.model_name} ({bundle.model_sha256[:12]})", data_dir,
                          interactive=isinstance(screen, WindowDisplay))
    sinks: list[Sink] = [LocalLogSink(ResultLog(data_dir / "results.jsonl")), display]
    if link is not None:
        sinks.insert(0, MqttSink(link, site, device, stats, config.mqtt.live_interval_s))
    return EdgePipeline(grabber, gate, inference, sessions, display, sinks, stats, measure)


def muscle_measure(config: EdgeConfig) -> MuscleMeasure | None:
    """The measure stage from ``[measure]`` (None when off); BundleError/BackendError naming
    the model folder and the fix when it cannot start."""
    if not config.measure.enabled:
        return None
    try:
        bundle = load_measurement_bundle(config.measure.model or default_measurement_bundle())
    except BundleError as exc:
        raise SetupError(f"[measure] model: {exc}; or set [measure] enabled = false to screen "
                         "without muscle measurements") from None
    runner = OnnxRuntimeBackend(bundle.onnx_path, cuda=config.measure.backend == "onnx-cuda",
                                threads=config.measure.threads)
    return MuscleMeasure(bundle, runner, config.capture.mm_per_pixel or None)


def _metrics(pipeline: EdgePipeline, outbox: Outbox | None) -> AppMetrics:
    stats = pipeline.stats
    return AppMetrics(fps=pipeline.fps, frames_processed=stats.frames,
                      frames_rejected=stats.rejected, frame_errors=stats.errors,
                      queue_length=None if outbox is None else len(outbox))


def _route_command(command: dict[str, Any], pipeline: EdgePipeline,
                   layout: DeviceLayout) -> None:
    """Session commands go to the pipeline's loop; ``update_model`` queues a request file,
    which jetson/sarco-edge-update.path hands to ``sarco-edge update --from-request`` (root:
    it stops this service, verifies the signature, switches and self-tests)."""
    if command["command"] != "update_model":
        pipeline.submit(command)
        return
    try:
        write_request(layout, command["url"], command.get("sha256"))
    except (DeployError, OSError) as exc:
        log.error("update request not written", extra={
            "event": "update_request_failed", "error": str(exc),
            "hint": f"the service must be able to write {layout.update_dir}"})
        return
    # the host only: a pre-signed download URL carries its secret in the query
    log.info("model update requested", extra={"event": "update_requested",
                                               "host": urlsplit(command["url"]).hostname,
                                               "request": str(layout.request_file)})


def _display(config: EdgeConfig, data_dir: Path):  # noqa: ANN202
    size = (config.display.width, config.display.height)
    if not config.display.headless:
        try:
            return WindowDisplay(size, fullscreen=config.display.fullscreen)
        except RuntimeError as exc:
            log.warning("no window; writing snapshots", extra={"event": "headless_fallback",
                                                              "reason": str(exc)})
    return SnapshotWriter(data_dir / "snapshots", size, config.display.snapshot_interval_s)


def show_problem(config: EdgeConfig, error: str, detail: str, hold_s: float = 30.0) -> None:
    """The error screen (``error``: model, camera or disk) before the program stops, so the
    team at the scanner sees why there is no screening instead of a blank screen: a window
    holds it up to ``hold_s`` or until a key or tap; headless writes the ``error`` snapshot.
    Best effort: a display that cannot open leaves the message to the log."""
    try:
        display = _display(config, Path(config.device.data_dir))
    except (OSError, RuntimeError):
        return
    screen = ScreenState(error=error, error_detail=detail, app_version=__version__)
    display.write("error", screen, None)
    deadline = time.monotonic() + hold_s
    while isinstance(display, WindowDisplay) and time.monotonic() < deadline and \
            display.poll_key() is None:
        display.show(screen, None)
        time.sleep(0.1)
    display.close()


def _broker_settings(config: EdgeConfig) -> BrokerSettings:
    try:
        return broker_settings(config)
    except ValueError as exc:
        raise SetupError(str(exc)) from None
