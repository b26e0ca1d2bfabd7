"""Statistics engine: ROC/AUC with DeLong and bootstrap CIs, DeLong tests, thresholds,
accuracy at a threshold, calibration and decision curves — validated against R's pROC.

Stable public API (other tools call it): :func:`auc_ci`, :func:`compare_auc`,
:func:`compare_auc_unpaired`. Only numpy and scipy are imported here; plots live in
:mod:`model_build.stats.plots`, which imports matplotlib lazily. See docs/statistics.md.
"""

from model_build.stats._validate import StatsInputError
from model_build.stats.auc import AucInterval, auc_ci
from model_build.stats.calibration import (
    CalibrationCurve,
    CalibrationFit,
    brier_score,
    calibration_curve,
    calibration_intercept_slope,
)
from model_build.stats.decision import DecisionCurve, decision_curve, net_benefit
from model_build.stats.delong import AucComparison, compare_auc, compare_auc_unpaired, delong_covariance, delong_variance
from model_build.stats.metrics import (
    ConfusionTable,
    Proportion,
    ThresholdMetrics,
    confusion_table,
    metrics_at_threshold,
    wilson_proportion,
)
from model_build.stats.multiplicity import holm_adjust
from model_build.stats.platt import PlattScaling
from model_build.stats.roc import RocBand, RocCurve, roc_auc, roc_confidence_band, roc_curve
from model_build.stats.stratified import compare_auc_stratified
from model_build.stats.thresholds import (
    OperatingThreshold,
    select_threshold,
    threshold_for_cost,
    threshold_for_sensitivity,
    threshold_for_specificity,
    threshold_interval,
    youden_threshold,
)

__all__ = [
    "AucComparison", "AucInterval", "CalibrationCurve", "CalibrationFit", "ConfusionTable", "DecisionCurve",
    "OperatingThreshold", "PlattScaling", "Proportion", "RocBand", "RocCurve", "StatsInputError", "ThresholdMetrics",
    "auc_ci", "brier_score", "calibration_curve", "calibration_intercept_slope", "compare_auc",
    "compare_auc_stratified", "compare_auc_unpaired", "confusion_table", "decision_curve", "delong_covariance", "delong_variance", "holm_adjust",
    "metrics_at_threshold", "net_benefit", "roc_auc", "roc_confidence_band", "roc_curve", "select_threshold",
    "threshold_for_cost", "threshold_for_sensitivity", "threshold_for_specificity", "threshold_interval", "wilson_proportion", "youden_threshold",
]
