"""`sarco federated compare`: pooled, federated and each site alone on a consortium's evaluation cohorts.

A tiny consortium (three factory sites with images, an evaluation folder with `external` and
`poc`), the image model, 2 rounds of 1 local epoch: the machinery and its bookkeeping, not
accuracy (docs/federated.md has the real consortium's table).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

pytest.importorskip("nvflare", reason="NVIDIA FLARE is not installed (the optional `federated` extra)")

from model_build.cli import app  # noqa: E402
from model_build.federated.compare import (ORACLE, CompareOptions, _auc, _tests, consortium_parts,  # noqa: E402
                                           oracle_predictions, table_markdown, targets)
from model_build.federated.simulate import FederationError  # noqa: E402
from testkit.federated_sites import image_site  # noqa: E402


@pytest.fixture(scope="module")
def consortium(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("consortium")
    for seed, prefix in ((1, "N"), (2, "S"), (3, "W")):
        image_site(root / "sites" / prefix, seed, prefix, n_participants=18)
    image_site(root / "evaluation", 9, "V", n_participants=18, cohort="poc")
    return root


@pytest.mark.slow
def test_every_arm_is_trained_evaluated_and_tested_against_pooled_and_the_sites(consortium, tmp_path):
    out = tmp_path / "comparison"
    result = CliRunner().invoke(app, ["federated", "compare", str(consortium), "--out", str(out), "--rounds", "2",
                                      "--local-epochs", "1"])
    assert result.exit_code == 0, result.output
    found = json.loads((out / "comparison.json").read_text())
    assert sorted(found["cohorts"]) == ["external", "poc"]
    assert [arm["arm"] for arm in found["arms"]] == ["pooled", "federated (fedavg)", "site N alone",
                                                     "site S alone", "site W alone"]
    assert found["sites"] == {"N": 12, "S": 12, "W": 12}  # each site's development participants
    pooled, federated, *sites = found["arms"]
    for arm in found["arms"]:
        for cohort in found["cohorts"]:
            evaluated = arm["cohorts"][cohort]
            assert 0.0 <= evaluated["auc"] <= 1.0 and evaluated["n"] == {"poc": 12, "external": 6}[cohort]
            assert (Path(arm["bundle"] + ".evaluation") / cohort / "predictions.csv").is_file()
            if arm is not pooled:  # a paired test on the same participants, with its CI around the difference
                test = evaluated["vs_pooled"]
                assert test["lower"] <= test["difference"] <= test["upper"] and 0.0 <= test["p"] <= 1.0
                assert test["difference"] == pytest.approx(evaluated["auc"] - pooled["cohorts"][cohort]["auc"])
    assert set(federated["cohorts"]["external"]["vs_sites"]) == {arm["arm"] for arm in sites}
    assert federated["bytes_per_site_round"] > 1_000_000 and federated["validation_log_loss"] > 0
    assert found["targets"]["federation"] == "federated (fedavg)"
    table = (out / "comparison.md").read_text()
    assert table.splitlines()[2].startswith("| pooled | 36 |") and "site W alone" in table


def test_the_targets_are_read_from_the_federation_chosen_on_development():
    """The federation judged is the one with the lower validation loss, whatever its external
    AUC; "the median site" is the middle one (both middle ones for an even count)."""
    def arm(name, auc, **extra):
        return {"arm": name, "cohorts": {"external": {"auc": auc, **extra}}}
    versus = {f"site {s} alone": {"difference": 0.1, "p": p} for s, p in zip("ABCD", (0.01, 0.2, 0.01, 0.01))}
    arms = [arm("pooled", 0.8),
            {**arm("federated (fedavg)", 0.9, vs_pooled={"difference": 0.1}, vs_sites=versus),
             "strategy": "fedavg", "validation_log_loss": 0.30},
            {**arm("federated (fedprox)", 0.95, vs_pooled={"difference": 0.15}, vs_sites=versus),
             "strategy": "fedprox", "validation_log_loss": 0.31},
            *(arm(f"site {s} alone", auc) for s, auc in zip("ABCD", (0.70, 0.75, 0.60, 0.80)))]
    found = targets(arms, ["external"])
    assert found["federation"] == "federated (fedavg)"
    assert found["external"]["median_sites"] == ["site A alone", "site B alone"]
    assert not found["external"]["beats_median_site"]  # B: P 0.2
    assert found["external"]["beats_sites"] == ["site A alone", "site C alone", "site D alone"]
    assert found["external"]["within_pooled"]


def test_a_folder_that_is_not_a_consortium_is_refused_with_the_fix(tmp_path, consortium):
    with pytest.raises(FederationError, match="sites/<site>/ .* and evaluation/"):
        consortium_parts(tmp_path)
    with pytest.raises(FederationError, match="strategies"):
        CompareOptions(strategies=("fedsgd",))
    result = CliRunner().invoke(app, ["federated", "compare", str(consortium / "sites"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "sarco synth OUT --size consortium" in result.output


def test_on_a_synthetic_consortium_the_bayes_oracle_is_the_last_row_and_tested_against_the_median_sites(tmp_path):
    """With truth.csv beside the evaluation cohorts, the oracle of the arms' modalities is read on
    the same participants and tested like a federation: here it separates the classes perfectly,
    so it beats both median sites (noisy copies of it); a site whose scores are the oracle's own
    is the best site, not a median one, and differs from it by nothing."""
    rng = np.random.default_rng(0)
    ids = [f"P{k:03d}" for k in range(60)]
    labels = np.arange(60) % 2
    oracle = np.where(labels == 1, 0.6, 0.4) + rng.uniform(-0.09, 0.09, 60)
    pd.DataFrame({"participant_id": ids, "p_image": oracle, "p_all": 1 - oracle}).to_csv(tmp_path / "truth.csv",
                                                                                         index=False)
    def table(scores):
        return pd.DataFrame({"participant_id": ids, "label": labels.astype(float), "probability": scores})
    noisy = {f"site {s} alone": table(oracle + rng.normal(0, 0.3, 60)) for s in "ABC"}
    noisy["site D alone"] = table(oracle)
    predictions = {"pooled": {"external": table(rng.uniform(size=60))},
                   **{arm: {"external": frame} for arm, frame in noisy.items()}}

    assert oracle_predictions(tmp_path, ("clinical", "lab"), predictions["pooled"]) is None  # no such oracle
    assert oracle_predictions(tmp_path / "elsewhere", ("image",), predictions["pooled"]) is None  # no truth.csv
    found = oracle_predictions(tmp_path, ("image",), predictions["pooled"])
    assert found["external"]["probability"].tolist() == pytest.approx(oracle.tolist())
    assert oracle_predictions(tmp_path, ("lab", "image", "clinical"), predictions["pooled"])["external"][
        "probability"].tolist() == pytest.approx((1 - oracle).tolist())

    predictions[ORACLE] = found
    arms = [{"arm": arm, "train_seconds": 1.0, "cohorts": {"external": _auc(frames["external"])}}
            for arm, frames in predictions.items() if arm != ORACLE]
    arms.insert(1, {**arms[0], "arm": "federated (fedavg)", "strategy": "fedavg", "validation_log_loss": 0.5})
    predictions["federated (fedavg)"] = predictions["pooled"]
    arms.append({"arm": ORACLE, "oracle": True, "cohorts": {"external": _auc(found["external"])}})
    _tests(arms, predictions, ["external"])
    assert arms[-1]["cohorts"]["external"]["auc"] == 1.0
    assert arms[-1]["cohorts"]["external"]["vs_sites"]["site D alone"]["difference"] == 0.0
    result = targets(arms, ["external"])["external"]
    assert result["oracle_auc"] == 1.0
    assert "site D alone" not in result["median_sites"]  # its AUC is the highest: not a median site
    versus = arms[-1]["cohorts"]["external"]["vs_sites"]
    assert all(versus[s]["difference"] > 0.1 and versus[s]["p"] < 0.05 for s in result["median_sites"])
    assert result["oracle_beats_median_site"] and not result["beats_median_site"]  # pooled's scores are noise
    markdown = table_markdown({"cohorts": ["external"], "arms": arms, "sites": {s: 10 for s in "ABCD"}})
    assert markdown.splitlines()[-1].startswith(f"| {ORACLE} |  |  | 1.000 [")
