"""Publication figures: ROC with confidence band, calibration curve, decision curve.

matplotlib is imported inside the functions, so importing ``model_build.stats`` stays light
for the dashboard. Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas, never
through pyplot, so there is no global state and it is safe in a server thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from model_build.stats._validate import StatsInputError, as_labels
from model_build.stats.auc import auc_ci
from model_build.stats.calibration import brier_score, calibration_curve, calibration_intercept_slope
from model_build.stats.decision import DEFAULT_THRESHOLDS, decision_curve
from model_build.stats.roc import roc_confidence_band, roc_curve
from sarco_core.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Scores = ArrayLike | Mapping[str, ArrayLike]


def _named(scores: Scores, default_name: str) -> dict[str, ArrayLike]:
    return dict(scores) if isinstance(scores, Mapping) else {default_name: scores}


def _new_axes(ax: Axes | None) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.6, 4.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.tick_params(labelsize=9)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure, axes


def plot_roc(y_true: ArrayLike, scores: Scores, ci_band: bool = True, level: float = 0.95, n_boot: int = 2000,
             seed: int = 0, ax: Axes | None = None) -> Figure:
    """ROC curve(s) with DeLong AUC CIs in the legend and a bootstrap band (see ``roc_confidence_band``)."""
    figure, axes = _new_axes(ax)
    axes.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
    for number, (name, score) in enumerate(_named(scores, "Model").items()):
        curve = roc_curve(y_true, score)
        interval = auc_ci(y_true, score, level=level)
        colour = f"C{number}"
        spread = (f"{interval.lower:.3f}-{interval.upper:.3f}" if interval.upper > interval.lower
                  else "CI not estimable")  # DeLong's variance is 0 when every pair is ranked alike
        label = f"{name}: AUC {interval.auc:.3f} ({spread})"
        axes.plot(curve.fpr, curve.tpr, color=colour, linewidth=1.8, label=label)
        if ci_band:
            band = roc_confidence_band(y_true, score, level=level, n_boot=n_boot, seed=seed)
            axes.fill_between(band.fpr, band.tpr_lower, band.tpr_upper, step="post", color=colour, alpha=0.18,
                              linewidth=0)
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="Sensitivity", aspect="equal")
    axes.legend(loc="lower right", fontsize=8, frameon=False,
                title=f"{level:.0%} CI: DeLong" + ("; band: bootstrap" if ci_band else ""), title_fontsize=8)
    return figure


def plot_calibration(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: str = "quantile",
                     level: float = 0.95, ax: Axes | None = None) -> Figure:
    """Binned observed vs predicted risk with Wilson error bars; Brier, intercept and slope in a note."""
    figure, axes = _new_axes(ax)
    curve = calibration_curve(y_true, y_prob, n_bins=n_bins, strategy=strategy, level=level)  # type: ignore[arg-type]
    observed = np.array([b.estimate for b in curve.observed])
    errors = np.array([[b.estimate - b.lower, b.upper - b.estimate] for b in curve.observed]).T
    axes.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="Ideal")
    axes.errorbar(curve.mean_predicted, observed, yerr=errors, fmt="o-", color="C0", markersize=4, linewidth=1.4,
                  capsize=2, label=f"Observed ({strategy} bins, {level:.0%} CI)")
    note = [f"Brier {brier_score(y_true, y_prob):.3f}"]
    try:
        fit = calibration_intercept_slope(y_true, y_prob, level=level)
        note += [f"Intercept {fit.intercept:.2f} ({fit.intercept_ci[0]:.2f} to {fit.intercept_ci[1]:.2f})",
                 f"Slope {fit.slope:.2f} ({fit.slope_ci[0]:.2f} to {fit.slope_ci[1]:.2f})"]
    except StatsInputError as reason:
        note.append(f"Intercept/slope not estimable: {str(reason).split(':')[0]}")
    axes.text(0.04, 0.96, "\n".join(note), transform=axes.transAxes, va="top", fontsize=8)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="Predicted probability", ylabel="Observed proportion", aspect="equal")
    axes.legend(loc="lower right", fontsize=8, frameon=False)
    return figure


def plot_decision_curve(y_true: ArrayLike, probs: Scores, thresholds: ArrayLike = DEFAULT_THRESHOLDS,
                        ax: Axes | None = None) -> Figure:
    """Net benefit of the model(s) against treat-all and treat-none."""
    figure, axes = _new_axes(ax)
    named = _named(probs, "Model")
    first = decision_curve(y_true, next(iter(named.values())), thresholds)
    axes.plot(first.thresholds, first.treat_all, color="0.45", linewidth=1.2, label="Treat all")
    axes.plot(first.thresholds, first.treat_none, color="0.2", linewidth=1.2, linestyle="--", label="Treat none")
    for number, (name, prob) in enumerate(named.items()):
        curve = decision_curve(y_true, prob, thresholds)
        axes.plot(curve.thresholds, curve.model, color=f"C{number}", linewidth=1.8, label=name)
    prevalence = float(np.mean(as_labels(y_true)))  # the largest net benefit any strategy can reach
    axes.set(xlim=(first.thresholds[0], first.thresholds[-1]), ylim=(-0.05, max(prevalence, 0.05) * 1.1),
             xlabel="Threshold probability", ylabel="Net benefit")
    axes.legend(loc="upper right", fontsize=8, frameon=False)
    return figure


def save_figure(figure: Figure, path: str | Path, dpi: int = 300) -> Path:
    """Save atomically (temporary file in the same folder, then rename); format from the suffix."""
    target = Path(path)
    suffix = target.suffix.lstrip(".").lower()
    if not suffix:
        raise StatsInputError(f"{target}: add a file suffix (.png, .pdf or .svg) to choose the format.")
    with atomic_path(target) as temporary, temporary.open("wb") as stream:
        figure.savefig(stream, format=suffix, dpi=dpi)
    return target
