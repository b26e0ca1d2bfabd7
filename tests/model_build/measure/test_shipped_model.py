"""The measurement model shipped in models/aponeurosis: found without being named, sealed, documented,
and measuring the committed real DL_Track images within issue 23's target (5 % of the masks'
thickness). These images were among its training images, so this checks that the shipped
weights are the trained ones and that the whole path (scan region, recipe, ONNX, labels,
measurement) works on a fresh clone; the held-out figures are benchmarks/bench_measure.py's."""

from __future__ import annotations

import csv

import cv2
import pytest
from typer.testing import CliRunner

from model_build.cli import app
from model_build.measure.infer import AponeurosisModel
from sarco_core.bundle import SHIPPED_APONEUROSIS_MODEL, default_measurement_bundle, load_measurement_bundle
from sarco_core.measure import labels_from_bands, muscle_thickness_px
from tests.support.measure_models import REAL_PAIRS
from tests.support.real_data import real_file


@pytest.fixture(scope="module")
def model() -> AponeurosisModel:
    return AponeurosisModel(threads=1)


def test_the_shipped_model_is_the_default_and_is_sealed_and_documented(monkeypatch):
    monkeypatch.delenv("SARCO_APONEUROSIS_MODEL", raising=False)
    assert default_measurement_bundle() == SHIPPED_APONEUROSIS_MODEL
    bundle = load_measurement_bundle(SHIPPED_APONEUROSIS_MODEL)
    assert bundle.onnx_path.stat().st_size < 8_000_000  # a few MB
    training = bundle.config["training"]
    assert training["data"][0]["folder"] == "dl-track-aponeuroses" and training["data"][0]["licence"] == "Apache-2.0"
    assert training["command"].startswith("sarco measure train ")
    readme = (SHIPPED_APONEUROSIS_MODEL / "README.md").read_text(encoding="utf-8")
    assert "Apache-2.0" in readme and training["command"] in readme
    assert "Apache License" in (SHIPPED_APONEUROSIS_MODEL / "LICENSE-dl-track-aponeuroses").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", REAL_PAIRS)
def test_the_shipped_model_measures_real_dl_track_images_within_five_percent(model, name):
    image = cv2.imread(str(real_file(f"dl-track-aponeuroses/images/{name}")), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(real_file(f"dl-track-aponeuroses/masks/{name}")), cv2.IMREAD_GRAYSCALE)
    expected = muscle_thickness_px(labels_from_bands(mask)).px
    found = model.measure(image).measurement
    assert found.status in ("ok", "no_fascicle_orientation")
    assert abs(found.muscle_thickness_px - expected) <= 0.05 * expected
    assert 0 < found.echo_intensity < 255


def test_run_without_a_model_uses_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.delenv("SARCO_APONEUROSIS_MODEL", raising=False)
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(app, ["measure", "run", str(real_file("dl-track-aponeuroses/images/img_00036.png")),
                                      "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["muscle_thickness_px"] != "" and row["model"] == load_measurement_bundle(SHIPPED_APONEUROSIS_MODEL).model_name
