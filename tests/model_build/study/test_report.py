"""The study report reads a run folder written to the contract and produces a self-contained page,
CSV tables, figures and a model card; a run folder that breaks the contract is refused by name.

The run folders here are built from a small factory cohort: predictions drawn from a seeded
numpy Generator (each data type a noisy view of the label) and results.json computed from them
with the statistics engine, as the runner does.
"""

from __future__ import annotations

import copy
import json
import re
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console

from model_build.cohort import Cohort
from model_build.stats import auc_ci, calibration_intercept_slope, wilson_proportion
from model_build.study.formatting import format_estimate, format_number, format_p
from model_build.study.inputs import StudyReportError, check_results, read_results
from model_build.study.narrative import calibration_caution
from model_build.study.report import write_report
from model_build.study.tables import cohort_characteristics
from tests.support.study_runs import COHORTS, build_run, quick_copy, study_cohort

# --- a run folder, built as the runner builds it -----------------------------------------------


@pytest.fixture(scope="module")
def full_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Cohort, dict, Path]:
    """Image, clinical and lab data; INT8 accepted; a Grad-CAM figure left by gradcam.py."""
    root = tmp_path_factory.mktemp("study")
    cohort = study_cohort(root / "cohort")
    run = root / "run"
    results = build_run(run, cohort)
    (run / "figures").mkdir()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(run / "figures" / "gradcam.png")
    return run, cohort, results, write_report(run, cohort)


# --- the page, tables, figures and card -------------------------------------------------------

def test_report_page_is_self_contained(full_study) -> None:
    run, _, _, page = full_study
    assert page == run / "report.html"
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "<script" not in text.lower() and "<link" not in text.lower() and "url(" not in text
    sources = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", text)
    assert len(sources) >= 3 * len(COHORTS) + 1  # ROC, calibration, decision per cohort; contributions
    assert all(source.startswith("data:image/png;base64,") for source in sources)


def test_report_names_every_model_comparison_selection_and_int8(full_study) -> None:
    run, _, results, page = full_study
    text = page.read_text(encoding="utf-8")
    for model in results["models"]:
        assert f"<td>{model}</td>" in text
    body = text[text.index('id="comparisons"'):text.index('id="calibration"')]
    cells = re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL)  # the header row has a style attribute
    assert len(cells) == len(results["comparisons"])
    for row, comparison in zip(cells, results["comparisons"]):
        assert f"<td>{escape(format_p(comparison['p']))}</td>" in row and f"<td>{comparison['a']}</td>" in row
    selection = text[text.index('id="selection"'):text.index('id="int8"')]
    assert results["selection"]["reason"] in selection and results["selection"]["rule"] in selection
    int8 = text[text.index('id="int8"'):text.index('id="limitations"')]
    assert "accepted" in int8 and "development_holdout" in int8
    assert "Synthetic data" in text  # results.json carries oracle AUCs


def test_summary_states_the_fusion_gain_with_its_p_value(full_study) -> None:
    _, _, results, page = full_study
    text = page.read_text(encoding="utf-8")
    summary = text[text.index('id="summary"'):text.index('id="methods"')]
    fused = "image+clinical+lab"
    single = max(("image", "clinical", "lab"), key=lambda m: results["models"][m]["development"]["auc"])
    test = next(c for c in results["comparisons"]
                if c["cohort"] == "development" and c["a"] == fused and c["b"] == single)
    formatted = format_p(test["p"])
    assert escape(f"P{formatted}" if formatted[0] in "<>" else f"P={formatted}") in summary
    assert f"Selected model: {results['selected_model']}" in summary


