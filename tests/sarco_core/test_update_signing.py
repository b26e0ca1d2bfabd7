"""Signed update packages: `sarco sign` on the workstation, verification on the device. Every
kind of tampering must be refused before anything the service uses changes."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sarco_core.bundle import write_manifest
from sarco_core.update import DeployError
from sarco_core.update.package import PackageError, unpack_package
from sarco_core.update.signing import (
    SignatureError,
    canonical_manifest,
    load_private_key,
    load_trusted_keys,
    verify_bundle,
)
from tests.support.deploy import (
    device_layout,
    edge_app_with_deploy,
    golden_video,
    sarco_app,
    signed_package,
    signing_key,
    write_edge_config,
)
from tests.support.edge import make_bundle, make_onnx_model


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    return signing_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def package(tmp_path_factory, keys) -> Path:
    return signed_package(tmp_path_factory.mktemp("release"), keys[0], "v1")


def rewrite(package: Path, out: Path, change: Callable[[str, bytes], bytes]) -> Path:
    """A copy of ``package`` with each member's bytes passed through ``change``."""
    with tarfile.open(package) as source, tarfile.open(out, "w") as target:
        for member in source:
            data = change(member.name, source.extractfile(member).read())
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    return out


def verify(package: Path, folder: Path, public: Path) -> None:
    signature = unpack_package(package, folder)
    verify_bundle(folder / "bundle", signature, load_trusted_keys(public.parent))


def test_a_signed_package_verifies_and_holds_the_golden_set(package, keys, tmp_path) -> None:
    verify(package, tmp_path / "unpacked", keys[1])
    names = {p.name for p in (tmp_path / "unpacked" / "bundle").iterdir()}
    assert {"model.onnx", "golden.npz", "selftest.json", "MANIFEST.sha256"} <= names


def test_one_changed_byte_in_any_file_is_refused(package, keys, tmp_path) -> None:
    def flip(name: str, data: bytes) -> bytes:
        if name != "bundle/model.onnx":
            return data
        return data[:-1] + bytes([data[-1] ^ 1])

    tampered = rewrite(package, tmp_path / "tampered.tar", flip)
    with pytest.raises(SignatureError, match="model.onnx: content differs"):
        verify(tampered, tmp_path / "unpacked", keys[1])


def test_a_consistent_but_re_manifested_bundle_fails_the_signature(package, keys,
                                                                    tmp_path) -> None:
    """An attacker who edits the threshold and rewrites the manifest to match."""
    with tarfile.open(package) as archive:
        config = json.loads(archive.extractfile("bundle/config.json").read())
    config["decision_threshold"] = 0.05
    new_config = json.dumps(config).encode()

    def lower_threshold(name: str, data: bytes) -> bytes:
        if name == "bundle/config.json":
            return new_config
        if name == "bundle/MANIFEST.sha256":
            digest = hashlib.sha256(new_config).hexdigest()
            return b"\n".join(
                (f"{digest}  config.json".encode() if line.endswith(b"  config.json") else line)
                for line in data.splitlines()) + b"\n"
        return data

    tampered = rewrite(package, tmp_path / "tampered.tar", lower_threshold)
    with pytest.raises(SignatureError, match="signature does not match"):
        verify(tampered, tmp_path / "unpacked", keys[1])


def test_a_renamed_version_fails_the_signature(package, keys, tmp_path) -> None:
    def rename(name: str, data: bytes) -> bytes:
        if name != "signature.json":
            return data
        signature = json.loads(data)
        signature["version"] = "v9"
        return json.dumps(signature).encode()

    with pytest.raises(SignatureError, match="'v9'"):
        verify(rewrite(package, tmp_path / "renamed.tar", rename), tmp_path / "u", keys[1])


