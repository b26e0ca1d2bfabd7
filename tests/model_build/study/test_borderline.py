"""The device's borderline rule in the study: per-participant calls by sarco_core's function,
and the shares and accuracies results.json and the report give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model_build.study.borderline import calls, summary
from model_build.study.inputs import StudyReportError, check_results
from model_build.study.report import write_report
from sarco_core.screening import screen_call
from tests.support.study_runs import build_run, study_cohort


def table() -> pd.DataFrame:
    # probability, threshold 0.5, spread of 4 images: clear, clear, straddling, no spread
    return pd.DataFrame({"participant_id": ["A", "B", "C", "D", "E", "F"],
                         "label": [1, 0, 1, 0, 1, 0],
                         "probability": [0.9, 0.1, 0.55, 0.6, 0.35, 0.2],
                         "threshold": 0.5,
                         "logit_sd": [0.3, 0.3, 1.0, np.nan, 0.2, 2.5],
                         "n_images": [4, 4, 4, 0, 3, 3]})


def test_each_participant_gets_the_devices_call() -> None:
    frame = table()
    assert calls(frame) == [screen_call(p, 0.5, enough_frames=True,
                                        logit_sd=None if np.isnan(sd) else sd, usable_frames=n).call
                            for p, sd, n in zip(frame["probability"], frame["logit_sd"],
                                                frame["n_images"])]
    assert calls(frame) == ["positive", "negative", "borderline", "positive", "negative",
                            "borderline"]


def test_the_summary_counts_borderline_and_the_decided_calls() -> None:
    found = summary({"external": table()})
    assert found["model"] == "image" and found["rule"] == {"level": 0.9, "independent_frames": 10,
                                                           "evidence": False}
    c = found["cohorts"]["external"]
    assert (c["n"], c["borderline"], c["borderline_cases"]) == (6, 2, 1)
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == (1, 1, 1, 1)
    assert c["share"]["estimate"] == pytest.approx(2 / 6)
    assert c["share"]["ci"][0] < 2 / 6 < c["share"]["ci"][1]
    assert c["sensitivity"]["estimate"] == pytest.approx(1 / 2)
    assert c["sensitivity_referred"]["estimate"] == pytest.approx(2 / 3)  # C referred
    assert c["specificity_referred"]["estimate"] == pytest.approx(1 / 3)  # F referred too


def test_the_report_gives_each_cohorts_borderline_share_sensitivity_and_specificity(
        tmp_path) -> None:
    cohort = study_cohort(tmp_path / "cohort", tabular=False)
    results = build_run(tmp_path / "run", cohort, int8=False)
    check_results(results)
    # recomputed from the prediction files, as the runner does
    tables = {name: pd.read_csv(tmp_path / "run" / "predictions" / "image" / f"{name}.csv")
              for name in results["cohorts"]}
    assert summary(tables) == results["borderline"]
    text = write_report(tmp_path / "run", cohort).read_text(encoding="utf-8")
    section = text[text.index('id="borderline"'):text.index('id="comparisons"')]
    assert "repeat the scan" in section and "90% interval" in section
    table = pd.read_csv(tmp_path / "run" / "tables" / "borderline.csv", dtype=str)
    assert list(table["Cohort"]) == results["cohorts"]
    for _, row in table.iterrows():
        c = results["borderline"]["cohorts"][row["Cohort"]]
        assert row["Borderline (95% CI)"].startswith(f"{100 * c['borderline'] / c['n']:.1f}%")


def test_a_run_whose_borderline_block_breaks_the_contract_is_named(tmp_path) -> None:
    cohort = study_cohort(tmp_path / "cohort", tabular=False)
    results = build_run(tmp_path / "run", cohort, int8=False)
    del results["borderline"]["cohorts"]["poc"]
    results["borderline"]["rule"]["level"] = 2
    with pytest.raises(StudyReportError) as error:
        check_results(results)
    assert "borderline.cohorts.poc is missing" in str(error.value)
    assert "borderline.rule.level must be a number in [0, 1]" in str(error.value)
