"""The study's last step: the device's model, the image model, quantized to INT8 and verified.

The study ends with what the device will run, so its INT8 version is checked by the same
accuracy gate a screening program uses (``sarco-calibrate``): calibration inputs drawn from
development, explicit Q/DQ quantization for TensorRT, then float vs INT8 on every cohort. A
device has only images, so its model is the image model, whichever model the selection rule
prefers when clinical and laboratory data are at hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.progress import Progress

from model_build.study.design import StudyOptions

INT8_BUNDLE = "image-int8"


def calibrate_device_model(cohort_path: Path, run: Path, models: list[str], selected: str,
                           options: StudyOptions, progress: Progress) -> dict:
    """``{"int8": {...}}`` for results.json, or ``{"int8": None, "int8_skipped": reason}``."""
    if not options.int8:
        return _skipped("INT8 was turned off (--no-int8)")
    if "image" not in models:
        return _skipped("the cohort has no images, so there is no model for the device")
    from model_build.calibration import CalibrationError

    try:
        result = _calibrate(cohort_path, run, options, progress)
    except ImportError as error:  # the edge extra has no Model Optimizer
        return _skipped(f"the calibration tools are not installed ({error}); fix: install the "
                        "workstation extra (pip install -e '.[workstation]')")
    except CalibrationError as error:  # the study's models stay valid; say why there is no INT8 check
        return _skipped(f"calibration failed: {error}")
    if selected != "image":
        result["int8"]["note"] = (f"the selected model, {selected}, needs data a device does not have; the "
                                  "device runs the image model, checked here")
    return result


def _calibrate(cohort_path: Path, run: Path, options: StudyOptions, progress: Progress) -> dict:
    from model_build.calibration.bundles import load_float_bundle, load_int8_bundle
    from model_build.calibration.quantize import QuantizeOptions, quantize_bundle
    from model_build.calibration.select import load_calibration_set, save_calibration_set, select_calibration_set
    from model_build.calibration.verify import GateLimits, record, verify
    from model_build.cohort import load_cohort

    task = progress.add_task("INT8: calibration set", total=None)
    step = (lambda text: progress.update(task, description=f"INT8: {text}"))
    cohort = load_cohort(cohort_path)
    source = load_float_bundle(run / "bundles" / "image")
    chosen = select_calibration_set(source, cohort, "development", options.calibration_inputs, options.seed)
    calibration_folder = save_calibration_set(chosen, run / "int8" / "calibration")
    # Two sensitivity rounds of four blocks each (three Model Optimizer passes). On the demo's
    # image model, on the calibration frames, one round of two blocks left a logit error of 0.52
    # and 4.7 % of frames flipping; two rounds of four 0.39 and 2.5 % (docs/calibration.md). --quick:
    # none (its 2-epoch model says nothing about INT8, and the search costs 40 s of its 3 minutes).
    quantize_options = QuantizeOptions(target="tensorrt", method="entropy", rounds=0 if options.quick else 2,
                                       exclude_per_round=4)
    written, _ = quantize_bundle(source, load_calibration_set(calibration_folder), run / "bundles" / INT8_BUNDLE,
                                 quantize_options, step)
    limits = GateLimits()
    # Recordings sampled as the bundle samples them (not the device's gated frames), so the float
    # AUC here is the image model's AUC in the study's tables.
    result = verify(source, load_int8_bundle(written, source), cohort, limits, step, 10, video_frames=None)
    record(result, run / "int8")
    progress.remove_task(task)
    summary = json.loads((run / "int8" / "verify.json").read_text(encoding="utf-8"))
    return {"int8": {
        "model": "image", "accepted": bool(summary["accepted"]), "bundle": f"bundles/{INT8_BUNDLE}",
        "target": quantize_options.target, "method": quantize_options.method,
        "calibration_inputs": int(len(chosen.inputs)), "limits": summary.get("limits"),
        "failures": summary.get("failures", []),
        "cohorts": {name: {k: entry.get(k) for k in ("n", "auc_float", "auc_int8", "p", "flip_rate")}
                    for name, entry in summary["cohorts"].items()},
        "report": "int8/verify.html",
    }}


def _skipped(reason: str) -> dict:
    return {"int8": None, "int8_skipped": reason}
