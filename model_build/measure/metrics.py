"""How well predicted aponeuroses match the truth: Dice per aponeurosis, thickness error, and
percentile bootstrap confidence intervals of the summaries."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sarco_core.measure import DEEP, SUPERFICIAL, muscle_thickness_px

BOOTSTRAP_REPLICATES = 2000


def dice(predicted: np.ndarray, truth: np.ndarray, label: int) -> float | None:
    """Dice of one class on two label images of one size; None when neither has the class."""
    a, b = predicted == label, truth == label
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def compare_labels(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """One image: Dice of each aponeurosis, thickness of both, the error in px and in % of the truth."""
    found, expected = muscle_thickness_px(predicted), muscle_thickness_px(truth)
    row = {"dice_superficial": dice(predicted, truth, SUPERFICIAL), "dice_deep": dice(predicted, truth, DEEP),
           "thickness_true_px": expected.px, "thickness_pred_px": found.px, "status": found.status,
           "thickness_error_px": None, "thickness_error_pct": None}
    if found.px is not None and expected.px is not None:
        row["thickness_error_px"] = found.px - expected.px
        row["thickness_error_pct"] = 100.0 * (found.px - expected.px) / expected.px
    return row


def bootstrap_ci(values: Sequence[float], statistic: Callable[[np.ndarray], float] = np.median,
                 level: float = 0.95, replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0) -> list[float] | None:
    """Percentile bootstrap interval of ``statistic`` over ``values`` (None when fewer than 2)."""
    data = np.asarray([v for v in values if v is not None], float)
    if data.size < 2:
        return None
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(replicates, data.size))
    stats = np.array([statistic(data[row]) for row in picks])
    tail = 100.0 * (1.0 - level) / 2.0
    return [float(np.percentile(stats, tail)), float(np.percentile(stats, 100.0 - tail))]


def summary(values: Sequence[float | None], statistic: Callable[[np.ndarray], float] = np.median,
            seed: int = 0) -> dict:
    """``{"value", "ci95", "n"}`` of a statistic over the values that exist."""
    data = [float(v) for v in values if v is not None]
    return {"value": float(statistic(np.asarray(data))) if data else None,
            "ci95": bootstrap_ci(data, statistic, seed=seed), "n": len(data)}


def share(flags: Sequence[bool], seed: int = 0) -> dict:
    """Share of True with its bootstrap interval."""
    return summary([1.0 if f else 0.0 for f in flags], np.mean, seed)


def mask_metrics(rows: list[dict], seed: int = 0) -> dict:
    """The summary of per-image :func:`compare_labels` rows (images whose truth has a thickness)."""
    gradable = [r for r in rows if r["thickness_true_px"] is not None]
    abs_pct = [None if r["thickness_error_pct"] is None else abs(r["thickness_error_pct"]) for r in gradable]
    abs_px = [None if r["thickness_error_px"] is None else abs(r["thickness_error_px"]) for r in gradable]
    return {
        "images": len(rows),
        "images_with_true_thickness": len(gradable),
        "dice_superficial": summary([r["dice_superficial"] for r in rows], np.mean, seed),
        "dice_deep": summary([r["dice_deep"] for r in rows], np.mean, seed),
        "thickness_abs_error_px_median": summary(abs_px, np.median, seed),
        "thickness_abs_error_pct_median": summary(abs_pct, np.median, seed),
        "thickness_error_pct_mean": summary([r["thickness_error_pct"] for r in gradable], np.mean, seed),
        "share_measured": share([r["thickness_pred_px"] is not None for r in gradable], seed),
    }
