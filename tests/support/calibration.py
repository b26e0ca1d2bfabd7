"""A tiny cohort, network and bundle for the calibration tests (no tests here).

The cohort has real PNG stills and real MP4 recordings (OpenCV) of a synthetic scanner screen:
a black frame around a speckled B-mode area whose echo is brighter for sarcopenia, and
recordings in which the probe is put down, lifted (a dark scan area with a reverberation band)
and put down again, so the quality gate sees tissue and probe-in-air frames.

The network is a small ONNX CNN built with onnx.helper: two ReLU convolutions (8 and 16
channels, so Model Optimizer quantizes them) that respond to local brightness, global pooling
and a linear head on the mean feature. The head's offset is set between the two classes' mean feature, measured
with the float graph on the development stills, so the float model separates the classes with
a margin and a faithful INT8 copy makes the same calls.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from testkit.cohort_factory import write_csv

SIZE = 32
FRAME = (120, 160)               # rows, columns of a screen frame (even: see the report)
SCAN = (10, 110, 20, 140)        # top, bottom, left, right of the B-mode area
ECHO = {0: 150.0, 1: 195.0}      # mean grey level of tissue by label
COHORTS = {"development": 16, "external": 8, "poc": 6}
PREPROCESSING = {"size": SIZE, "crop_to_scan": True, "field_of_view_mm": None, "mean": 127.0 / 255.0,
                 "std": 128.0 / 255.0, "pad_value": 0.0, "version": 1}


def make_cohort(root: Path, seed: int = 0) -> Path:
    """participants.csv, schema.yaml, one PNG still and one MP4 recording per participant."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    participants, images, videos = [], [], []
    number = 0
    for cohort, count in COHORTS.items():
        for index in range(count):
            number += 1
            pid, label = f"S{number:03d}", index % 2
            participants.append({"participant_id": pid, "cohort": cohort, "label": str(label),
                                 "center": {"development": "A", "external": "B", "poc": "C"}[cohort]})
            still = f"images/{pid}.png"
            (root / "images").mkdir(exist_ok=True)
            cv2.imwrite(str(root / still), screen(tissue(rng, label, 0)))
            images.append({"participant_id": pid, "path": still, "muscle": "rectus_femoris",
                           "scanner": f"scanner-{cohort}"})
            clip = f"videos/{pid}.mp4"
            write_recording(root / clip, rng, label)
            videos.append({"participant_id": pid, "path": clip, "muscle": "rectus_femoris",
                           "scanner": f"scanner-{cohort}"})
    write_csv(root / "participants.csv", participants)
    write_csv(root / "images.csv", images)
    write_csv(root / "videos.csv", videos)
    (root / "schema.yaml").write_text("format_version: 1\nlabel:\n  definition: given\ncolumns: {}\n",
                                      encoding="utf-8")
    return root


def tissue(rng: np.random.Generator, label: int, shift: int, field: np.ndarray | None = None) -> np.ndarray:
    """The B-mode area: a speckle field (drawn once per recording) seen ``shift`` pixels along."""
    height, width = SCAN[1] - SCAN[0], SCAN[3] - SCAN[2]
    if field is None:
        field = speckle_field(rng, label)
    return field[:, shift:shift + width][:height]


