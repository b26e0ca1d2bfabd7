"""``sarco-edge selftest``: can this device screen with this model, right now?

Model checks (these gate a model update; a failure rolls it back):

- ``bundle``: the manifest, the INT8 accuracy gate (sarco_core.bundle.check_int8_gate) and,
  for an installed version, the signature;
- ``reference``: the device's ONNX Runtime on the bundle's golden inputs against the logits
  stored at signing (catches a broken ONNX Runtime or CPU kernels);
- ``engine-fp16`` / ``engine-int8``: each TensorRT engine against the device's ONNX Runtime
  and its latency. An engine that cannot load or run, or is stale, fails; one that runs but
  strays beyond the bundle's gap for its precision is a warning: it is simply not used;
- ``fps``: the chosen backend's inference rate against the bundle's floor.

Then the engine to use is chosen: INT8 only when it is within its gap *and* faster than FP16
(on small depthwise CNNs it often is not), else FP16 if within its gap, else none (ONNX
Runtime); ``selected.engine`` in the engines folder points at it. Whatever is chosen, the
outputs the service produces are within the bundle's gap of ONNX Runtime's.

Device checks (reported, never a reason to roll a model back): ``tensorrt`` (TensorRT and
CUDA run: a CUDA driver/runtime mismatch fails here instead of silently leaving the device on
ONNX Runtime; skipped where TensorRT is not installed), ``folders`` (the runtime folders belong
to the service user), ``camera`` (a frame arrives), ``display`` (a screen to draw on, unless
headless), ``broker`` (the MQTT login works). While sarco-edge.service runs it holds the camera,
and over SSH there is no display: ``--skip camera --skip display`` then.

Engines are opened through a factory, so the tests stand ONNX Runtime in for TensorRT.
"""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.capture import SourceError, open_capture, parse_source
from edge_app.config import EdgeConfig
from edge_app.deploy.engines import (PRECISIONS, SELECTED, Platform, engine_path, engines_dir,
                                     plan_builds, stale_reason)
from edge_app.inference import BackendError, InferenceBackend
from edge_app.inference.onnx_runtime import OnnxRuntimeBackend
from sarco_core.bundle import BundleError, DeviceBundle, load_device_bundle
from sarco_core.files import read_json
from sarco_core.readout import ProbabilityReadout
from sarco_core.update import DeployError
from sarco_core.update.golden import GoldenSet, load_golden
from sarco_core.update.signing import SIGNATURE_FILE, Signature, load_trusted_keys, verify_bundle

MODEL_CHECKS = ("bundle", "reference", "engine-fp16", "engine-int8", "fps")
DEVICE_CHECKS = ("tensorrt", "folders", "camera", "display", "broker")
SERVICE_USER = "sarco-edge"  # jetson/setup.sh creates it; the service runs as it
OpenEngine = Callable[[Path], InferenceBackend]


@dataclass
class Check:
    name: str
    status: str  # pass | warn (works, not used) | fail | skip
    detail: str
    figures: dict[str, float] = field(default_factory=dict)


@dataclass
class SelftestReport:
    checks: list[Check]
    selected: str | None = None  # fp16 | int8 | None (ONNX Runtime)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "fail"]

    @property
    def model_failed(self) -> list[str]:
        return [name for name in self.failed if name in MODEL_CHECKS]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": not self.failed, "failed": self.failed, "selected_engine": self.selected,
                "checks": [asdict(c) for c in self.checks]}


def default_open_engine(path: Path) -> InferenceBackend:
    from edge_app.inference.tensorrt_engine import TensorRTBackend

    return TensorRTBackend(path)


def run_selftest(config: EdgeConfig, bundle_path: Path, trusted_keys: Path | None,
                 open_engine: OpenEngine = default_open_engine, skip: Iterable[str] = (),
                 runs: int = 50, platform: Platform | None = None,
                 timeout_s: float = 10.0,
                 platform_problem: DeployError | None = None) -> SelftestReport:
    """Every check, in order; ``skip`` names device checks to leave out. ``platform`` is the
    detected TensorRT platform, or None with ``platform_problem`` saying why."""
    skip = set(skip)
    unknown = skip - set(DEVICE_CHECKS)
    if unknown:
        raise DeployError(f"--skip {sorted(unknown)}: only {', '.join(DEVICE_CHECKS)} can be "
                          "skipped (model checks always run)")
    report = model_checks(bundle_path, trusted_keys, open_engine, runs, config.model.threads,
                          platform)
    device = {"tensorrt": lambda: check_tensorrt(platform, platform_problem),
              "folders": lambda: check_folders(Path(config.device.data_dir), bundle_path),
              "camera": lambda: check_camera(config, timeout_s),
              "display": lambda: check_display(config),
              "broker": lambda: check_broker(config, timeout_s)}
    for name, check in device.items():
        report.checks.append(Check(name, "skip", "skipped on request") if name in skip
                             else check())
    return report


