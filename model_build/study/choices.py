"""results.json's ``choices``: every choice that shapes the study's numbers, and the data it saw.

The tuning rule (docs/study.md): a choice is either fixed before the run (``pre-specified``) or
made on development alone (``tuned``); the validation cohorts are read once, at the end, by
frozen models, and only checks (``check``: nothing is chosen from their result) look at them.
This block is the record a reader checks; tests/model_build/study/test_tuning.py checks the
rule itself, by permuting the validation cohorts' labels and finding every choice unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from model_build.study.design import StudyOptions

DEVELOPMENT = ["development"]
DEFAULTS_TUNING = "docs/results/tuning-seed1.json"
DEFAULTS_FINGERPRINT = "eb69a79719fcad63d34c92662603150ca168705797921476443bff81f629168c"
"""The development fingerprint (:func:`model_build.study.tuning.development_fingerprint`) of the
cohort the defaults were tuned on; test_tuning.py ties it to the kept file."""
DEFAULTS_SOURCE = ("the study's defaults, chosen by `sarco tune` on the development participants of the seed-1 "
                   f"paper-size synthetic cohort alone ({DEFAULTS_TUNING}; docs/study.md, \"The tuning rule\")")


def choices(options: StudyOptions, tuning: dict | None, development_fingerprint: str, cohorts: list[str],
            best_monomodal: str, selection: dict, int8: dict | None) -> dict:
    """The ``choices`` block; ``cohorts`` lists development first, then the validation cohorts."""
    validation = [name for name in cohorts if name != "development"]
    made = [_image_settings(options, tuning, development_fingerprint),
            _entry("training length", f"at most {options.image.epochs} epochs for the image model, "
                   f"{options.tabular.epochs} for the others", "tuned", DEVELOPMENT,
                   f"early stopping on each training's inner validation split ({options.image.validation_fraction:.0%} "
                   "of its own participants; patience "
                   f"{options.image.patience} and {options.tabular.patience} epochs)"),
            _entry("folds", f"{options.folds} folds, seed {options.seed}", "pre-specified", [],
                   "stratified by label, each participant in one fold"),
            _entry("models combined", f"{best_monomodal} with the other data types", "tuned", DEVELOPMENT,
                   "the data type with the best out-of-fold AUC"),
            _entry("thresholds", options.threshold_rule
                   + (f" (target {options.threshold_target:g})" if options.threshold_target is not None else ""),
                   "tuned", DEVELOPMENT, "the rule applied to the Platt-calibrated out-of-fold predictions"),
            _entry("selected model", selection["selected"], "tuned", DEVELOPMENT, selection["rule"]),
            _entry("rules and margins", f"selection {options.selection}, alpha {options.alpha:g}, margin "
                   f"{options.margin:g}; threshold rule {options.threshold_rule}", "pre-specified", [],
                   "command-line options, fixed before the run")]
    if int8 is not None:
        made += [_entry("INT8 calibration inputs", f"{int8['calibration_inputs']} inputs", "tuned", DEVELOPMENT,
                        "drawn from development's images; the quantizer's ranges and excluded layers follow them"),
                 _entry("INT8 acceptance", "accepted" if int8["accepted"] else "refused", "check", cohorts,
                        "the accuracy gate compares the float and INT8 models on every cohort; nothing is "
                        "re-chosen from its result")]
    return {"rule": "every choice is pre-specified or made on development; validation cohorts are read once, "
                    "after every choice, by frozen models",
            "validation_cohorts": validation, "made": made}


def _image_settings(options: StudyOptions, tuning: dict | None, development_fingerprint: str) -> dict:
    image = options.image
    value = (f"{image.image_size} px, {image.epochs} epochs, {image.freeze_blocks} blocks frozen, weight average "
             f"{image.weight_average}, {image.frames_per_video} frame(s) per recording")
    if tuning is not None:
        digest = hashlib.sha256(Path(options.tuning).read_bytes()).hexdigest()
        return _entry("image settings", value, "tuned", tuning["data"]["cohorts_read"],
                      f"`sarco tune`: {tuning['folds']}-fold cross-validation on {tuning['data']['participants']} "
                      f"development participants, {len(tuning['candidates'])} candidates, {tuning['rule_text']} "
                      f"({Path(options.tuning).name}, SHA-256 {digest[:12]})")
    if options.quick:
        return _entry("image settings", value, "pre-specified", [], "--quick: a smoke test's settings")
    if development_fingerprint == DEFAULTS_FINGERPRINT:  # this cohort is the one the defaults were tuned on
        return _entry("image settings", value, "tuned", DEVELOPMENT, "tuned on this cohort's development: "
                      + DEFAULTS_SOURCE)
    return _entry("image settings", value, "pre-specified", [], "pre-specified: " + DEFAULTS_SOURCE)


def _entry(choice: str, value: str, kind: str, data: list[str], how: str) -> dict:
    return {"choice": choice, "value": value, "kind": kind, "data": list(data), "how": how}
