"""The report's figures, drawn from the predictions with the statistics engine's own plots.

Per cohort: ROC curves of every model on one axes (bootstrap band for the selected model),
calibration of the selected and the multimodal model, and decision curves; once: the evidence
shares per data type and class. Built on ``matplotlib.figure.Figure`` with an Agg canvas (no
pyplot state), saved atomically at 150 dpi so the self-contained page stays small.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model_build.stats import StatsInputError, roc_confidence_band
from model_build.stats.plots import plot_calibration, plot_decision_curve, plot_roc, save_figure
from model_build.study.formatting import CLASS_NAMES, MODALITY_NAMES
from model_build.study.inputs import CLASSES, focus_models, fused_model, labelled
from model_build.study.tables import Predictions

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 150
PARTICIPANTS_PER_BIN = 20  # calibration bins: deciles once a cohort has 200 labelled participants


@dataclass(frozen=True)
class FigureFile:
    """A saved figure and the words the report puts under it."""

    path: Path
    title: str
    caption: str


def draw_figures(results: dict, predictions: Predictions, folder: Path) -> dict[str, list[FigureFile]]:
    """Save every figure under ``folder``; returns them by kind (roc, calibration, decision, contributions)."""
    stems = file_stems(results["cohorts"])
    figures: dict[str, list[FigureFile]] = {"roc": [], "calibration": [], "decision": [], "contributions": []}
    for cohort in results["cohorts"]:
        evaluation = results["evaluation"][cohort]
        for kind, draw in (("roc", roc_figure), ("calibration", calibration_figure), ("decision", decision_figure)):
            figure, caption = draw(results, predictions, cohort)
            path = save(figure, folder / f"{kind}_{stems[cohort]}.png")
            figures[kind].append(FigureFile(path, f"{cohort} ({evaluation})", caption))
    if results.get("contribution_details"):
        figure, caption = contributions_figure(results)
        path = save(figure, folder / "contributions.png")
        figures["contributions"].append(FigureFile(path, "Evidence shares per data type", caption))
    return figures


def save(figure: Figure, path: Path) -> Path:
    return save_figure(figure, path, dpi=DPI)


def roc_figure(results: dict, predictions: Predictions, cohort: str) -> tuple[Figure, str]:
    selected = results["selected_model"]
    models = [selected, *(name for name in results["models"] if name != selected)]
    y, scores, note = aligned(predictions, models, cohort)
    figure, (axes,) = canvas(5.2, 5.0)
    try:
        plot_roc(y, scores, ci_band=False, ax=axes)
        band = roc_confidence_band(y, scores[selected], seed=results["options"]["seed"])
        axes.fill_between(band.fpr, band.tpr_lower, band.tpr_upper, step="post", color="C0", alpha=0.18, linewidth=0)
        axes.get_legend().set_title(f"95% CI: DeLong; band: bootstrap, {selected}")
    except StatsInputError as reason:
        unavailable(axes, f"ROC not drawn: {reason}")
    caption = (f"ROC curves of every model on {cohort}; the shaded band is the pointwise 95% bootstrap band of "
               f"the selected model ({selected}). AUC and 95% DeLong CI in the legend.{note}")
    return figure, caption


def calibration_figure(results: dict, predictions: Predictions, cohort: str) -> tuple[Figure, str]:
    models = focus_models(results)
    figure, axes_list = canvas(4.8 * len(models), 4.8, columns=len(models))
    bins = []
    for model, axes in zip(models, axes_list):
        frame = labelled(predictions[model, cohort])
        n_bins = int(np.clip(len(frame) // PARTICIPANTS_PER_BIN, 2, 10))
        bins.append(f"{model}: {n_bins}")
        try:
            plot_calibration(frame["label"].to_numpy(dtype=int), frame["probability"].to_numpy(), n_bins=n_bins,
                             ax=axes)
            keep_notes_inside(axes)
        except StatsInputError as reason:
            unavailable(axes, f"Calibration not drawn: {reason}")
        axes.set_title(model, fontsize=10)
    caption = (f"Calibration on {cohort}: observed proportion with sarcopenia against the predicted probability, "
               f"in equal-size bins of predicted risk (bins: {', '.join(bins)}) with 95% Wilson intervals.")
    return figure, caption


def decision_figure(results: dict, predictions: Predictions, cohort: str) -> tuple[Figure, str]:
    y, probabilities, note = aligned(predictions, list(results["models"]), cohort)
    figure, (axes,) = canvas(5.2, 4.0)
    try:
        plot_decision_curve(y, probabilities, ax=axes)
    except StatsInputError as reason:
        unavailable(axes, f"Decision curves not drawn: {reason}")
    caption = (f"Decision curves on {cohort}: net benefit of acting on each model at each threshold probability, "
               f"against treating everyone and no one.{note}")
    return figure, caption


def contributions_figure(results: dict) -> tuple[Figure, str]:
    details = results["contribution_details"]
    cohorts = [name for name in results["cohorts"] if name in details]
    modalities = list(dict.fromkeys(m for name in cohorts for m in details[name]))
    figure, axes_list = canvas(9.0, 4.0, columns=len(CLASSES))
    width = 0.8 / len(cohorts)
    for axes, klass in zip(axes_list, CLASSES):
        for number, cohort in enumerate(cohorts):
            present = [m for m in modalities if klass in details[cohort].get(m, {})]
            if not present:
                continue
            shares = [details[cohort][m][klass] for m in present]
            means = np.array([share["mean"] for share in shares])
            errors = np.array([[share["mean"] - share["ci"][0], share["ci"][1] - share["mean"]] for share in shares]).T
            positions = np.array([modalities.index(m) for m in present]) + (number - (len(cohorts) - 1) / 2) * width
            axes.bar(positions, means, width=width * 0.95, yerr=errors, capsize=3, color=f"C{number}", label=cohort)
        axes.set_xticks(range(len(modalities)), [MODALITY_NAMES.get(m, m) for m in modalities], fontsize=8)
        axes.set(ylim=(0, 1), ylabel="Share of the evidence", title=f"True class: {CLASS_NAMES[klass]}")
        axes.title.set_fontsize(10)
    axes_list[0].legend(fontsize=8, frameon=False, loc="upper right")
    caption = (f"Share of each data type in the evidence the multimodal model ({fused_model(results)}) gave for the "
               "participant's true class, mean over the participants of that class, with 95% bootstrap intervals.")
    return figure, caption


def aligned(predictions: Predictions, models: list[str], cohort: str) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """Labels and each model's probabilities on the labelled participants every model predicted,
    so that curves drawn on one axes compare the same people; the note says who was left out."""
    frames = {model: labelled(predictions[model, cohort]).set_index("participant_id") for model in models}
    common = frames[models[0]].index
    for frame in frames.values():
        common = common.intersection(frame.index, sort=False)
    y = frames[models[0]].loc[common, "label"].to_numpy(dtype=int)
    scores = {model: frame.loc[common, "probability"].to_numpy(dtype=float) for model, frame in frames.items()}
    largest = max(len(frame) for frame in frames.values())
    note = "" if len(common) == largest else (f" Drawn on the {len(common)} labelled participants every model "
                                              f"predicted ({largest - len(common)} left out).")
    return y, scores, note


def canvas(width: float, height: float, columns: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes_list = list(np.atleast_1d(figure.subplots(1, columns)))
    for axes in axes_list:
        axes.tick_params(labelsize=9)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
    return figure, axes_list


def unavailable(axes: Axes, message: str) -> None:
    """Say on the figure why it is empty rather than fail the whole report."""
    note = axes.text(0.5, 0.5, textwrap.fill(message, 60), transform=axes.transAxes, ha="center", va="center",
                     fontsize=8)
    note.set_in_layout(False)


def keep_notes_inside(axes: Axes) -> None:
    """Wrap the calibration note (a long "not estimable" reason) and keep it out of the layout,
    which otherwise shrinks the axes to nothing to make room for it."""
    for note in axes.texts:
        note.set_text("\n".join(textwrap.fill(line, 48) for line in note.get_text().split("\n")))
        note.set_in_layout(False)


def file_stems(cohorts: list[str]) -> dict[str, str]:
    """File-name-safe, distinct stems for cohort names (which are free text)."""
    stems: dict[str, str] = {}
    for cohort in cohorts:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", cohort).strip("_") or "cohort"
        stems[cohort] = stem if stem not in stems.values() else f"{stem}_{len(stems) + 1}"
    return stems
