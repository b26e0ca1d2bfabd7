"""Mirror averaging inside the image network (``--flip-average``): the score of an image and of its
left-right mirror are one number, training sees single images, and the exported ONNX graph does
the same with operators the device runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from model_build.models.export import DEPLOYABLE_OPERATORS, export_onnx
from model_build.models.fusion import FusionModel, NetworkConfig
from model_build.models.image import FlipAveraged


def _model(flip: bool) -> FusionModel:
    torch.manual_seed(0)
    return FusionModel(NetworkConfig(modalities=["image"], image_size=64, flip_average=flip), pretrained=True).eval()


def test_an_image_and_its_mirror_score_the_same() -> None:
    scorer = _model(True).image_scorer()
    images = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        plain, mirrored = scorer(images), scorer(torch.flip(images, dims=[3]))
    assert torch.allclose(plain, mirrored, atol=1e-5)
    unflipped = _model(False).image_scorer()
    with torch.no_grad():
        assert not torch.allclose(unflipped(images), unflipped(torch.flip(images, dims=[3])), atol=1e-5)


def test_it_is_the_mean_of_the_two_passes_and_training_sees_one() -> None:
    encoder = _model(False).encoders["image"]
    wrapped = FlipAveraged(encoder, 64).eval()
    images = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        expected = (encoder(images) + encoder(torch.flip(images, dims=[3]))) / 2
        assert torch.allclose(wrapped(images), expected, atol=1e-6)
    wrapped.train()
    calls = []
    handle = encoder.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    wrapped(images)
    handle.remove()
    assert calls == [2]  # one pass, no mirror


def test_the_wrapper_adds_a_prefix_and_saves_no_mirror() -> None:
    plain, flipped = _model(False).state_dict(), _model(True).state_dict()
    assert {key.replace("encoders.image.", "encoders.image.encoder.", 1) for key in plain} == set(flipped)


def test_a_weight_average_keeps_the_mirror_exact() -> None:
    """An average with ``use_buffers`` (``--weight-average``) would average an integer buffer in
    float and truncate it: the validated model would score a wrong mirror."""
    model = _model(True)
    average = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.95),
                                                  use_buffers=True)
    for _ in range(3):
        average.update_parameters(model)
    scorer = average.module.eval().image_scorer()
    images = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(scorer(images), scorer(torch.flip(images, dims=[3])), atol=1e-5)


def test_the_exported_graph_mirrors_with_deployable_operators(tmp_path: Path) -> None:
    scorer = _model(True).image_scorer()
    path = tmp_path / "model.onnx"
    assert export_onnx(scorer, 64, path) <= 1e-4
    operators = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert operators <= DEPLOYABLE_OPERATORS and "Gather" in operators
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((2, 1, 64, 64), dtype=np.float32)
    plain = session.run(None, {"image": images})[0]
    mirrored = session.run(None, {"image": images[..., ::-1].copy()})[0]
    assert np.allclose(plain, mirrored, atol=1e-5)