def test_a_key_the_device_does_not_trust_is_refused(package, tmp_path) -> None:
    _, other_public = signing_key(tmp_path / "other", "other")
    with pytest.raises(SignatureError, match="does not trust"):
        verify(package, tmp_path / "unpacked", other_public)
    with pytest.raises(SignatureError, match="no trusted keys"):
        verify_bundle(Path("unused"), unpack_package(package, tmp_path / "again"), {})


@pytest.mark.parametrize("name, kind", [("bundle/../../etc/passwd", tarfile.REGTYPE),
                                        ("bundle/sub/model.onnx", tarfile.REGTYPE),
                                        ("bundle/model.onnx", tarfile.SYMTYPE),
                                        ("/abs.txt", tarfile.REGTYPE)])
def test_package_members_that_are_not_plain_files_are_refused(tmp_path, name, kind) -> None:
    package = tmp_path / "evil.tar"
    with tarfile.open(package, "w") as archive:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = "/etc/shadow" if kind == tarfile.SYMTYPE else ""
        archive.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    with pytest.raises(PackageError, match="member"):
        unpack_package(package, tmp_path / "out")
    assert not (tmp_path.parent / "etc").exists()


def test_a_package_without_a_signature_or_not_a_tar_is_refused(tmp_path) -> None:
    with tarfile.open(tmp_path / "unsigned.tar", "w") as archive:
        info = tarfile.TarInfo("bundle/model.onnx")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(PackageError, match="signature.json"):
        unpack_package(tmp_path / "unsigned.tar", tmp_path / "a")
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(PackageError, match="not a readable tar"):
        unpack_package(tmp_path / "junk.tar", tmp_path / "b")