def test_tables_hold_one_row_per_model_cohort_comparison_and_candidate(full_study) -> None:
    run, cohort, results, _ = full_study
    read = lambda name: pd.read_csv(run / "tables" / f"{name}.csv", dtype=str, keep_default_na=False)  # noqa: E731
    performance = read("performance")
    assert len(performance) == len(results["models"]) * len(COHORTS)
    row = performance[(performance["Model"] == "image") & (performance["Cohort"] == "external")].iloc[0]
    external = results["models"]["image"]["external"]
    assert row["AUC (95% CI)"] == format_estimate(external["auc"], external["auc_ci"])
    assert row["n"] == str(external["n"])
    assert "Oracle AUC" in performance.columns
    comparisons = read("comparisons")
    assert list(comparisons["P (DeLong)"]) == [format_p(c["p"]) for c in results["comparisons"]]
    assert list(comparisons["P (Holm, per cohort)"]) == [format_p(c["p_holm"]) for c in results["comparisons"]]
    assert list(comparisons["Test"]) == [c["method"] for c in results["comparisons"]]
    thresholds = read("thresholds")
    assert list(thresholds["Model"]) == list(results["models"])
    assert list(thresholds["Refit (bundle) threshold"]) == [
        format_number(m["operating_point"]["refit_threshold"]) for m in results["models"].values()]
    assert set(thresholds["Rule"]) == {"Youden's J"}
    assert list(comparisons["Difference A - B (95% CI)"]) == [
        format_estimate(c["difference"], c["difference_ci"], signed=True) for c in results["comparisons"]]
    selection = read("selection")
    assert list(selection["Model"]) == [c["model"] for c in results["selection"]["candidates"]]
    assert list(selection.loc[selection["Selected"] == "yes", "Model"]) == [results["selected_model"]]
    assert len(read("contributions")) == len(COHORTS) * 3 * 2  # cohorts x data types x classes
    information = read("information")
    assert len(information) == len(COHORTS) * 3 * 2 and len(read("information_auc_drop")) == len(COHORTS) * 3
    shapley = results["information"]["cohorts"]["external"]["shapley"]["sarcopenia"]["lab"]
    row = information[(information["Cohort"] == "external") & (information["True class"] == "sarcopenia")
                      & (information["Data type"] == "lab")].iloc[0]
    assert row["Shapley share (95% CI)"] == format_estimate(shapley["share"], shapley["share_ci"])
    assert len(read("int8")) == 1
    assert len(read("by_center")) == sum(len(results["models"][m][c]["by_center"])
                                         for m in results["models"] for c in COHORTS)
    assert len(read("calibration")) == len(results["models"]) * len(COHORTS)
    by_sex = read("by_sex")
    selected = results["selected_model"]
    assert set(by_sex["Sex"]) == {"M", "F"} and set(by_sex["Model"]) == {selected, "image+clinical+lab"}
    predictions = pd.read_csv(run / "predictions" / selected / "development.csv", dtype={"participant_id": str})
    sex = cohort.participants.set_index("participant_id")["sex"]
    women = predictions[predictions["participant_id"].map(sex) == "F"]
    interval = auc_ci(women["label"], women["probability"])
    row = by_sex[(by_sex["Model"] == selected) & (by_sex["Cohort"] == "development") & (by_sex["Sex"] == "F")].iloc[0]
    assert row["AUC (95% CI)"] == format_estimate(interval.auc, [interval.lower, interval.upper])
    assert row["n"] == str(len(women))
    assert len(read("complete_cases")) == len(results["models"]) * len(COHORTS)
    assert sorted(p.name for p in (run / "tables").iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_the_evidence_share_is_labelled_and_shown_beside_the_information_measures(full_study) -> None:
    _, _, results, page = full_study
    text = page.read_text(encoding="utf-8")
    assert "Evidence share (the paper&#x27;s measure)" in text or "Evidence share (the paper's measure)" in text
    assert "What each data type adds (information)" in text and "AUC drop (95% CI)" in text
    development = results["information"]["cohorts"]["development"]
    expected = "disagree by more than" if development["disagreements"] else "agree with the Shapley shares"
    assert expected in text
    if development["disagreements"]:  # the summary names the pairs, the section says why, once
        assert text.count("disagree by more than") == 2
        assert text.count("emitted more evidence for") == len(development["disagreements"])


def test_characteristics_are_counted_from_the_cohort(full_study) -> None:
    run, cohort, _, _ = full_study
    table = cohort_characteristics(cohort, list(COHORTS))
    participants = cohort.participants
    development = participants[participants["cohort"] == "development"]
    by_name = table.set_index("Characteristic")
    assert by_name.loc["Participants, n", "development"] == str(len(development))
    age = development["age"].astype(float)
    assert by_name.loc["age (years), mean ± SD", "development"] == f"{age.mean():.1f} ± {age.std():.1f}"
    females = int((development["sex"] == "F").sum())
    assert by_name.loc["sex: F, n (%)", "development"] == f"{females} ({100 * females / len(development):.1f}%)"
    assert by_name.loc["albumin (g/L) missing, n (%)", "development"].startswith(
        str(int(development["albumin"].isna().sum())))
    assert by_name.loc["grip_kg (kg), mean ± SD", "Role"].startswith("reference")
    assert by_name.loc["albumin (g/L), mean ± SD", "Role"] == "lab input"
    assert "development: center B" in table.columns and "external: sarcopenia" in table.columns
    saved = pd.read_csv(run / "tables" / "characteristics.csv", dtype=str, keep_default_na=False)
    assert list(saved["Characteristic"]) == list(table["Characteristic"])


def test_figures_are_real_pngs_and_the_card_is_written_from_results(full_study) -> None:
    run, _, results, _ = full_study
    names = sorted(p.name for p in (run / "figures").iterdir())
    per_cohort = [f"{kind}_{c}.png" for kind in ("roc", "calibration", "decision") for c in COHORTS]
    assert names == sorted(["contributions.png", "gradcam.png", *per_cohort])
    with Image.open(run / "figures" / "roc_development.png") as image:
        assert image.format == "PNG" and min(image.size) > 500
    card = (run / "model-card.md").read_text(encoding="utf-8")
    assert results["cohort"]["data_hash"] in card and f"`{results['selected_model']}`" in card
    for heading in ("Intended use", "Outcome", "Predictors", "Sample size", "Missing data", "Validation design",
                    "Performance", "Calibration", "Subgroups", "Limitations", "Deployment", "Version"):
        assert f"## {heading}" in card
    selected = results["models"][results["selected_model"]]["external"]
    assert format_estimate(selected["auc"], selected["auc_ci"]) in card


def test_gradcam_is_embedded_when_present(full_study) -> None:
    _, _, _, page = full_study
    text = page.read_text(encoding="utf-8")
    assert 'id="gradcam"' in text and text.count("data:image/png;base64,") == 3 * len(COHORTS) + 2


def _percent_with_wilson(successes: int, total: int) -> str:
    interval = wilson_proportion(successes, total)
    return f"{100 * successes / total:.1f}% ({100 * interval.lower:.1f} to {100 * interval.upper:.1f})"


def test_each_model_and_cohort_has_its_2x2_counts_and_wilson_intervals(full_study) -> None:
    run, _, results, page = full_study
    read = lambda name: pd.read_csv(run / "tables" / f"{name}.csv", dtype=str, keep_default_na=False)  # noqa: E731
    table = read("operating_point").set_index(["Model", "Cohort"])
    assert len(table) == len(results["models"]) * len(COHORTS)
    for model in results["models"]:
        for cohort in COHORTS:
            frame = pd.read_csv(run / "predictions" / model / f"{cohort}.csv")
            case, called = frame["label"] == 1, frame["decision"] == 1
            tp, fp = int((case & called).sum()), int((~case & called).sum())
            fn, tn = int((case & ~called).sum()), int((~case & ~called).sum())
            row = table.loc[(model, cohort)]
            assert [row["TP"], row["FP"], row["FN"], row["TN"]] == [str(tp), str(fp), str(fn), str(tn)]
            assert row["Sensitivity (95% CI)"] == _percent_with_wilson(tp, tp + fn)
            assert row["Specificity (95% CI)"] == _percent_with_wilson(tn, tn + fp)
            assert row["PPV (95% CI)"] == (_percent_with_wilson(tp, tp + fp) if tp + fp else "n/a")
            assert row["NPV (95% CI)"] == (_percent_with_wilson(tn, tn + fn) if tn + fn else "n/a")
            assert tp / (tp + fn) == pytest.approx(results["models"][model][cohort]["sensitivity"])
    selected = results["selected_model"]
    two_by_two = read("two_by_two")
    external = two_by_two[two_by_two["Cohort"] == "external"].set_index("Screen result")
    row = table.loc[(selected, "external")]
    assert external.iloc[0][["Sarcopenia", "No sarcopenia"]].tolist() == [row["TP"], row["FP"]]
    assert external.iloc[1][["Sarcopenia", "No sarcopenia"]].tolist() == [row["FN"], row["TN"]]
    assert external.loc["total", "Total"] == str(results["models"][selected]["external"]["n"])
    text = page.read_text(encoding="utf-8")
    section = text[text.index('id="discrimination"'):text.index('id="comparisons"')]
    assert f"2x2 tables of the selected model ({selected})" in section and section.count("<h4>") == len(COHORTS)
    summary = text[text.index('id="summary"'):text.index('id="methods"')]
    metrics = results["models"][selected]["external"]
    cases = metrics["n_positive"]
    assert f"sensitivity {_percent_with_wilson(round(metrics['sensitivity'] * cases), cases)}" in summary
    by_sex = read("by_sex")
    assert by_sex["Sensitivity (95% CI)"].str.fullmatch(r"\d+\.\d% \(\d+\.\d to \d+\.\d\)|n/a").all()


def test_calibration_has_wald_intervals_and_warns_below_100_events(full_study) -> None:
    run, cohort, results, page = full_study
    calibration = pd.read_csv(run / "tables" / "calibration.csv", dtype=str, keep_default_na=False)
    row = calibration[(calibration["Model"] == "image") & (calibration["Cohort"] == "development")].iloc[0]
    frame = pd.read_csv(run / "predictions" / "image" / "development.csv")
    fit = calibration_intercept_slope(frame["label"], frame["probability"])
    assert row["Calibration slope (95% CI)"] == format_estimate(fit.slope, list(fit.slope_ci), 2)
    assert row["Calibration intercept (95% CI)"] == format_estimate(fit.intercept, list(fit.intercept_ci), 2)
    assert row["Sarcopenia, n"] == str(int(frame["label"].sum()))
    text = page.read_text(encoding="utf-8")
    section = text[text.index('id="calibration"'):text.index('id="decision-curves"')]
    assert '<p class="warning"' in section and "Fewer than 100 events or non-events" in section
    assert "Fewer than 100 events" in (run / "model-card.md").read_text(encoding="utf-8")
    large = copy.deepcopy(results)
    for entry in large["models"].values():
        for name in COHORTS:
            entry[name].update(n=400, n_positive=150)
    assert calibration_caution(large) is None
    large["models"][large["selected_model"]]["poc"].update(n=400, n_positive=301)  # 99 without sarcopenia
    assert calibration_caution(large).startswith("Fewer than 100 events or non-events (poc: 301 with sarcopenia, 99")


def test_a_quick_run_opens_with_its_banner(full_study, tmp_path: Path) -> None:
    run, cohort, _, page = full_study
    assert "banner quick" not in page.read_text(encoding="utf-8")
    text = quick_copy(run, tmp_path / "quick", cohort).read_text(encoding="utf-8")
    first = re.search(r"<body><main>\s*<div class=\"banner quick\" role=\"alert\">([^<]*)</div>\s*<h1>", text)
    assert first and "Quick run (--quick)" in first[1] and "chance" in first[1]


def test_the_terminal_summary_words_a_quick_run_as_the_report_does(full_study,
                                                                   tmp_path: Path) -> None:
    from model_build.commands.study import print_summary

    run, cohort, _, _ = full_study
    quick = quick_copy(run, tmp_path / "quick", cohort).parent
    results = json.loads((quick / "results.json").read_text(encoding="utf-8"))
    model = results["selected_model"]
    results["models"][model][results["cohorts"][0]].update(auc=0.0, auc_ci=[0.0, 0.0])
    (quick / "results.json").write_text(json.dumps(results), encoding="utf-8")
    console = Console(record=True, width=300)
    print_summary(quick, console)
    text = console.export_text()
    assert text.lstrip().startswith("Quick run (--quick)")
    assert "0.000 (CI not estimable)" in text and "0.000-0.000" not in text


def test_a_collapsed_auc_interval_is_not_printed_as_a_certainty() -> None:
    """Every case below every non-case: AUC 0, DeLong variance 0, interval (0, 0)."""
    y, p = np.array([1, 1, 1, 0, 0, 0, 0]), np.linspace(0.1, 0.7, 7)
    interval = auc_ci(y, p)
    assert (interval.auc, interval.lower, interval.upper) == (0.0, 0.0, 0.0)
    assert format_estimate(interval.auc, [interval.lower, interval.upper]) == "0.000 (CI not estimable)"
    assert format_estimate(0.8, [0.7, 0.9]) == "0.800 (0.700 to 0.900)"


# --- other kinds of run -------------------------------------------------------------------------

def test_image_only_cohort_with_int8_skipped(tmp_path: Path) -> None:
    """No clinical or lab column declared: only the image model; INT8 did not run; no Grad-CAM;
    the proof-of-concept cohort has one class only, so its AUC and curves are undefined."""
    cohort = study_cohort(tmp_path / "cohort", tabular=False, poc_one_class=True)
    results = build_run(tmp_path / "run", cohort, int8=False)
    assert list(results["models"]) == ["image"]
    text = write_report(tmp_path / "run", cohort).read_text(encoding="utf-8")
    section = text[text.index('id="int8"'):text.index('id="limitations"')]
    assert results["int8_skipped"] in section
    assert "Not applicable: every model uses one data type." in text and 'id="gradcam"' not in text
    tables = {p.stem for p in (tmp_path / "run" / "tables").iterdir()}
    assert tables == {"characteristics", "performance", "operating_point", "two_by_two", "thresholds", "oracle",
                      "calibration",
                      "by_center", "by_sex", "selection", "borderline"}
    characteristics = pd.read_csv(tmp_path / "run" / "tables" / "characteristics.csv", dtype=str)
    assert not characteristics["Characteristic"].str.startswith("albumin").any()  # undeclared: not shown
    assert characteristics.set_index("Characteristic").loc["age (years), mean ± SD", "Role"] == "not an input"
    assert not (tmp_path / "run" / "figures" / "contributions.png").exists()
    assert {p.name for p in (tmp_path / "run" / "figures").iterdir()} == {
        f"{kind}_{c}.png" for kind in ("roc", "calibration", "decision") for c in COHORTS}
    performance = pd.read_csv(tmp_path / "run" / "tables" / "performance.csv", dtype=str, keep_default_na=False)
    assert performance.set_index("Cohort").loc["poc", "AUC (95% CI)"] == "n/a"
    assert "## Deployment" in (tmp_path / "run" / "model-card.md").read_text(encoding="utf-8")


# --- a run folder that breaks the contract ------------------------------------------------------

@pytest.fixture(scope="module")
def valid_results(full_study) -> dict:
    return full_study[2]


def without(results: dict, *path: str | int) -> dict:
    broken = copy.deepcopy(results)
    node = broken
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return broken


def test_the_valid_results_pass_the_check(valid_results: dict) -> None:
    check_results(valid_results)


@pytest.mark.parametrize(("path", "named"), [
    (("models", "image", "external", "auc_ci"), "models.image.external.auc_ci is missing"),
    (("models", "lab", "poc"), "models.lab.poc is missing"),
    (("models", "image", "development", "by_center", "A", "f1"), "models.image.development.by_center.A.f1 is missing"),
    (("comparisons", 0, "p"), "comparisons[0].p is missing"),
    (("contributions",), "contributions is missing"),
    (("contribution_details",), "contribution_details is missing"),
    (("selected_model",), "selected_model is missing"),
    (("selection", "candidates"), "selection.candidates is missing"),
    (("selection", "candidates", 1, "eligible"), "selection.candidates[1].eligible is missing"),
    (("int8",), "int8 is missing"),
    (("int8", "cohorts", "development_holdout", "flip_rate"), "int8.cohorts.development_holdout.flip_rate is missing"),
    (("sensitivity_analysis", "complete_cases", "n", "poc"), "sensitivity_analysis.complete_cases.n.poc is missing"),
    (("options", "alpha"), "options.alpha is missing"),
    (("evaluation", "external"), "evaluation.external is missing"),
    (("information", "cohorts", "external", "auc_drop", "lab", "ci"), "information.cohorts.external.auc_drop.lab.ci"),
    (("information", "cohorts", "poc", "shapley", "sarcopenia", "image", "share_ci"),
     "information.cohorts.poc.shapley.sarcopenia.image.share_ci is missing"),
    (("information", "cohorts", "development", "oracle", "non_sarcopenia", "lab", "mean"),
     "information.cohorts.development.oracle.non_sarcopenia.lab.mean is missing"),
])
def test_a_missing_key_is_named_by_its_path(valid_results: dict, path: tuple, named: str) -> None:
    with pytest.raises(StudyReportError, match=re.escape(named)):
        check_results(without(valid_results, *path))


def test_the_information_block_has_every_cohort_class_and_data_type_with_ordered_intervals(valid_results) -> None:
    block = valid_results["information"]
    assert block["model"] == "image+clinical+lab" and list(block["cohorts"]) == list(COHORTS)
    for entry in block["cohorts"].values():
        assert set(entry["auc_drop"]) == {"image", "clinical", "lab"}
        for split in ("shapley", "oracle"):
            for klass in ("sarcopenia", "non_sarcopenia"):
                by_modality = entry[split][klass].values()
                shared = all(values["mean"] > 0 for values in by_modality)
                for values in by_modality:
                    assert values["ci"][0] <= values["ci"][1]
                    assert (0 < values["share"] < 1 and values["share_ci"][0] <= values["share_ci"][1] if shared
                            else values["share"] is None)
        assert all(drop["ci"][0] <= drop["ci"][1] for drop in entry["auc_drop"].values())
    broken = copy.deepcopy(valid_results)
    broken["information"]["cohorts"]["poc"]["auc_drop"]["image"]["ci"] = [0.3, 0.1]
    with pytest.raises(StudyReportError, match=re.escape("information.cohorts.poc.auc_drop.image.ci must be")):
        check_results(broken)


def test_wrong_types_and_dangling_names_are_named(valid_results: dict) -> None:
    broken = copy.deepcopy(valid_results)
    broken["models"]["image"]["poc"]["auc"] = "high"
    broken["comparisons"][0]["b"] = "ultrasound"
    broken["selected_model"] = "image+lab"
    broken["int8"] = None
    with pytest.raises(StudyReportError) as raised:
        check_results(broken)
    message = str(raised.value)
    assert "models.image.poc.auc must be a number in [0, 1] or null, not 'high'" in message
    assert "comparisons[0].b is 'ultrasound', which is not one of the models" in message
    assert "selection.selected" in message and "differs from selected_model" in message
    assert "int8_skipped is missing" in message


def test_write_report_names_results_json_and_the_key(full_study, tmp_path: Path) -> None:
    _, cohort, results, _ = full_study
    (tmp_path / "results.json").write_text(json.dumps(without(results, "models", "image", "poc", "threshold")))
    with pytest.raises(StudyReportError, match=r"results\.json.*\n.*models\.image\.poc\.threshold is missing"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(StudyReportError, match="not valid JSON"):
        write_report(tmp_path, cohort)
    assert not (tmp_path / "report.html").exists()


def test_missing_or_bad_predictions_are_named(full_study, tmp_path: Path) -> None:
    run, cohort, results, _ = full_study
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(StudyReportError, match=re.escape(str(tmp_path / "predictions" / "image" / "development.csv"))
                       + ".*not found"):
        write_report(tmp_path, cohort)
    for source in (run / "predictions").rglob("*.csv"):
        target = tmp_path / source.relative_to(run)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    bad = tmp_path / "predictions" / "lab" / "poc.csv"
    frame = pd.read_csv(bad)
    frame.loc[2, "label"] = 2
    frame.to_csv(bad, index=False)
    with pytest.raises(StudyReportError, match=r"poc\.csv: row 4, column label: .* is not 0, 1 or empty"):
        write_report(tmp_path, cohort)


def test_a_run_from_another_cohort_is_refused(full_study, tmp_path: Path) -> None:
    run, cohort, _, _ = full_study
    participants = cohort.participants.assign(cohort=cohort.participants["cohort"].replace("poc", "pilot"))
    other = Cohort(root=tmp_path, schema=cohort.schema, participants=participants, images=None, videos=None,
                   report=cohort.report)
    with pytest.raises(StudyReportError, match="cohorts poc are not in"):
        write_report(run, other)
