"""The study report: RUN/tables/*.csv, RUN/figures/*.png, RUN/report.html and RUN/model-card.md
from RUN/results.json, RUN/predictions/ and the cohort (the run-folder contract in docs).

    from model_build.study.report import write_report
    page = write_report(Path("RUN"), load_cohort("COHORT"))

Tables and words come from results.json (nothing is recomputed that the runner already
measured); figures, calibration, the 2x2 tables with what is read from them and the subgroup
tables from the predictions; the participants table from the cohort itself. Every file is written atomically.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import pandas as pd

from model_build.cohort import Cohort
from model_build.study import html
from model_build.study.card import model_card
from model_build.study.figures import FigureFile, draw_figures
from model_build.study.formatting import MODALITY_NAMES, format_number
from model_build.study.inputs import StudyReportError, check_results, complete_cases, load_predictions, read_results
from model_build.study.information_report import information_section
from model_build.study.measurement_report import measurements_section
from model_build.study.narrative import (
    calibration_caution,
    int8_sentence,
    limitations,
    methods,
    quick_banner,
    summary,
)
from model_build.study.tables import build_tables
from sarco_core.files import atomic_write

__all__ = ["StudyReportError", "check_results", "write_report"]


def write_report(run: Path, cohort: Cohort) -> Path:
    """Write the tables, figures, report.html and model-card.md into ``run``; returns report.html.

    Raises :class:`StudyReportError` (naming the file and key) when the run folder breaks the
    contract or does not belong to ``cohort``.
    """
    run = Path(run)
    results = read_results(run)
    _check_same_cohort(results, cohort, run)
    predictions = load_predictions(run, results)
    tables = build_tables(results, predictions, cohort)
    for name, frame in tables.items():
        atomic_write(run / "tables" / f"{name}.csv", frame.to_csv(index=False))
    figures = draw_figures(results, predictions, run / "figures")
    atomic_write(run / "model-card.md", model_card(results, cohort, tables))
    target = run / "report.html"
    atomic_write(target, render(results, cohort, tables, figures, run))
    return target


def _check_same_cohort(results: dict, cohort: Cohort, run: Path) -> None:
    present = set(cohort.participants["cohort"])
    absent = [name for name in results["cohorts"] if name not in present]
    if absent:
        raise StudyReportError(f"{run / 'results.json'}: cohorts {', '.join(absent)} are not in {cohort.root} "
                               f"(it has {', '.join(sorted(present))}); fix: pass the cohort folder the study ran on "
                               f"({results['cohort']['path']})")


def render(results: dict, cohort: Cohort, tables: dict[str, pd.DataFrame], figures: dict[str, list[FigureFile]],
           run: Path) -> str:
    """The page, section by section, each with a line saying how to read it."""
    t = tables.get
    inputs = {role: cohort.schema.columns_with_role(role) for role in ("clinical", "lab")}
    sections = [
        html.Section("summary", "Summary",
                     '<div class="summary">' + "".join(html.paragraph(p) for p in summary(results)) + "</div>"),
        html.Section("methods", "Methods in brief", html.bullet_list(methods(results))
                     + "<h3>Data types and models</h3>" + html.data_types(results, inputs)
                     + ("<h3>Choices and the data they saw</h3>" + html.table(
                         t("choices"), "The tuning rule: each choice is fixed before the run (pre-specified) or "
                         "made on development (tuned); the validation cohorts are read once, at the end, by frozen "
                         "models, and only checks look at them.", wrap=True) if "choices" in tables else "")),
        html.Section("participants", "Participants", _characteristics(tables["characteristics"], results["cohorts"])),
        html.Section("discrimination", "Discrimination and operating point", html.table(
            t("performance"), "AUC with 95% DeLong CI; accuracy and F1 at the threshold frozen on development. "
            "Oracle AUC (synthetic data only): the best any model could reach.")
            + (html.table(t("oracle"), "Oracle AUC by data type (Bayes-optimal, from the generating variables).")
               if "oracle" in tables else "")
            + "<h3>At the threshold frozen on development</h3>" + html.table(
                t("operating_point"), "True and false positives and negatives (TP, FP, FN, TN), and what they give: "
                "sensitivity, specificity and the positive and negative predictive values (PPV, NPV), each with a "
                "95% Wilson interval. Predictive values depend on the share with sarcopenia in the cohort.")
            + _two_by_two(results, tables["two_by_two"])
            + "<h3>How the thresholds were chosen</h3>" + html.table(
                t("thresholds"), "Each model's rule applied once to its pooled out-of-fold development predictions, "
                "each fold's Platt-scaled on that fold; the cut is on that calibrated scale (95% stratified bootstrap "
                "interval, 1,000 resamples). The refit bundle's threshold is the same cut through the Platt fit on all "
                "out-of-fold predictions; each fold model's through its own fold's fit.")
            + html.figures(figures["roc"], side_by_side=True)),
        html.Section("borderline", "Borderline results on the device", _borderline(results, tables)),
        html.Section("comparisons", "Model comparisons", html.table(
            t("comparisons"), "Paired DeLong tests on the same participants: on development fold-stratified (differences within "
            "folds, combined over folds), elsewhere on the cohort's participants; raw P and Holm-adjusted P, each "
            "cohort's comparisons one family.")),
        html.Section("measurements", "Muscle measurements beside the image model",
                     measurements_section(results, tables)),
        html.Section("calibration", "Calibration", _calibration_caution(results) + html.table(
            t("calibration"), "Brier score (lower is better), calibration intercept (0 is ideal; above 0: risks "
            "underestimated) and slope (1 is ideal; below 1: predictions too extreme), with 95% Wald intervals "
            "from the standard errors of the logistic recalibration fits.")
            + html.figures(figures["calibration"])),
        html.Section("decision-curves", "Clinical usefulness (decision curves)", html.paragraph(
            "A model is useful at a threshold probability where its net benefit is above both treating everyone and "
            "treating no one.") + html.figures(figures["decision"], side_by_side=True)),
        html.Section("contributions", "What each data type contributes", "<h3>Evidence share (the paper's "
            "measure)</h3>" + html.table(
            t("contributions"), "Share of each data type in the evidence for the participant's true class "
            "(multimodal model; mean with 95% bootstrap interval). It describes how the heads spend their evidence, "
            "not what a data type adds: see the information measures below.") + html.figures(figures["contributions"])
            + information_section(results, tables)
            if "contributions" in tables else html.table(None, "Not applicable: every model uses one data type.")),
        html.Section("subgroups", "Subgroups", "<h3>By center</h3>" + html.table(
            t("by_center"), "" if "by_center" in tables else "No center recorded.")
            + "<h3>By sex</h3>" + html.table(t("by_sex"), "" if "by_sex" in tables else "No sex recorded.")),
        html.Section("sensitivity-analysis", "Sensitivity analysis: complete cases", _complete_cases(results, tables)),
        html.Section("selection", "Model selection", _selection(results, tables)),
        html.Section("int8", "INT8 check for the device", html.paragraph(int8_sentence(results))
                     + (html.table(t("int8")) if "int8" in tables else "")),
    ]
    gradcam = run / "figures" / "gradcam.png"
    if gradcam.is_file():
        sections.append(html.Section("gradcam", "Where the image model looks (Grad-CAM)", html.figure(
            gradcam, "Grad-CAM", "Regions of the ultrasound images that most raised the image model's score.")))
    sections += [html.Section("limitations", "Limitations", html.bullet_list(limitations(results, cohort))),
                 html.Section("files", "Files", _files(results, tables, figures))]
    meta = [("created", results["created"]), ("cohort", results["cohort"]["path"]),
            ("data hash", results["cohort"]["data_hash"]), ("selected model", results["selected_model"])]
    banner = ("Synthetic data: these results describe generated participants, not patients."
              if results.get("oracle") else None)
    modalities = [m for m in MODALITY_NAMES if any(m in model["modalities"] for model in results["models"].values())]
    names = [MODALITY_NAMES[m] for m in modalities]
    title = "Sarcopenia screening study: " + (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1
                                              else names[0])
    return html.page(title, meta, banner, sections, quick=quick_banner(results))


def _characteristics(frame: pd.DataFrame, cohorts: list[str]) -> str:
    """Table 1 in parts that fit a printed page: the cohorts side by side, then each cohort by
    class and center (all of them in one table is several pages wide)."""
    keys = ["Characteristic", "Role"]
    parts = [html.table(frame[keys + [c for c in cohorts if c in frame.columns]],
                        "Mean ± SD, or n (%) of the participants with a value. Reference measurements define the "
                        "label and are never model inputs.")]
    for cohort in cohorts:
        columns = [c for c in frame.columns if c.startswith(f"{cohort}: ")]
        if columns:
            by = "class and center" if any(": center " in c for c in columns) else "class"
            parts.append(f"<h3>{escape(cohort)}: by {by}</h3>" + html.table(frame[keys + [cohort, *columns]]))
    return "".join(parts)


def _two_by_two(results: dict, frame: pd.DataFrame) -> str:
    model = results["selected_model"]
    return (f"<h3>2x2 tables of the selected model ({escape(model)})</h3>"
            + html.paragraph("Screen result against the reference label, per cohort. On development each participant "
                             "was called at the threshold of the fold model that scored them (the median is shown).")
            + html.tables_side_by_side([(f"{cohort} ({results['evaluation'][cohort]})",
                                         frame[frame["Cohort"] == cohort].drop(columns="Cohort"))
                                        for cohort in results["cohorts"]]))


def _borderline(results: dict, tables: dict[str, pd.DataFrame]) -> str:
    block = results.get("borderline")
    if not block:
        return html.table(None, "Not applicable: no image model in this study (the device runs one).")
    rule = block["rule"]
    return (html.paragraph(
        f"The device does not read its decision off the point: it calls a result borderline (\"repeat the scan\") "
        f"when the {format_number(100 * rule['level'], 0)}% interval of the probability straddles the threshold. "
        f"The interval comes from the spread of the log-odds of the frames, of which at most "
        f"{rule['independent_frames']} count as independent views"
        + (", widened by the evidential uncertainty" if rule["evidence"] else "")
        + f" (sarco_core/screening.py). Here the same function is applied to the {block['model']} model's "
        "participants, with their images in place of a session's frames. Decided calls: the results a team acts "
        "on (borderline ones are scanned again); borderline referred: every borderline result sent on for "
        "assessment, the most cautious reading.")
            + html.table(tables.get("borderline"), "Shares with 95% Wilson intervals; sensitivity and "
                         "specificity at the threshold alone are in the table above."))


def _calibration_caution(results: dict) -> str:
    caution = calibration_caution(results)
    return html.warning(caution) if caution else ""


def _complete_cases(results: dict, tables: dict[str, pd.DataFrame]) -> str:
    complete = complete_cases(results)
    if not complete:
        return html.table(None, "Not applicable: no clinical or lab data, or not run for this study.")
    sizes = ", ".join(f"{cohort} {n}" for cohort, n in complete["n"].items())
    return (html.paragraph(f"{complete['description'].capitalize()}: {sizes}.")
            + html.table(tables.get("complete_cases"))
            + html.table(tables.get("complete_case_comparisons"), "Paired DeLong tests on the complete cases."
                         if "complete_case_comparisons" in tables else "No comparison on complete cases."))


def _selection(results: dict, tables: dict[str, pd.DataFrame]) -> str:
    selection = results["selection"]
    return (html.paragraph(f"Rule ({selection['cohort']}, alpha {selection['alpha']}): {selection['rule']}. "
                           f"Best model: {selection['best']}.")
            + html.table(tables["selection"])
            + html.paragraph(f"Selected: {selection['selected']}. {selection['reason']}"))


def _files(results: dict, tables: dict[str, pd.DataFrame], figures: dict[str, list[FigureFile]]) -> str:
    items = [f"tables/{name}.csv" for name in tables]
    items += [f"figures/{f.path.name}" for files in figures.values() for f in files]
    items += ["model-card.md", "results.json", "predictions/<model>/<cohort>.csv"]
    timings = results.get("timings") or {}
    if timings.get("total_seconds") is not None:
        stages = ", ".join(f"{name} {format_number(seconds, 0)} s" for name, seconds in
                           (timings.get("stages") or {}).items() if seconds is not None)
        items.append(f"Run time {format_number(timings['total_seconds'], 0)} s" + (f" ({stages})" if stages else ""))
    return html.bullet_list(items)