def test_sign_needs_golden_frames_and_never_changes_the_bundle(keys, tmp_path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    before = canonical_manifest(bundle)
    result = CliRunner().invoke(sarco_app(), ["sign", str(bundle), "--key", str(keys[0])])
    assert result.exit_code == 2 and "--golden-frames" in result.output
    result = CliRunner().invoke(sarco_app(), [
        "sign", str(bundle), "--key", str(keys[0]), "--golden-frames",
        str(golden_video(tmp_path / "frames")), "--golden-count", "4"])
    assert result.exit_code == 0, result.output
    assert canonical_manifest(bundle) == before and not (bundle / "golden.npz").exists()
    # the default version names the model and the sealed manifest; the package sits beside
    packages = list(tmp_path.glob("tiny-late-*.sarco-bundle.tar"))
    assert len(packages) == 1 and hashlib.sha256(packages[0].read_bytes()).hexdigest() \
        in result.output


def test_keygen_protects_the_key(tmp_path) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse\n")
    runner = CliRunner()
    result = runner.invoke(sarco_app(), ["keygen", str(tmp_path / "team"),
                                         "--passphrase-file", str(passphrase)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "team.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(DeployError, match="passphrase"):
        load_private_key(tmp_path / "team.key", None)
    load_private_key(tmp_path / "team.key", b"correct horse")
    again = runner.invoke(sarco_app(), ["keygen", str(tmp_path / "team")])
    assert again.exit_code == 2 and "never overwritten" in again.output


def test_the_device_refuses_a_tampered_package_and_keeps_its_model(package, keys,
                                                                   tmp_path) -> None:
    layout = device_layout(tmp_path / "device", trusted=keys[1])
    config = write_edge_config(layout.config_dir / "edge.toml", layout, tmp_path / "none.avi")
    runner = CliRunner()
    first = runner.invoke(edge_app_with_deploy(), ["update", str(package), "--config",
                                                   str(config), "--no-restart"])
    assert first.exit_code == 0, first.output

    def flip(name: str, data: bytes) -> bytes:
        return data.replace(b"tiny", b"tinY") if name == "bundle/config.json" else data

    second = signed_package(tmp_path / "release2", keys[0], "v2")
    tampered = rewrite(second, tmp_path / "v2-tampered.tar", flip)
    result = runner.invoke(edge_app_with_deploy(), ["update", str(tampered), "--config",
                                                    str(config), "--no-restart"])
    assert result.exit_code == 1 and "refused" in result.output
    assert "config.json: content differs" in result.output
    assert (layout.bundles / "current").resolve().name == "v1"
    assert not (layout.bundles / "v2").exists()
    outcome = json.loads(layout.last_update.read_text())
    assert outcome["outcome"] == "refused" and outcome["version"] == "v2"


def int8_bundle(folder: Path, float_bundle: Path, target: str = "tensorrt",
                status: str = "accepted", source_sha: str | None = None) -> Path:
    """An INT8 bundle as `sarco-calibrate quantize` lays it out (model_build.calibration.bundles): a copy
    of the float bundle with its own model.onnx (or a cache) and quantization.json."""
    folder.mkdir(parents=True)
    for path in float_bundle.iterdir():
        if path.name != "MANIFEST.sha256":
            (folder / path.name).write_bytes(path.read_bytes())
    if target == "tensorrt":
        make_onnx_model(folder / "model.onnx", slope=3.9)  # stands in for the Q/DQ graph
    else:
        (folder / "calibration.cache").write_bytes(b"TRT-8502-EntropyCalibration2\n")
    digest = source_sha or hashlib.sha256((float_bundle / "model.onnx").read_bytes()).hexdigest()
    (folder / "quantization.json").write_text(json.dumps({
        "format_version": 1, "target": target, "source": {"model_sha256": digest},
        "gate": {"status": status}}))
    write_manifest(folder)
    return folder


@pytest.mark.parametrize("target, shipped", [("tensorrt", "model.qdq.onnx"),
                                             ("tensorrt-cache", "calibration.cache")])
def test_sign_takes_what_the_device_needs_from_an_accepted_int8_bundle(keys, tmp_path, target,
                                                                       shipped) -> None:
    bundle = make_bundle(tmp_path / "float")
    int8 = int8_bundle(tmp_path / "int8", bundle, target)
    out = tmp_path / "v1.tar"
    result = CliRunner().invoke(sarco_app(), [
        "sign", str(bundle), "--key", str(keys[0]), "--int8", str(int8), "--version", "v1",
        "--out", str(out), "--golden-frames", str(golden_video(tmp_path / "frames")),
        "--golden-count", "4"])
    assert result.exit_code == 0, result.output
    verify(out, tmp_path / "unpacked", keys[1])
    unpacked = tmp_path / "unpacked" / "bundle"
    assert (unpacked / shipped).read_bytes() == (int8 / shipped.replace("model.qdq.onnx",
                                                                        "model.onnx")).read_bytes()
    # the device keeps the float graph: ONNX Runtime and the FP16 engine use it
    assert (unpacked / "model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()
    assert json.loads((unpacked / "int8-quantization.json").read_text())["target"] == target


@pytest.mark.parametrize("change, words", [
    ({"status": "pending"}, "gate status 'pending'"),
    ({"status": "rejected"}, "gate status 'rejected'"),
    ({"target": "cpu"}, "not for TensorRT"),
    ({"source_sha": "0" * 64}, "made from another model.onnx"),
])
def test_sign_refuses_an_int8_bundle_the_device_must_not_use(keys, tmp_path, change,
                                                             words) -> None:
    bundle = make_bundle(tmp_path / "float")
    int8 = int8_bundle(tmp_path / "int8", bundle, **change)
    args = ["sign", str(bundle), "--key", str(keys[0]), "--golden-frames",
            str(golden_video(tmp_path / "frames"))]
    result = CliRunner().invoke(sarco_app(), [*args, "--int8", str(int8)])
    assert result.exit_code == 2 and words in result.output
    signed_int8 = CliRunner().invoke(sarco_app(), [*args[:1], str(int8), *args[2:]])
    assert signed_int8.exit_code == 2 and "is an INT8 bundle" in signed_int8.output