# --------------------------------------------------------------------------- model checks


def model_checks(bundle_path: Path, trusted_keys: Path | None, open_engine: OpenEngine,
                 runs: int = 50, threads: int = 0,
                 platform: Platform | None = None) -> SelftestReport:
    bundle_path = Path(bundle_path)
    bundle_check, bundle = check_bundle(bundle_path, trusted_keys)
    report = SelftestReport([bundle_check])
    if bundle is None:
        return _unreached(report, "the bundle is not usable")
    try:
        golden = load_golden(bundle_path)
    except DeployError as exc:
        report.checks.append(Check("reference", "fail", str(exc)))
        return _unreached(report, "no golden set")
    readout = ProbabilityReadout(bundle.readout)
    try:
        reference = OnnxRuntimeBackend(bundle.onnx_path, threads=threads)
    except BackendError as exc:
        report.checks.append(Check("reference", "fail", str(exc)))
        return _unreached(report, "ONNX Runtime cannot run the model")
    try:
        ort_outputs = reference.outputs(golden.inputs)
    except BackendError as exc:
        report.checks.append(Check("reference", "fail", f"golden inputs: {exc}"))
        return _unreached(report, "the golden inputs do not fit the model")
    if ort_outputs.shape != golden.logits.shape:
        report.checks.append(Check("reference", "fail", f"the model gives {ort_outputs.shape} "
                                   f"outputs, the golden set holds {golden.logits.shape}"))
        return _unreached(report, "the golden set belongs to another model")
    gap = probability_gap(readout, ort_outputs, golden.logits)
    limit = golden.spec.max_probability_gap["fp32"]
    report.checks.append(Check(
        "reference", "pass" if gap <= limit else "fail",
        f"ONNX Runtime vs the logits stored at signing: max probability gap {gap:.2e} "
        f"(limit {limit:g}) on {len(golden.inputs)} golden inputs",
        {"max_probability_gap": gap}))
    latency = {"onnxruntime": seconds_per_frame(reference, golden.inputs, runs)}
    passed = {}
    for precision in PRECISIONS:
        check, seconds = check_engine(bundle_path, precision, open_engine, golden, ort_outputs,
                                      readout, runs, platform)
        report.checks.append(check)
        if check.status == "pass":
            passed[precision] = seconds
    report.selected = choose_engine(passed)
    try:
        select_engine(bundle_path, report.selected)
    except OSError as exc:
        report.checks.append(Check("engine-select", "fail", f"{engines_dir(bundle_path)}: cannot "
                                   f"record the chosen engine ({exc.strerror}); {OWNERSHIP_FIX}"))
        report.selected = None
    chosen = report.selected or "onnxruntime"
    fps = 1.0 / (passed.get(chosen) or latency["onnxruntime"])
    floor = golden.spec.min_fps
    report.checks.append(Check(
        "fps", "pass" if fps >= floor else "fail",
        f"{chosen}: {fps:.1f} inferences/s at batch 1 (floor {floor:g}); ONNX Runtime "
        f"{1.0 / latency['onnxruntime']:.1f}/s",
        {"fps": fps, "onnxruntime_fps": 1.0 / latency["onnxruntime"],
         **{f"{p}_fps": 1.0 / s for p, s in passed.items()}}))
    return report


def _unreached(report: SelftestReport, why: str) -> SelftestReport:
    done = {c.name for c in report.checks}
    report.checks += [Check(name, "fail", f"not run: {why}") for name in MODEL_CHECKS
                      if name not in done]
    return report


def check_bundle(bundle_path: Path,
                 trusted_keys: Path | None) -> tuple[Check, DeviceBundle | None]:
    """The manifest always; the signature when the bundle was installed by an update (its
    ``signature.json`` sits beside it) and trusted keys are configured."""
    try:
        bundle = load_device_bundle(bundle_path)
    except BundleError as exc:
        return Check("bundle", "fail", str(exc)), None
    signature_path = bundle_path.parent / SIGNATURE_FILE
    if trusted_keys is None or not signature_path.is_file():
        return Check("bundle", "pass", f"{bundle.model_name}: manifest verified (not an "
                     "installed version: no signature to check)"), bundle
    try:
        signature = Signature.from_dict(read_json(signature_path, DeployError), str(signature_path))
        verify_bundle(bundle_path, signature, load_trusted_keys(trusted_keys))
    except DeployError as exc:
        return Check("bundle", "fail", str(exc)), None
    return Check("bundle", "pass", f"{bundle.model_name} version {signature.version}: manifest "
                 f"and signature (key {signature.key_id}) verified"), bundle