def speckle_field(rng: np.random.Generator, label: int) -> np.ndarray:
    height, width = SCAN[1] - SCAN[0], 2 * (SCAN[3] - SCAN[2])
    field = rng.gamma(4.0, ECHO[label] / 4.0, size=(height, width))
    field = cv2.GaussianBlur(field, (3, 3), 0)
    field[height // 3:height // 3 + 3] += 40  # an aponeurosis
    return np.clip(field, 0, 255).astype(np.uint8)


def air(rng: np.random.Generator) -> np.ndarray:
    """Probe in the air: a dark area with one reverberation band under the skin line."""
    height, width = SCAN[1] - SCAN[0], SCAN[3] - SCAN[2]
    area = rng.normal(4.0, 2.0, size=(height, width))
    area[4:8] += 70
    return np.clip(area, 0, 255).astype(np.uint8)


def screen(area: np.ndarray) -> np.ndarray:
    """The scanner screen: black, with the B-mode area and a grey UI bar at the top."""
    frame = np.zeros((*FRAME, 3), np.uint8)
    frame[SCAN[0]:SCAN[1], SCAN[2]:SCAN[3]] = area[..., np.newaxis]
    frame[2:6, 4:60] = 200
    return frame


def write_recording(path: Path, rng: np.random.Generator, label: int, fps: float = 10.0) -> None:
    """12 frames of tissue (the probe sliding), 10 in the air, 12 of tissue again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (FRAME[1], FRAME[0]))
    field = speckle_field(rng, label)
    frames = [tissue(rng, label, i, field) for i in range(12)] + [air(rng) for _ in range(10)] \
        + [tissue(rng, label, 12 + i, field) for i in range(12)]
    for area in frames:
        writer.write(screen(area))
    writer.release()


def tiny_network(path: Path, slope: float = 1.0, offset: float = 0.0) -> Path:
    """image (N, 1, 32, 32) -> logits (N, 2); logit_1 - logit_0 = slope * (mean feature - offset),
    every feature a ReLU of the local brightness with its own gain and bias."""
    rng = np.random.default_rng(7)
    w1 = (np.full((8, 1, 3, 3), 1.0 / 9.0) * rng.uniform(0.8, 1.2, (8, 1, 1, 1))
          + rng.normal(0.0, 0.01, (8, 1, 3, 3))).astype(np.float32)
    b1 = np.linspace(-0.2, 0.3, 8).astype(np.float32)
    w2 = rng.normal(0.0, 0.002, (16, 8, 3, 3))
    w2[:, :, 1, 1] += rng.uniform(0.5, 1.5, (16, 8)) / 8.0  # each feature mixes the brightness maps
    w2 = w2.astype(np.float32)
    head = np.stack([np.full(16, -slope / 32.0), np.full(16, slope / 32.0)]).astype(np.float32)
    bias = np.array([slope * offset / 2.0, -slope * offset / 2.0], np.float32)
    initializers = [numpy_helper.from_array(a, n) for a, n in
                    ((w1, "w1"), (b1, "b1"), (w2, "w2"), (np.zeros(16, np.float32), "b2"),
                     (head, "head"), (bias, "bias"))]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["features"], name="flatten"),
        helper.make_node("Gemm", ["features", "head", "bias"], ["logits"], name="head", transB=1),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                            ["batch", 1, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_bundle(folder: Path, cohort: Path) -> Path:
    """A bundle around :func:`tiny_network`, its head fitted on the development stills."""
    from sarco_core.bundle import write_manifest
    from sarco_core.preprocess import Preprocessor, PreprocessParams

    folder.mkdir(parents=True)
    preprocessor = Preprocessor(PreprocessParams(**PREPROCESSING))
    rows = [line.split(",") for line in (cohort / "participants.csv").read_text().splitlines()[1:]]
    development = [(pid, int(label)) for pid, name, label, _ in rows if name == "development"]
    inputs = np.stack([preprocessor(cv2.imread(str(cohort / f"images/{pid}.png"))) for pid, _ in development])
    labels = np.array([label for _, label in development])
    probe = tiny_network(folder / "model.onnx")
    session = ort.InferenceSession(str(probe), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"image": inputs})[0]
    feature = outputs[:, 1] - outputs[:, 0]
    low, high = feature[labels == 0].mean(), feature[labels == 1].mean()
    tiny_network(folder / "model.onnx", slope=8.0 / (high - low), offset=(low + high) / 2)
    (folder / "config.json").write_text(json.dumps({
        "format_version": 1, "model": {"modalities": ["image"], "backbone": "tiny", "image_size": SIZE},
        "decision_threshold": 0.5, "image_readout": "softmax", "frames_per_video": 4}), encoding="utf-8")
    (folder / "preprocessing.json").write_text(json.dumps(PREPROCESSING), encoding="utf-8")
    n = COHORTS["development"]
    (folder / "training.json").write_text(json.dumps({
        "cohort": cohort.name, "train_cohort": "development", "data_hash": "0" * 64, "seed": 0,
        "options": {"seed": 0, "validation_fraction": 0.25},
        "participants": {"train": n - 4, "validation": 4, "positive": n // 2}}), encoding="utf-8")
    write_manifest(folder)
    return folder
