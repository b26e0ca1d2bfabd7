"""Figures render to real files; the statistics package itself stays free of heavy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import model_build.stats as st
from model_build.stats import plots
from tests.support.paths import REPO

REPO_ROOT = REPO


def cohort(n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.random(n) < 0.3
    logit = rng.normal(size=n) + 1.5 * y - 1
    return y, 1 / (1 + np.exp(-logit)), 1 / (1 + np.exp(-(0.5 * logit + rng.normal(size=n))))


def test_importing_stats_loads_no_torch_pandas_sklearn_or_matplotlib() -> None:
    code = ("import sys, model_build.stats, model_build.stats.plots; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'pandas', 'sklearn', 'matplotlib'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", ["roc", "calibration", "decision"])
def test_each_figure_saves_a_readable_png(tmp_path: Path, kind: str) -> None:
    y, p_model, p_other = cohort()
    figure = {
        "roc": lambda: plots.plot_roc(y, {"Ultrasound": p_model, "Clinical": p_other}, n_boot=200),
        "calibration": lambda: plots.plot_calibration(y, p_model),
        "decision": lambda: plots.plot_decision_curve(y, {"Ultrasound": p_model, "Clinical": p_other}),
    }[kind]()
    target = plots.save_figure(figure, tmp_path / "figures" / f"{kind}.png", dpi=150)
    with Image.open(target) as image:
        assert image.format == "PNG" and min(image.size) > 400
        assert np.unique(np.asarray(image.convert("L"))).size > 10  # something was drawn
    assert sorted(p.name for p in target.parent.iterdir()) == [f"{kind}.png"]  # no temporary file left


def test_roc_legend_carries_the_delong_interval(tmp_path: Path) -> None:
    y, p_model, _ = cohort()
    figure = plots.plot_roc(y, p_model, ci_band=False)
    interval = st.auc_ci(y, p_model)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == [f"Model: AUC {interval.auc:.3f} ({interval.lower:.3f}-{interval.upper:.3f})"]
    plots.save_figure(figure, tmp_path / "roc.pdf")
    assert (tmp_path / "roc.pdf").read_bytes().startswith(b"%PDF")


def test_roc_legend_says_when_the_interval_collapses() -> None:
    """Every case ranked below every non-case: AUC 0, DeLong variance 0, so no interval to show."""
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0])
    figure = plots.plot_roc(y, np.linspace(0.1, 0.9, 9), ci_band=False)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["Model: AUC 0.000 (CI not estimable)"]


def test_calibration_plot_notes_intercept_and_slope_with_their_intervals() -> None:
    y, p_model, _ = cohort()
    fit = st.calibration_intercept_slope(y, p_model)
    note = plots.plot_calibration(y, p_model).axes[0].texts[0].get_text()
    assert f"Slope {fit.slope:.2f} ({fit.slope_ci[0]:.2f} to {fit.slope_ci[1]:.2f})" in note
    assert f"Intercept {fit.intercept:.2f} ({fit.intercept_ci[0]:.2f} to {fit.intercept_ci[1]:.2f})" in note


def test_calibration_plot_explains_a_missing_slope_instead_of_failing() -> None:
    y = np.array([0, 1, 0, 1, 0, 1])
    figure = plots.plot_calibration(y, np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7]), n_bins=3)
    note = figure.axes[0].texts[0].get_text()
    assert "Brier" in note and "not estimable" in note


def test_save_figure_needs_a_suffix(tmp_path: Path) -> None:
    y, p_model, _ = cohort()
    with pytest.raises(st.StatsInputError, match="suffix"):
        plots.save_figure(plots.plot_calibration(y, p_model), tmp_path / "figure")
