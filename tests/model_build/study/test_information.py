"""The ``information`` block: Shapley values and AUC drops from the predictions' evidence columns,
with bootstrap intervals, beside the oracle's split; a data type without information costs no AUC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from model_build.models import evidential
from model_build.study.information import cohort_information, summary

MODALITIES = ["image", "clinical", "lab"]


def constructed(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Image evidence follows the label, clinical a little, lab is weak noise independent of it (a head
    that learned nothing); truth.csv's oracle gives the image most of the log-likelihood ratio."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat([0, 1], n // 2))
    signal = {"image": 1.5, "clinical": 0.5, "lab": 0.0}
    noise = {"image": 1.0, "clinical": 1.0, "lab": 0.2}
    table = pd.DataFrame({"participant_id": [f"P{i:04d}" for i in range(n)], "label": labels})
    evidence = []
    for modality in MODALITIES:
        score = signal[modality] * (labels - 0.5) * 2 + rng.normal(0, noise[modality], n)
        pair = np.column_stack([np.exp(-score), np.exp(score)])  # (non-sarcopenia, sarcopenia)
        table[f"evidence_{modality}_non_sarcopenia"], table[f"evidence_{modality}_sarcopenia"] = pair.T
        evidence.append(pair)
    shares = evidential.contributions(torch.tensor(np.stack(evidence, axis=1)), torch.ones((n, 3), dtype=torch.bool))
    for view, modality in enumerate(MODALITIES):
        table[f"contribution_{modality}"] = shares[np.arange(n), view, labels].numpy()
    llr = {"image": 2.0, "clinical": 0.6, "lab": 0.0}
    truth = pd.DataFrame({"participant_id": table["participant_id"],
                          **{f"p_{m}": 1 / (1 + np.exp(-(llr[m] * (labels - 0.5) * 2 + rng.normal(size=n))))
                             for m in MODALITIES}})
    return table, truth


def test_a_data_type_without_information_costs_no_auc() -> None:
    table, truth = constructed()
    block = cohort_information(table, MODALITIES, truth, seed=1, n_boot=300)
    lab, image = block["auc_drop"]["lab"], block["auc_drop"]["image"]
    assert abs(lab["drop"]) < 0.01 and lab["ci"][0] <= 0 <= lab["ci"][1]
    assert image["drop"] > 0.05 and image["ci"][0] > 0
    assert block["auc_drop"]["image"]["auc_without"] == pytest.approx(block["auc"] - image["drop"])


def test_shapley_ranks_the_data_types_by_information_and_the_oracle_agrees() -> None:
    table, truth = constructed()
    block = cohort_information(table, MODALITIES, truth, seed=1, n_boot=300)
    for klass in ("sarcopenia", "non_sarcopenia"):
        shapley, oracle = block["shapley"][klass], block["oracle"][klass]
        assert shapley["image"]["mean"] > shapley["clinical"]["mean"] > shapley["lab"]["mean"]
        assert abs(shapley["lab"]["mean"]) < 0.1 and oracle["image"]["mean"] > 3 * oracle["clinical"]["mean"] > 0
        for split in (shapley, oracle):
            if all(v["mean"] > 0 for v in split.values()):
                assert sum(v["share"] for v in split.values()) == pytest.approx(1.0)
            else:  # lab's mean is noise around 0: a share of parts pulling both ways is not given
                assert all(v["share"] is None and v["share_ci"] is None for v in split.values())
        for values in (*shapley.values(), *oracle.values()):
            assert values["ci"][0] <= values["mean"] <= values["ci"][1]
            assert values["share_ci"] is None or values["share_ci"][0] <= values["share_ci"][1]


def test_a_head_leaning_to_one_class_gets_no_share_and_the_report_says_why() -> None:
    """An image head that separates the classes but pushes everyone towards non-sarcopenia (as the
    demo's frozen image head did): its sarcopenia Shapley mean is negative, the shares of that class
    are not given (they were -81 and +53 before), and the disagreement names the sign."""
    from model_build.study.narrative import information_sentence

    table, truth = constructed()
    table["evidence_image_non_sarcopenia"] *= 40.0
    block = cohort_information(table, MODALITIES, truth, seed=1, n_boot=200)
    sarcopenia = block["shapley"]["sarcopenia"]
    assert sarcopenia["image"]["mean"] < 0 < sarcopenia["clinical"]["mean"]
    assert all(v["share"] is None for v in sarcopenia.values())
    named = {(d["class"], d["modality"]): d for d in block["disagreements"]}
    assert ("sarcopenia", "clinical") not in named  # positive, but no share to compare: not a disagreement
    assert named[("sarcopenia", "image")]["shapley_share"] is None
    assert named[("sarcopenia", "image")]["shapley_mean"] == pytest.approx(sarcopenia["image"]["mean"])
    results = {"information": {"cohorts": {"development": block}, "disagreement_threshold": 0.15}}
    text = information_sentence(results)
    assert f"Shapley value {sarcopenia['image']['mean']:+.3f} log-odds, no share: on average it moves" in text


def test_the_evidence_share_disagreement_is_named_with_its_reason() -> None:
    """A head that emits a lot of evidence for every participant gets a large evidence share of both
    classes, though it separates nothing: listed, with the share of cases it actually favours."""
    table, truth = constructed()
    for klass in ("non_sarcopenia", "sarcopenia"):
        table[f"evidence_lab_{klass}"] = 20.0
    evidence = np.stack([table[[f"evidence_{m}_non_sarcopenia", f"evidence_{m}_sarcopenia"]].to_numpy()
                         for m in MODALITIES], axis=1)
    shares = evidential.contributions(torch.tensor(evidence.copy()), torch.ones((len(table), 3), dtype=torch.bool))
    table["contribution_lab"] = shares[np.arange(len(table)), 2, table["label"].to_numpy().copy()].numpy()
    block = cohort_information(table, MODALITIES, None, seed=1, n_boot=200)
    assert block["oracle"] is None
    named = {(d["class"], d["modality"]) for d in block["disagreements"]}
    assert ("sarcopenia", "lab") in named
    assert block["evidence_for_more_than_against"]["sarcopenia"]["lab"] == 0.0  # 20 for, 20 against


def test_the_block_keeps_cohorts_with_both_classes_and_says_how_it_was_made() -> None:
    table, truth = constructed(n=60)
    one_class = table[table["label"] == 1]
    block = summary({"development": table, "poc": one_class}, "image+clinical+lab", MODALITIES, truth, 3, 100)
    assert set(block) == {"model", "description", "n_boot", "seed", "disagreement_threshold", "cohorts"}
    assert list(block["cohorts"]) == ["development"]
    again = summary({"development": table}, "image+clinical+lab", MODALITIES, truth, 3, 100)
    assert again["cohorts"]["development"] == block["cohorts"]["development"]  # seeded
