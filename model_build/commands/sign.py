"""`sarco sign` and `sarco keygen`: seal a model bundle into a signed update package for the
devices (docs/deployment.md).

`sarco sign BUNDLE --key KEY [--int8 INT8_BUNDLE]` copies the float bundle, adds what the
device needs from the INT8 bundle that `sarco-calibrate` made of it (its Q/DQ graph as
``model.qdq.onnx``, or its TensorRT 8.x ``calibration.cache``; only when the accuracy gate
accepted it), adds the golden set the device's self-test needs (from `--golden-frames`, unless
the bundle already has one), rewrites the SHA-256 manifest, signs manifest and version with the
Ed25519 key and writes one `<version>.sarco-bundle.tar`. The device keeps the float graph:
ONNX Runtime runs it, the FP16 engine is built from it, and the INT8 engine has to beat it.
Neither bundle folder is changed. The package's SHA-256 is printed for the MQTT update command.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from model_build.commands.options import Bundle
from sarco_core.bundle import (CALIBRATION_CACHE, INT8_RECORD, MANIFEST, ONNX, QDQ_ONNX, QUANTIZATION,
                               DeviceBundle, load_device_bundle, write_manifest)
from sarco_core.cli import CliConsole
from sarco_core.errors import CommandFailed
from sarco_core.files import read_json, sha256_file
from sarco_core.update import DeployError
from sarco_core.update.golden import (DEFAULT_GAPS, GOLDEN, SelftestSpec, frames_from, golden_inputs,
                                      load_golden, write_golden)
from sarco_core.update.package import SUFFIX, write_package
from sarco_core.update.signing import check_version, generate_keypair, load_private_key, sign_bundle

console = CliConsole(soft_wrap=True)


def _passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DeployError(f"passphrase file {path}: cannot be read ({exc.strerror})") from None
    if not text or not text[0].strip():
        raise DeployError(f"passphrase file {path}: is empty")
    return text[0].strip().encode()


def register(app: typer.Typer) -> None:
    """Add `sarco sign` and `sarco keygen` to the CLI."""

    @app.command("sign")
    def sign(
        bundle: Bundle,
        key: Annotated[Path, typer.Option("--key", help="Ed25519 private key (sarco keygen).")],
        version: Annotated[str | None, typer.Option(
            "--version", help="Version name on the devices (default: model name and manifest "
                              "digest).")] = None,
        out: Annotated[Path | None, typer.Option(
            "--out", help=f"Package to write (default: <version>{SUFFIX} beside BUNDLE).")] = None,
        int8: Annotated[Path | None, typer.Option(
            "--int8", help="INT8 bundle from `sarco-calibrate quantize` (target tensorrt or "
                           "tensorrt-cache), accepted by `sarco-calibrate verify`.")] = None,
        golden_frames: Annotated[Path | None, typer.Option(
            "--golden-frames", help="Scanner video or folder of scans for the device self-test "
                                    "(required unless the bundle has a golden set).")] = None,
        golden_count: Annotated[int, typer.Option("--golden-count", min=4,
                                                  help="Golden frames to keep.")] = 16,
        fp16_gap: Annotated[float, typer.Option(
            "--fp16-gap", help="Largest P(sarcopenia) gap an FP16 engine may show.")]
            = DEFAULT_GAPS["fp16"],
        int8_gap: Annotated[float, typer.Option(
            "--int8-gap", help="Largest P(sarcopenia) gap an INT8 engine may show.")]
            = DEFAULT_GAPS["int8"],
        min_fps: Annotated[float, typer.Option(
            "--min-fps", help="Inference rate the device must reach (0: no floor).")] = 0.0,
        passphrase_file: Annotated[Path | None, typer.Option(
            "--passphrase-file", help="First line: the private key's passphrase.")] = None,
    ) -> None:
        """Sign BUNDLE into an update package the devices accept."""
        try:
            private_key = load_private_key(key, _passphrase(passphrase_file))
            spec = SelftestSpec({"fp32": DEFAULT_GAPS["fp32"], "fp16": fp16_gap,
                                 "int8": int8_gap}, min_fps)
            with tempfile.TemporaryDirectory(prefix="sarco-sign-") as scratch:
                sealed = Path(scratch) / "bundle"
                shutil.copytree(bundle, sealed, ignore=shutil.ignore_patterns(".*"))
                _seal(bundle, sealed, int8, golden_frames, golden_count, spec)
                chosen = check_version(version or _default_version(sealed))
                signature = sign_bundle(sealed, private_key, chosen)
                package = write_package(sealed, signature,
                                        out or bundle.parent / f"{chosen}{SUFFIX}")
        except OSError as exc:  # a SarcoError is reported by the command group
            raise CommandFailed(str(exc)) from None
        console.print(f"signed version [bold]{chosen}[/] with key {signature.key_id}")
        console.print(f"package {package}")
        console.print(f"sha256  {sha256_file(package)}")

    @app.command("keygen")
    def keygen(
        name: Annotated[Path, typer.Argument(help="Writes NAME.key (private, mode 600) and "
                                                  "NAME.pub (for the devices).")],
        passphrase_file: Annotated[Path | None, typer.Option(
            "--passphrase-file", help="Encrypt the private key with this file's first "
                                      "line.")] = None,
    ) -> None:
        """Make an Ed25519 signing key pair."""
        private, public = name.with_name(name.name + ".key"), name.with_name(name.name + ".pub")
        try:
            for path in (private, public):
                if path.exists():
                    raise DeployError(f"{path}: exists; a signing key is never overwritten")
            key_id = generate_keypair(private, public, _passphrase(passphrase_file))
        except OSError as exc:
            raise CommandFailed(str(exc)) from None
        console.print(f"key {key_id}: private {private} (keep it off the devices), public "
                      f"{public} (copy to each device: jetson/setup.sh --trusted-key)")


def _seal(original: Path, sealed: Path, int8: Path | None, golden_frames: Path | None,
          count: int, spec: SelftestSpec) -> None:
    """Add the INT8 graph or cache and the golden set to the copy; rewrite its manifest."""
    if (original / QUANTIZATION).is_file():
        raise DeployError(f"{original}: is an INT8 bundle; sign the float bundle it was made "
                          f"from and give this one with --int8 {original}")
    device = load_device_bundle(original)  # checks the manifest of what we were given
    if int8 is not None:
        _add_int8(device, int8, sealed)
    if golden_frames is None:
        if not (sealed / GOLDEN).is_file():
            raise DeployError(f"{original}: has no golden set for the device self-test; give "
                              "--golden-frames (a scanner video or a folder of scans)")
        load_golden(sealed)
    else:
        from model_build.calibration.onnx_run import cpu_session, run_batches

        reference = cpu_session(device.onnx_path)  # ONNX Runtime, FP32, CPU: the golden logits
        inputs = golden_inputs(frames_from(golden_frames, count), device.preprocess,
                               reference.get_inputs()[0].shape[1])
        logits = run_batches(reference, inputs)[0]
        write_golden(sealed, inputs, logits[:, None] if logits.ndim == 1 else logits, spec)
    write_manifest(sealed)


def _add_int8(float_bundle: DeviceBundle, int8: Path, sealed: Path) -> None:
    load_device_bundle(int8)  # the device's checks: the manifest, and the gate accepted it
    quantization = read_json(int8 / QUANTIZATION, DeployError)
    made_from = (quantization.get("source") or {}).get("model_sha256")
    if made_from != float_bundle.model_sha256:
        raise DeployError(f"{int8 / QUANTIZATION}: made from another model.onnx "
                          f"({str(made_from)[:12]}...), not from {float_bundle.path}")
    target = quantization.get("target")
    if target == "tensorrt":
        shutil.copyfile(int8 / ONNX, sealed / QDQ_ONNX)
    elif target == "tensorrt-cache":
        shutil.copyfile(int8 / CALIBRATION_CACHE, sealed / CALIBRATION_CACHE)
    else:
        raise DeployError(f"{int8}: target {target!r} is not for TensorRT; quantize with "
                          "--target tensorrt (or tensorrt-cache for JetPack 5)")
    shutil.copyfile(int8 / QUANTIZATION, sealed / INT8_RECORD)


def _default_version(sealed: Path) -> str:
    bundle = load_device_bundle(sealed)
    return f"{bundle.model_name}-{sha256_file(sealed / MANIFEST)[:12]}"
