"""The deployment commands of ``sarco-edge``: build-engine, selftest, update, rollback,
telemetry. ``register(app)`` adds them to the edge app's Typer app.

Exit codes: 0 done; 1 the check or update did not succeed (the message names what failed);
2 bad input (a missing bundle, an unreadable config), with a one-paragraph message.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from edge_app.config import EdgeConfig, load_config
from edge_app.deploy.engines import Platform, engines_dir, ensure_engines, plan_builds, stale_reason
from edge_app.deploy.layout import DEFAULT_CONFIG, DeviceLayout
from edge_app.deploy.report import first_device_report
from edge_app.deploy.selftest import (DEVICE_CHECKS, SelftestReport, default_open_engine,
                                      model_checks, run_selftest)
from edge_app.deploy.slots import match_owner
from edge_app.deploy.update import (NoService, SystemdService, Updater, UpdateOutcome,
                                    take_request)
from sarco_core.bundle import BundleError
from sarco_core.cli import CliConsole
from sarco_core.errors import reportable
from sarco_core.files import write_json
from sarco_core.progress import CommandProgress
from sarco_core.update import DeployError

console = CliConsole(soft_wrap=True)
CONFIG = typer.Option(DEFAULT_CONFIG, "--config", help="The device's edge.toml.")
NO_RESTART = typer.Option(False, "--no-restart",
                          help="Do not stop/start sarco-edge.service around the switch.")
_STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
# an Enum, not a Literal: Typer takes only Enums as choices of a repeatable option
SkippableCheck = Enum("SkippableCheck", [(name, name) for name in DEVICE_CHECKS], type=str)



def _load(config_path: Path) -> tuple[EdgeConfig, DeviceLayout]:
    config = load_config(config_path)
    return config, DeviceLayout.from_config(config_path, config.device.data_dir)


def register(app: typer.Typer) -> None:
    """Add the deployment commands to ``sarco-edge``."""
    app.command("build-engine")(build_engine_command)
    app.command("selftest")(selftest_command)
    app.command("update")(update_command)
    app.command("rollback")(rollback_command)
    app.command("telemetry")(telemetry_command)


def build_engine_command(
    bundle: Path = typer.Argument(..., help="Model bundle folder (e.g. "
                                  "/var/lib/sarco-edge/bundles/current/bundle)."),
    config_path: Optional[Path] = typer.Option(None, "--config",
                                               help="edge.toml: keeps the timing cache in its "
                                                    "data_dir, shared by all bundles."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if up to date."),
    check: bool = typer.Option(False, "--check", help="Only say which engines are stale."),
    workspace_mb: int = typer.Option(1024, "--workspace-mb", min=64,
                                     help="TensorRT builder workspace."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Largest batch the engine "
                                  "takes (the live loop runs batch 1)."),
) -> None:
    """Build the FP16 and INT8 TensorRT engines for BUNDLE on this device (Jetson only)."""
    from edge_app.deploy.tensorrt_build import build_engine, detect_platform

    try:
        platform = detect_platform()
        if check:
            plans, notes = plan_builds(bundle, platform)
            stale = False
            for plan in plans:
                reason = stale_reason(bundle, plan, platform)
                stale |= reason is not None
                console.print(f"{plan.precision}: {reason or 'up to date'}")
            for note in notes:
                console.print(f"[dim]{escape(note)}[/]")
            raise typer.Exit(code=1 if stale else 0)
        cache = (_load(config_path)[1].timing_cache(platform.key) if config_path
                 else engines_dir(bundle) / f"timing-{platform.key}.cache")

        with CommandProgress(console) as progress:
            def build(plan):  # noqa: ANN001, ANN202
                task = progress.add_task(
                    f"building the {plan.precision} engine (minutes on a Jetson)", total=None)
                engine = build_engine(plan, platform, cache, workspace_mb << 20, max_batch)
                progress.remove_task(task)
                return engine

            statuses, notes = ensure_engines(bundle, platform, build, force=force)
        match_owner(Path(bundle).absolute().parent, engines_dir(bundle))
        match_owner(cache.absolute().parent, cache)
    except (DeployError, BundleError, OSError) as exc:
        raise reportable(exc) from None
    console.print(f"TensorRT {platform.tensorrt_version} on {platform.gpu_name} "
                  f"(sm {platform.compute_capability}); engines in {engines_dir(bundle)}")
    for status in statuses:
        took = f", {status.meta.build_seconds:.0f} s" if status.action == "built" and \
            status.meta else ""
        console.print(f"  {status.precision}: {status.action}"
                      f"{f' ({status.reason}{took})' if status.reason else ''}")
    for note in notes:
        console.print(f"  [dim]{escape(note)}[/]")
    console.print("Run `sarco-edge selftest` to compare them and choose one.")


def selftest_command(
    config_path: Path = CONFIG,
    bundle: Optional[Path] = typer.Option(
        None, "--bundle", help="Model bundle folder (default: [model] bundle of the config)."),
    skip: list[SkippableCheck] = typer.Option(
        [], "--skip", help="Leave out a device check, repeatable (camera while the service runs, "
                           "display over SSH)."),
    runs: int = typer.Option(50, "--runs", min=5, help="Timed inferences per backend."),
    as_json: Optional[Path] = typer.Option(None, "--json", help="Also write the report here."),
    device_report: Optional[Path] = typer.Option(
        None, "--report", help="Write what to send back after a first run on a device: "
                               "versions, CUDA smoke test, engine build logs, timings, checks."),
) -> None:
    """Engine vs ONNX Runtime on the bundle's golden frames, fps, TensorRT/CUDA, folders,
    camera, display, broker."""
    config, layout = _load(config_path)
    bundle = bundle or Path(config.model.bundle or layout.current_bundle)
    platform, problem = _detect_platform()
    report = run_selftest(config, bundle, layout.trusted_keys,
                          skip=[check.value for check in skip], runs=runs,
                          platform=platform, platform_problem=problem)
    _print_report(report)
    if as_json:
        write_json(as_json, report.to_dict(), sort_keys=True)
    if device_report:
        write_json(device_report, first_device_report(report, config, bundle), sort_keys=True)
        console.print(f"device report written to {device_report}: send it back with the "
                      "first-device checklist (docs/deployment.md)")
    if report.failed:
        console.print(f"[bold red]FAILED:[/] {', '.join(report.failed)}")
        raise typer.Exit(code=1)
    console.print("[green]all checks passed[/]")


def update_command(
    source: Optional[str] = typer.Argument(None, help="Signed package: an http(s):// URL or "
                                           "an absolute path (USB stick)."),
    config_path: Path = CONFIG,
    sha256: Optional[str] = typer.Option(None, "--sha256", help="Expected SHA-256 of the "
                                         "package file."),
    from_request: bool = typer.Option(False, "--from-request", help="Take the source from "
                                      "update/request.json (the systemd path unit does)."),
    no_restart: bool = NO_RESTART,
    runs: int = typer.Option(50, "--runs", min=5, help="Timed inferences per backend."),
) -> None:
    """Install a signed model package; roll back if its self-test fails."""
    config, layout = _load(config_path)
    if from_request:
        source, sha256 = take_request(layout)
    elif source is None:
        raise DeployError("give the package SOURCE, or --from-request")
    elif "://" not in source:
        source = str(Path(source).absolute())  # a file named on the command line
    outcome = _updater(config, layout, no_restart, runs).apply(source, sha256)
    _finish(outcome, "installed")


def rollback_command(config_path: Path = CONFIG, no_restart: bool = NO_RESTART) -> None:
    """Switch back to the previous model bundle."""
    config, layout = _load(config_path)
    _finish(_updater(config, layout, no_restart, 50).rollback(), "rolled_back")


def telemetry_command(
    from_file: Optional[Path] = typer.Option(None, "--from-file",
                                             help="Parse recorded tegrastats output instead."),
    count: int = typer.Option(1, "--count", min=1, help="Live samples to print."),
    interval_ms: int = typer.Option(1000, "--interval-ms", min=100,
                                    help="tegrastats sampling interval."),
) -> None:
    """Print the health fields (JSON lines) the status topic carries, from tegrastats."""
    from edge_app.deploy.telemetry import TegrastatsMonitor, parse_lines, tegra_fields

    if from_file is not None:
        try:
            samples, rejected = parse_lines(from_file.read_text(encoding="utf-8").splitlines())
        except OSError as exc:
            raise reportable(exc) from None
        for sample in samples:
            console.print_json(json.dumps(tegra_fields(sample)))
        if rejected or not samples:
            console.print(f"[yellow]{rejected} line(s) were not tegrastats output[/]")
            raise typer.Exit(code=1)
        return
    monitor = TegrastatsMonitor(interval_ms)
    if not monitor.start():
        raise DeployError("tegrastats not found: this is not a Jetson (or it is not on PATH)")
    try:
        for _ in range(count):
            sample = monitor.next_sample(3 * interval_ms / 1000)
            if sample is None:
                raise DeployError("tegrastats printed nothing usable")
            console.print_json(json.dumps(tegra_fields(sample)))
    finally:
        monitor.stop()


# --------------------------------------------------------------------------- helpers


def _detect_platform() -> tuple[Platform | None, DeployError | None]:
    """The TensorRT platform, or None and why (TensorRTMissing: ONNX Runtime only)."""
    from edge_app.deploy.tensorrt_build import detect_platform

    try:
        return detect_platform(), None
    except DeployError as exc:
        return None, exc


def _updater(config: EdgeConfig, layout: DeviceLayout, no_restart: bool, runs: int) -> Updater:
    from edge_app.deploy.tensorrt_build import build_engine

    platform, why = _detect_platform()

    def build_engines(bundle: Path) -> list[str]:
        from edge_app.deploy.tensorrt_build import TensorRTMissing

        if platform is None and isinstance(why, TensorRTMissing):
            return [f"no TensorRT engines ({why})"]
        if platform is None:  # said loudly: the model will run on the CPU until CUDA is fixed
            return [f"WARNING: TensorRT is installed but cannot run, so this model runs on "
                    f"the CPU: {why}"]
        cache = layout.timing_cache(platform.key)
        statuses, notes = ensure_engines(
            bundle, platform, lambda plan: build_engine(plan, platform, cache))
        # the version slot (made by this root-run update), its engines and the timing cache
        match_owner(layout.data_dir, Path(bundle).parent, cache)
        return [f"{s.precision} engine {s.action}" for s in statuses] + notes

    def selftest(bundle: Path) -> SelftestReport:
        return model_checks(bundle, layout.trusted_keys, default_open_engine, runs,
                            config.model.threads, platform)

    return Updater(layout, NoService() if no_restart else SystemdService(), build_engines,
                   selftest)


def _finish(outcome: UpdateOutcome, success: str) -> None:
    style = "green" if outcome.outcome == success else "bold red"
    console.print(f"[{style}]{outcome.outcome}[/] {escape(outcome.version or '')}: "
                  f"{escape(outcome.reason)}")
    raise typer.Exit(code=0 if outcome.outcome == success else 1)


def _print_report(report: SelftestReport) -> None:
    for check in report.checks:
        console.print(f"[{_STATUS_STYLE[check.status]}]{check.status:>4}[/]  "
                      f"{check.name:<12} {escape(check.detail)}")
    console.print(f"engine in use: {report.selected or 'none (ONNX Runtime)'}")
