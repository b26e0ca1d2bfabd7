"""The CUDA runtime through cuda-python, for the TensorRT backend and the engine build, and a
smoke test that names the real cause when CUDA cannot run.

THIN AND UNVERIFIED ON A DEVICE: written against cuda-python's documented API (every call
returns a tuple ``(cudaError_t, *values)``) and run here only against the test double in
``tests/support/doubles``.

Why a smoke test: recent cuda-python releases bring a CUDA runtime of their own. When that runtime
is newer than the CUDA JetPack's driver supports, every runtime call answers
``cudaErrorInsufficientDriver`` (35) — reported on JetPack 6.1/6.2 by NVlabs/FoundationStereo
#207/#209 and anduril/jetpack-nixos #328 — and without this check the device silently falls back
to ONNX Runtime on the CPU. ``jetson/setup.sh`` pins cuda-python to JetPack's CUDA and runs
``python -m edge_app.inference.cuda_runtime`` right after installing it.

    python -m edge_app.inference.cuda_runtime     # prints the versions; exit 1 with the cause
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import asdict, dataclass
from typing import Any

from sarco_core.errors import SarcoError

INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver
NO_DEVICE = 100  # cudaErrorNoDevice


class CudaUnavailable(SarcoError, RuntimeError):
    """cuda-python is missing or CUDA cannot run; the message names the cause and the fix."""


def import_cudart() -> Any:
    """cuda-python's runtime module: ``cuda.bindings.runtime`` (cuda-python >= 12.6.1), else
    the older ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime
        return runtime
    except ImportError:
        try:
            from cuda import cudart
            return cudart
        except ImportError as exc:
            raise CudaUnavailable(f"cuda-python is not installed ({exc}); jetson/setup.sh "
                                  "installs the release that matches JetPack's CUDA") from None


def call(cudart: Any, result: tuple) -> Any:
    """Unpack a cuda-python result ``(error, *values)``: raise on an error, else the value(s)."""
    error, *values = result
    if int(error) != 0:
        raise CudaUnavailable(f"CUDA call failed: {describe_error(cudart, error)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def describe_error(cudart: Any, error: Any) -> str:
    name = getattr(error, "name", str(error))
    try:
        text = cudart.cudaGetErrorString(error)[1]
        text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    except Exception:  # noqa: BLE001 - the name alone still says what happened
        text = ""
    return f"{name} ({int(error)}){': ' + text if text else ''}"


def version_text(encoded: int) -> str:
    """CUDA encodes versions as 1000 * major + 10 * minor (12060 -> "12.6")."""
    return f"{encoded // 1000}.{(encoded % 1000) // 10}" if encoded > 0 else "none"


def cuda_python_for(driver: int) -> str:
    """The cuda-python requirement for a driver's CUDA: the same major.minor, except 11.4
    (JetPack 5.1), for which none was published: 11.8, under CUDA 11's minor-version
    compatibility (jetson/setup.sh makes the same choice)."""
    wanted = version_text(driver)
    return f"cuda-python=={'11.8' if wanted == '11.4' else wanted}.*"


def cuda_python_version() -> str:
    for distribution in ("cuda-python", "cuda-bindings"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


@dataclass(frozen=True)
class CudaReport:
    """What the smoke test found; ``problem`` is empty when CUDA works."""

    cuda_python: str
    driver: str  # the CUDA version the installed driver supports, e.g. "12.6"
    runtime: str  # the CUDA runtime cuda-python calls, e.g. "12.6"
    devices: int
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def smoke_test(cudart: Any | None = None) -> CudaReport:
    """Ask the driver and the runtime for their versions, then count devices. The driver
    version needs no working runtime, so a mismatch can be named exactly."""
    try:
        cudart = cudart or import_cudart()
    except CudaUnavailable as exc:
        return CudaReport(cuda_python_version(), "unknown", "unknown", 0, str(exc))
    error, driver = cudart.cudaDriverGetVersion()
    driver = int(driver) if int(error) == 0 else 0
    error, runtime = cudart.cudaRuntimeGetVersion()
    runtime = int(runtime) if int(error) == 0 else 0
    package = cuda_python_version()
    versions = dict(cuda_python=package, driver=version_text(driver),
                    runtime=version_text(runtime))
    error, count = cudart.cudaGetDeviceCount()
    if int(error) == 0 and int(count) > 0:
        return CudaReport(**versions, devices=int(count))
    if int(error) == INSUFFICIENT_DRIVER or (runtime and driver and runtime > driver):
        label = "cuda-python" if package == "unknown" else f"cuda-python {package}"
        problem = (f"CUDA driver/runtime mismatch: {label} brings the CUDA "
                   f"{version_text(runtime)} runtime, but this device's driver supports CUDA "
                   f"{version_text(driver)} ({describe_error(cudart, error)}). Install the "
                   f"cuda-python release of the device's CUDA: pip install "
                   f"'{cuda_python_for(driver)}' (jetson/setup.sh pins it from the L4T release)")
    elif int(error) == NO_DEVICE or int(error) == 0:
        problem = ("no CUDA device visible: is this user in the 'video' and 'render' groups "
                   "(jetson/setup.sh adds the service user), and is the GPU driver loaded?")
    else:
        problem = f"CUDA cannot start: {describe_error(cudart, error)}"
    return CudaReport(**versions, devices=0, problem=problem)


def main() -> int:
    report = smoke_test()
    if report.runtime != "unknown":  # cuda-python answered: show what it found
        print(f"cuda-python {report.cuda_python}: CUDA runtime {report.runtime}, driver "
              f"supports CUDA {report.driver}, {report.devices} device(s)")
    if not report.ok:
        print(f"error: {report.problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