def check_engine(bundle_path: Path, precision: str, open_engine: OpenEngine, golden: GoldenSet,
                 ort_outputs: np.ndarray, readout: ProbabilityReadout, runs: int,
                 platform: Platform | None) -> tuple[Check, float]:
    name = f"engine-{precision}"
    path = engine_path(bundle_path, precision)
    if not path.is_file():
        return Check(name, "skip", f"no {precision} engine in {engines_dir(bundle_path)} "
                     "(run `sarco-edge build-engine`)"), 0.0
    if platform is not None:
        plans = {p.precision: p for p in plan_builds(bundle_path, platform)[0]}
        if precision not in plans:
            return Check(name, "warn", f"{path}: not used: TensorRT {platform.tensorrt_version} "
                         "builds no such engine for this bundle (delete the file)"), 0.0
        reason = stale_reason(bundle_path, plans[precision], platform)
        if reason:
            return Check(name, "fail", f"{path}: stale ({reason}); run `sarco-edge "
                         "build-engine`"), 0.0
    try:
        engine = open_engine(path)
        outputs = engine.outputs(golden.inputs)
        seconds = seconds_per_frame(engine, golden.inputs, runs)
    except (RuntimeError, ValueError, OSError) as exc:  # BackendError, TensorRT's own errors
        return Check(name, "fail", f"{path}: {exc}"), 0.0
    gap = probability_gap(readout, outputs, ort_outputs)
    limit = golden.spec.max_probability_gap[precision]
    status, verdict = ("pass", "") if gap <= limit else ("warn", "; not used")
    return Check(name, status, f"max probability gap to ONNX Runtime {gap:.2e} (limit "
                 f"{limit:g}){verdict}; {1.0 / seconds:.1f} inferences/s",
                 {"max_probability_gap": gap, "fps": 1.0 / seconds}), seconds


def probability_gap(readout: ProbabilityReadout, outputs: np.ndarray,
                    reference: np.ndarray) -> float:
    return float(np.max(np.abs(readout.probability(outputs) - readout.probability(reference))))


def seconds_per_frame(backend: InferenceBackend, inputs: np.ndarray, runs: int) -> float:
    """Median time of single-frame inferences (batch 1, as the live loop runs), after two
    warm-up runs: the median ignores the odd scheduling hiccup."""
    frames = [inputs[i % len(inputs)][None] for i in range(runs + 2)]
    for frame in frames[:2]:
        backend.outputs(frame)
    times = []
    for frame in frames[2:]:
        started = time.perf_counter()
        backend.outputs(frame)
        times.append(time.perf_counter() - started)
    return max(statistics.median(times), 1e-9)


def choose_engine(passed: dict[str, float]) -> str | None:
    """``passed``: precision -> seconds per frame of the engines that passed their gap."""
    if "int8" in passed and ("fp16" not in passed or passed["int8"] < passed["fp16"]):
        return "int8"
    return "fp16" if "fp16" in passed else None


