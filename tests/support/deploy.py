"""Helpers for the deployment tests (no tests here): a device layout in a temporary folder,
a signing key trusted by it, signed update packages made with the real `sarco sign`, and
bundles that carry an INT8 model with a given accuracy gate status."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from edge_app.deploy.engines import engine_path
from edge_app.deploy.layout import DeviceLayout
from sarco_core.bundle import CALIBRATION_CACHE, INT8_RECORD, QDQ_ONNX, QUANTIZATION, write_manifest
from sarco_core.update.signing import generate_keypair
from tests.support.edge import make_bundle, make_onnx_model, write_video


def sarco_app():  # noqa: ANN201
    """The `sarco sign` / `sarco keygen` commands on a Typer app of their own (the lead
    registers them in model_build/cli.py)."""
    from model_build.commands import sign
    from sarco_core.cli import CommandGroup

    app = CommandGroup()
    sign.register(app)
    return app


def edge_app_with_deploy():  # noqa: ANN201
    from edge_app.cli import app as edge
    from edge_app.deploy.cli import register

    if "selftest" not in {c.name for c in edge.registered_commands}:
        register(edge)
    return edge


def device_layout(root: Path, trusted: Path | None = None) -> DeviceLayout:
    """/etc/sarco-edge and /var/lib/sarco-edge under ``root``; ``trusted``: a public key."""
    layout = DeviceLayout(config_dir=root / "etc", data_dir=root / "var")
    layout.trusted_keys.mkdir(parents=True, exist_ok=True)
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    if trusted is not None:
        (layout.trusted_keys / trusted.name).write_bytes(trusted.read_bytes())
    return layout


def signing_key(folder: Path, name: str = "release") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    if not private.exists():
        generate_keypair(private, public, None)
    return private, public


def golden_video(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "golden.avi"
    if not path.exists():
        write_video(path, [("live", 12)], width=320, height=240)
    return path


def signed_package(folder: Path, key: Path, version: str, *sign_options: str,
                   **model_options: float) -> Path:
    """A bundle of the tiny model, signed by `sarco sign` into ``folder/<version>.tar``."""
    bundle = make_bundle(folder / f"bundle-{version}", **model_options)
    out = folder / f"{version}.sarco-bundle.tar"
    result = CliRunner().invoke(sarco_app(), [
        "sign", str(bundle), "--key", str(key), "--version", version, "--out", str(out),
        "--golden-frames", str(golden_video(folder / "frames")), "--golden-count", "6",
        *sign_options])
    assert result.exit_code == 0, result.output
    return out


def write_edge_config(path: Path, layout: DeviceLayout, video: Path, **sections: dict) -> Path:
    """An edge.toml as jetson/setup.sh writes it, pointing at ``layout``; ``sections`` add
    keys (e.g. mqtt={"broker": ...})."""
    tables = {
        "device": {"site": "clinic-a", "device": "edge-01", "data_dir": str(layout.data_dir)},
        "model": {"bundle": str(layout.current_bundle), "backend": "onnx-cpu"},
        "capture": {"source": str(video)},
        "display": {"headless": True},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def add_int8(bundle: Path, carried: str = QDQ_ONNX, status: str | None = "accepted",
             record: bool = True) -> Path:
    """Give a device bundle an INT8 model, then re-seal its manifest. ``carried``: QDQ_ONNX or
    CALIBRATION_CACHE beside the float graph with INT8_RECORD, as `sarco sign --int8` ships
    it; or QUANTIZATION: the bundle is an INT8 bundle as `sarco-calibrate quantize` writes it
    (its model.onnx stands in for the quantized graph). ``status``: the gate's verdict (None:
    the record has no gate); ``record`` False: no INT8_RECORD at all."""
    if carried == QDQ_ONNX:
        make_onnx_model(bundle / QDQ_ONNX, slope=3.9)  # stands in for the Q/DQ graph
    elif carried == CALIBRATION_CACHE:
        (bundle / CALIBRATION_CACHE).write_bytes(b"TRT-8502-EntropyCalibration2\nimage: 3c010a14\n")
    if record:
        target = {QDQ_ONNX: "tensorrt", CALIBRATION_CACHE: "tensorrt-cache"}.get(carried, "cpu")
        payload = {"format_version": 1, "target": target, "method": "entropy",
                   **({"gate": {"status": status}} if status is not None else {})}
        name = QUANTIZATION if carried == QUANTIZATION else INT8_RECORD
        (bundle / name).write_text(json.dumps(payload), encoding="utf-8")
    write_manifest(bundle)
    return bundle


def stand_in_engines(bundle: Path, fp16: str = "good", int8: str = "good") -> None:
    for precision, kind in (("fp16", fp16), ("int8", int8)):
        path = engine_path(bundle, precision)
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "good":
            shutil.copyfile(bundle / "model.onnx", path)
        else:  # another model: it runs, but its probabilities stray
            make_onnx_model(path, slope=-4.0, bias=2.0)