def select_engine(bundle_path: Path, precision: str | None) -> None:
    """Point ``selected.engine`` at the chosen engine (atomically), or remove it so the
    service falls back to ONNX Runtime."""
    link = engines_dir(bundle_path) / SELECTED
    if precision is None:
        link.unlink(missing_ok=True)
        return
    temporary = link.with_name(f".{SELECTED}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    os.symlink(engine_path(bundle_path, precision).name, temporary)
    os.replace(temporary, link)  # a symbolic link, so not sarco_core.files.atomic_path


# --------------------------------------------------------------------------- device checks

OWNERSHIP_FIX = (f"run the self-test as the service user (sudo -u {SERVICE_USER} ...), and give "
                 f"it its folders: sudo chown -R {SERVICE_USER}:{SERVICE_USER} DATA_DIR")


def check_tensorrt(platform: Platform | None, problem: DeployError | None) -> Check:
    """TensorRT and CUDA work (pass), are absent (skip: ONNX Runtime only, as on a
    workstation), or are present but cannot run (fail, naming the cause)."""
    from edge_app.deploy.tensorrt_build import TensorRTMissing

    if platform is not None:
        return Check("tensorrt", "pass", f"TensorRT {platform.tensorrt_version} on "
                     f"{platform.gpu_name} (sm {platform.compute_capability})")
    if problem is None or isinstance(problem, TensorRTMissing):
        return Check("tensorrt", "skip", f"{problem or 'not detected'}: ONNX Runtime only")
    return Check("tensorrt", "fail", f"TensorRT is installed but cannot run, so no engine is "
                 f"built or used: {problem}")


def check_folders(data_dir: Path, bundle_path: Path, user: str = SERVICE_USER) -> Check:
    """The folders the service writes (data, bundles, the version slot and its engines,
    updates) belong to the service user. Run as root, ownership is checked; run as anyone else, write access."""
    import pwd

    slot = Path(bundle_path).absolute().parent  # bundles/<version>: engines are built in it
    folders = [data_dir, data_dir / "bundles", data_dir / "update",
               *([slot] if slot.is_relative_to(Path(data_dir).absolute()) else []),
               engines_dir(bundle_path)]
    folders = [folder for folder in folders if folder.is_dir()]
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(user)
        except KeyError:
            return Check("folders", "skip", f"run as root and no user {user!r}: not a device "
                         "set up by jetson/setup.sh")
        wrong = [f"{folder} (owner uid {folder.stat().st_uid})" for folder in folders
                 if folder.stat().st_uid != owner.pw_uid]
        verdict = f"not owned by {user}"
    else:
        wrong = [str(folder) for folder in folders if not os.access(folder, os.W_OK | os.X_OK)]
        verdict = "not writable by this user"
    if wrong:
        return Check("folders", "fail", f"{verdict}: {', '.join(wrong)}; "
                     + OWNERSHIP_FIX.replace("DATA_DIR", str(data_dir)))
    return Check("folders", "pass", f"{len(folders)} runtime folders under {data_dir} usable")



def check_camera(config: EdgeConfig, timeout_s: float) -> Check:
    c = config.capture
    try:
        spec = parse_source(c.source, width=c.width or None, height=c.height or None,
                            fps=c.fps or None, fourcc=c.fourcc or None)
        capture = open_capture(spec)
    except SourceError as exc:
        return Check("camera", "fail", f"{exc}; while sarco-edge.service runs it holds the "
                     "camera: stop it, or --skip camera")
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ok, frame = capture.read()
            if ok and frame is not None:
                height, width = frame.shape[:2]
                return Check("camera", "pass", f"{spec.describe()}: {width}x{height} frame "
                             "received", {"width": float(width), "height": float(height)})
            time.sleep(0.05)
    finally:
        capture.release()
    return Check("camera", "fail", f"{spec.describe()}: opened but no frame within "
                 f"{timeout_s:g} s; check the scanner's video output and the capture card")


def check_display(config: EdgeConfig, environ: dict[str, str] | None = None) -> Check:
    environ = dict(os.environ if environ is None else environ)
    if config.display.headless:
        return Check("display", "skip", "headless: the screen goes to snapshots")
    if environ.get("WAYLAND_DISPLAY"):
        return Check("display", "pass", f"Wayland display {environ['WAYLAND_DISPLAY']}")
    display = environ.get("DISPLAY", "")
    match = re.fullmatch(r":(\d+)(\.\d+)?", display)
    if not match:
        return Check("display", "fail", f"DISPLAY is {display!r}: no local screen; set "
                     "Environment=DISPLAY=:0 in the service (docs/deployment.md) or "
                     "headless = true; over SSH, --skip display")
    socket = Path("/tmp/.X11-unix") / f"X{match.group(1)}"
    if not socket.exists():
        return Check("display", "fail", f"DISPLAY={display} but {socket} does not exist: no X "
                     "server runs; enable the desktop's automatic login")
    return Check("display", "pass", f"X display {display}")


def check_broker(config: EdgeConfig, timeout_s: float) -> Check:
    """Log in to the broker with the device's own credentials and disconnect."""
    from edge_app.config import broker_settings
    from sarco_core.wire.broker import make_client

    m = config.mqtt
    if not m.broker:
        return Check("broker", "skip", "no broker configured (results stay on the device)")
    try:
        settings = broker_settings(config)
    except ValueError as exc:
        return Check("broker", "fail", str(exc))
    client = make_client(settings, f"sarco-edge-selftest-{config.device.device}",
                         protocol="5" if m.protocol == "5" else "3.1.1")
    answered = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(client, userdata, flags, reason, properties) -> None:  # noqa: ANN001
        outcome["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(settings.host, settings.port, keepalive=10)
    except (OSError, ValueError) as exc:
        return Check("broker", "fail", f"cannot reach {settings.url} ({exc})")
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            return Check("broker", "fail", f"{settings.url}: no answer within {timeout_s:g} s")
        reason = outcome["reason"]
        if reason.is_failure:
            return Check("broker", "fail", f"{settings.url} refused the login as "
                         f"{m.username or '(anonymous)'}: {reason}; check the username and the "
                         "password file")
        return Check("broker", "pass", f"logged in to {settings.url} as {m.username or '-'}")
    finally:
        client.disconnect()
        client.loop_stop()
