"""What the report reads from a run folder: ``results.json`` and ``predictions/<model>/<cohort>.csv``.

The run-folder contract between the study runner and the report writer is checked here and
nowhere else, so a runner that drifts from it fails with the key path at fault instead of a
KeyError deep inside a table or a figure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sarco_core.errors import SarcoError

MODALITIES = ("image", "clinical", "lab")
DEVELOPMENT = "development"
PREDICTION_COLUMNS = ("participant_id", "label", "probability", "threshold", "decision")


class StudyReportError(SarcoError, ValueError):
    """The run folder cannot be reported on; the message names the file, key or row and a fix."""


@dataclass(frozen=True)
class Kind:
    """A JSON value type: what the message calls it and how to recognise it."""

    description: str
    accepts: Callable[[object], bool]

    def or_null(self) -> Kind:
        return Kind(f"{self.description} or null", lambda value: value is None or self.accepts(value))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_interval(value: object) -> bool:
    return (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)
            and value[0] <= value[1])


INTEGER = Kind("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0)
NUMBER = Kind("a finite number", _is_number)
PROBABILITY = Kind("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1)
INTERVAL = Kind("[lower, upper] with lower <= upper", _is_interval)
TEXT = Kind("a text", lambda v: isinstance(v, str) and bool(v.strip()))
BOOLEAN = Kind("true or false", lambda v: isinstance(v, bool))
MAPPING = Kind("an object", lambda v: isinstance(v, dict))
LIST = Kind("a list", lambda v: isinstance(v, list))

CENTER_METRICS = {"n": INTEGER, "n_positive": INTEGER, "auc": PROBABILITY.or_null(), "auc_ci": INTERVAL.or_null(),
                  "sensitivity": PROBABILITY.or_null(), "specificity": PROBABILITY.or_null(),
                  "sensitivity_ci": INTERVAL.or_null(), "specificity_ci": INTERVAL.or_null(),
                  "accuracy": PROBABILITY.or_null(), "f1": PROBABILITY.or_null()}
COHORT_METRICS = {**CENTER_METRICS, "threshold": NUMBER, "oracle_auc": PROBABILITY.or_null(), "by_center": MAPPING}
ONE_CLASS_METRICS = {"n": INTEGER, "n_positive": INTEGER, "auc": Kind("null", lambda v: v is None),
                     "auc_ci": Kind("null", lambda v: v is None), "note": TEXT}
"""A cohort or center with one class only: no AUC, and the runner says so in ``note``."""
COMPARISON = {"a": TEXT, "b": TEXT, "cohort": TEXT, "auc_a": PROBABILITY, "auc_b": PROBABILITY,
              "difference": NUMBER, "difference_ci": INTERVAL, "p": PROBABILITY, "p_holm": PROBABILITY,
              "method": TEXT, "why": TEXT}
OPERATING_POINT = {"rule": TEXT, "target": NUMBER.or_null(), "chosen_on": TEXT, "threshold": PROBABILITY,
                   "threshold_ci": INTERVAL.or_null(), "calibration": MAPPING, "fold_thresholds": LIST,
                   "refit_threshold": PROBABILITY}
SHARE = {"mean": PROBABILITY, "ci": INTERVAL}
SELECTION = {"rule": TEXT, "cohort": TEXT, "alpha": PROBABILITY, "best": TEXT, "candidates": LIST,
             "selected": TEXT, "reason": TEXT}
CANDIDATE = {"model": TEXT, "n_modalities": INTEGER, "auc": PROBABILITY, "p_vs_best": PROBABILITY.or_null(),
             "difference_ci": INTERVAL.or_null(), "eligible": BOOLEAN}
INT8 = {"accepted": BOOLEAN, "bundle": TEXT, "method": TEXT, "target": TEXT, "limits": MAPPING, "cohorts": MAPPING,
        "report": TEXT}
INT8_LIMITS = {"max_auc_drop": NUMBER, "max_flip_rate": PROBABILITY}
INT8_COHORT = {"n": INTEGER, "auc_float": PROBABILITY.or_null(), "auc_int8": PROBABILITY.or_null(),
               "p": PROBABILITY.or_null(), "flip_rate": PROBABILITY}
SHARE_CI = Kind("{estimate, ci} (both null for 0 of 0)",
                lambda v: isinstance(v, dict) and (v.get("estimate") is None and v.get("ci") is None
                                                   or PROBABILITY.accepts(v.get("estimate"))
                                                   and _is_interval(v.get("ci"))))
BORDERLINE = {"model": TEXT, "rule": MAPPING, "cohorts": MAPPING, "description": TEXT}
BORDERLINE_RULE = {"level": PROBABILITY, "independent_frames": INTEGER, "evidence": BOOLEAN}
BORDERLINE_COHORT = {**{key: INTEGER for key in ("n", "borderline", "borderline_cases", "tp", "fn", "fp", "tn")},
                     **{key: SHARE_CI for key in ("share", "sensitivity", "specificity", "sensitivity_referred",
                                                  "specificity_referred")}}
MEASUREMENTS = {"model": TEXT, "compared_with": TEXT, "aponeurosis_model": TEXT, "inputs": LIST, "thickness_unit": TEXT,
                "missing": TEXT, "description": TEXT, "refit": MAPPING, "measured": MAPPING, "cohorts": MAPPING,
                "comparisons": LIST, "recovery": MAPPING.or_null()}
MEASUREMENTS_REFIT = {"features": LIST, "intercept": NUMBER, "coefficients": MAPPING}
MEASURED = {"participants": INTEGER, "images": INTEGER, "images_measured": INTEGER}
MEASUREMENTS_METRICS = {key: CENTER_METRICS[key] for key in ("n", "n_positive", "auc", "auc_ci", "sensitivity",
                                                             "specificity")} | {"threshold": NUMBER}
RECOVERY = {"source": TEXT, "description": TEXT, "scopes": MAPPING}
CORRELATION = Kind("a number in [-1, 1]", lambda v: _is_number(v) and -1 <= v <= 1)
AGREEMENT = {"unit": TEXT, "comparable": BOOLEAN, "n_participants": INTEGER, "n_measured": INTEGER,
             "median_absolute_error": NUMBER.or_null(), "median_absolute_error_percent": NUMBER.or_null(),
             "bias": NUMBER.or_null(), "pearson_r": CORRELATION.or_null(), "spearman_r": CORRELATION.or_null()}
COMPLETE_CASES = {"description": TEXT, "n": MAPPING, "models": MAPPING, "comparisons": LIST}
COMPLETE_CASE_METRICS = {"n": INTEGER, "n_positive": INTEGER, "auc": PROBABILITY.or_null(),
                         "auc_ci": INTERVAL.or_null()}
TOP_LEVEL = {"schema_version": INTEGER, "created": TEXT, "cohort": MAPPING, "options": MAPPING, "cohorts": LIST,
             "evaluation": MAPPING, "models": MAPPING, "comparisons": LIST,
             "selection": MAPPING, "selected_model": TEXT}
INFORMATION = {"model": TEXT, "description": TEXT, "n_boot": INTEGER, "seed": INTEGER,
               "disagreement_threshold": NUMBER, "cohorts": MAPPING}
INFORMATION_COHORT = {"n": INTEGER, "n_positive": INTEGER, "auc": PROBABILITY, "shapley": MAPPING, "auc_drop": MAPPING,
                      "evidence_share": MAPPING, "evidence_for_more_than_against": MAPPING,
                      "oracle": MAPPING.or_null(), "disagreements": LIST}
SPLIT = {"mean": NUMBER, "ci": INTERVAL, "share": PROBABILITY.or_null(), "share_ci": INTERVAL.or_null()}
"""A class's Shapley (or oracle) split for one data type: no share (null) when a data type's mean is negative."""
AUC_DROP = {"auc_without": PROBABILITY, "drop": NUMBER, "ci": INTERVAL}
DISAGREEMENT = {"class": TEXT, "modality": TEXT, "evidence_share": PROBABILITY, "shapley_share": PROBABILITY.or_null(),
                "evidence_for_more_than_against": PROBABILITY.or_null()}
RUN_COHORT = {"path": TEXT, "data_hash": TEXT}
PROVENANCE = {"python": TEXT, "packages": MAPPING, "torch": MAPPING, "cpu": MAPPING, "environment": MAPPING}
PROVENANCE_TORCH = {"intra_op_threads": INTEGER, "inter_op_threads": INTEGER, "mkldnn_available": BOOLEAN,
                    "mkldnn_enabled": BOOLEAN, "onednn_version": TEXT.or_null(), "cpu_capability": TEXT,
                    "deterministic_algorithms": BOOLEAN, "deterministic_warn_only": BOOLEAN}
PROVENANCE_CPU = {"model": TEXT.or_null(), "machine": TEXT, "logical_cores": INTEGER.or_null(),
                  "usable_cores": INTEGER.or_null()}
OPTIONS = {"seed": INTEGER, "folds": INTEGER, "fusion": TEXT, "alpha": PROBABILITY}
MODEL = {"modalities": LIST, "bundle": TEXT, "operating_point": MAPPING}
CHOICES = {"rule": TEXT, "validation_cohorts": LIST, "made": LIST}
CHOICE = {"choice": TEXT, "value": TEXT, "kind": TEXT, "data": LIST, "how": TEXT}
CHOICE_KINDS = ("pre-specified", "tuned", "check")
CLASSES = ("sarcopenia", "non_sarcopenia")
SCHEMA_VERSION = 1


class _Checker:
    """Walks results.json and collects every problem, each named by its key path."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fields(self, value: object, spec: dict[str, Kind], path: str) -> dict | None:
        """Check that ``value`` is an object holding every key of ``spec`` with the right type."""
        if not isinstance(value, dict):
            self.problems.append(f"{path or 'the top level'} must be an object, not {type(value).__name__}")
            return None
        for key, kind in spec.items():
            where = f"{path}.{key}" if path else key
            if key not in value:
                self.problems.append(f"{where} is missing")
            elif not kind.accepts(value[key]):
                self.problems.append(f"{where} must be {kind.description}, not {value[key]!r}")
        return value

    def inner(self, value: object, spec: dict[str, Kind], path: str) -> dict | None:
        """Like :meth:`fields` for a value whose own type its parent already checked."""
        return self.fields(value, spec, path) if isinstance(value, dict) else None

    def member(self, value: object, allowed: list[str], path: str, what: str) -> None:
        if isinstance(value, str) and value not in allowed:
            self.problems.append(f"{path} is {value!r}, which is not one of the {what} ({', '.join(allowed)})")

    def results(self, results: object) -> None:
        top = self.fields(results, TOP_LEVEL, "")
        if top is None:
            return
        if top.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            self.problems.append(f"schema_version is {top['schema_version']!r}; this report reads {SCHEMA_VERSION}")
        self.inner(top.get("cohort"), RUN_COHORT, "cohort")
        self.inner(top.get("options"), OPTIONS, "options")
        if "provenance" in top:
            self.provenance(top["provenance"])
        cohorts = self.cohort_names(top.get("cohorts"))
        models = self.models(top.get("models"), cohorts)
        self.inner(top.get("evaluation"), {name: TEXT for name in cohorts}, "evaluation")
        self.comparisons(top.get("comparisons"), "comparisons", models, cohorts)
        self.contributions(top, models, cohorts)
        self.selection(top, models, cohorts)
        self.int8(top)
        if "sensitivity_analysis" in top:
            self.complete_cases(top["sensitivity_analysis"], models, cohorts)
        if "oracle" in top:
            self.oracle(top["oracle"], cohorts)
        if "borderline" in top:
            self.borderline(top["borderline"], cohorts)
        if "measurements" in top:
            self.measurements(top["measurements"], models, cohorts)
        if "information" in top:
            self.information(top["information"], models, cohorts)
        if "choices" in top:
            self.choices(top["choices"], cohorts)

    def choices(self, block: object, cohorts: list[str]) -> None:
        """Every choice and the data it saw: a tuned choice may have seen development only."""
        found = self.fields(block, CHOICES, "choices")
        if found is None:
            return
        for index, entry in enumerate(found["made"] if isinstance(found.get("made"), list) else ()):
            where = f"choices.made[{index}]"
            entry = self.fields(entry, CHOICE, where)
            if entry is None:
                continue
            if entry.get("kind") not in CHOICE_KINDS:
                self.problems.append(f"{where}.kind must be one of {', '.join(CHOICE_KINDS)}, not {entry.get('kind')!r}")
            seen = entry.get("data") if isinstance(entry.get("data"), list) else []
            for cohort in seen:
                self.member(cohort, cohorts, f"{where}.data", "cohorts")
            if entry.get("kind") == "tuned" and seen != [DEVELOPMENT]:
                self.problems.append(f"{where}: a tuned choice must have seen development only, not {seen!r}")

    def provenance(self, block: object) -> None:
        """Versions, threads, oneDNN and the CPU (runs written before it was recorded lack it)."""
        found = self.fields(block, PROVENANCE, "provenance")
        if found is None:
            return
        self.inner(found.get("packages"), {name: TEXT.or_null() for name in ("torch", "numpy", "onnxruntime",
                                                                              "sklearn")}, "provenance.packages")
        self.inner(found.get("torch"), PROVENANCE_TORCH, "provenance.torch")
        self.inner(found.get("cpu"), PROVENANCE_CPU, "provenance.cpu")
        environment = found.get("environment")
        for name, value in (environment.items() if isinstance(environment, dict) else ()):
            if not TEXT.or_null().accepts(value) and value != "":
                self.problems.append(f"provenance.environment.{name} must be a text or null, not {value!r}")

    def information(self, block: object, models: list[str], cohorts: list[str]) -> None:
        """What each data type adds to the fused model (evidential fusion of several data types)."""
        found = self.fields(block, INFORMATION, "information")
        if found is None:
            return
        self.member(found.get("model"), models, "information.model", "models")
        modalities = (found.get("model") or "").split("+")
        for cohort, values in (found["cohorts"].items() if isinstance(found.get("cohorts"), dict) else ()):
            where = f"information.cohorts.{cohort}"
            self.member(cohort, cohorts, where, "cohorts")
            entry = self.fields(values, INFORMATION_COHORT, where)
            if entry is None:
                continue
            for key in ("shapley", "oracle"):
                for klass in CLASSES if isinstance(entry.get(key), dict) else ():
                    by_modality = self.fields(entry[key].get(klass), {m: MAPPING for m in modalities},
                                              f"{where}.{key}.{klass}") or {}
                    for modality in modalities:
                        self.inner(by_modality.get(modality), SPLIT, f"{where}.{key}.{klass}.{modality}")
            drops = self.inner(entry.get("auc_drop"), {m: MAPPING for m in modalities}, f"{where}.auc_drop") or {}
            for modality in modalities:
                self.inner(drops.get(modality), AUC_DROP, f"{where}.auc_drop.{modality}")
            for index, item in enumerate(entry.get("disagreements") or ()):
                self.fields(item, DISAGREEMENT, f"{where}.disagreements[{index}]")

    def measurements(self, block: object, models: list[str], cohorts: list[str]) -> None:
        """The measurements model beside the image network (optional: runs without images)."""
        found = self.fields(block, MEASUREMENTS, "measurements")
        if found is None:
            return
        self.inner(found.get("refit"), MEASUREMENTS_REFIT, "measurements.refit")
        for key, spec in (("measured", MEASURED), ("cohorts", MEASUREMENTS_METRICS)):
            values = found.get(key) if isinstance(found.get(key), dict) else {}
            for name in cohorts:
                if name not in values:
                    self.problems.append(f"measurements.{key}.{name} is missing")
                elif key == "measured":
                    self.fields(values[name], spec, f"measurements.{key}.{name}")
                else:
                    self.metrics(values[name], spec, f"measurements.{key}.{name}")
        for index, entry in enumerate(found.get("comparisons") if isinstance(found.get("comparisons"), list) else ()):
            where = f"measurements.comparisons[{index}]"
            if self.fields(entry, COMPARISON, where) is not None:
                self.member(entry.get("a"), [found.get("model")], f"{where}.a", "measurements model")
                self.member(entry.get("b"), models, f"{where}.b", "models")
                self.member(entry.get("cohort"), cohorts, f"{where}.cohort", "cohorts")
        recovered = self.inner(found.get("recovery"), RECOVERY, "measurements.recovery")
        scopes = (recovered or {}).get("scopes")
        for scope, quantities in (scopes.items() if isinstance(scopes, dict) else ()):
            if self.fields(quantities, {}, f"measurements.recovery.scopes.{scope}") is not None:
                for quantity, values in quantities.items():
                    self.fields(values, AGREEMENT, f"measurements.recovery.scopes.{scope}.{quantity}")

    def borderline(self, block: object, cohorts: list[str]) -> None:
        """The device's borderline rule on the cohorts (optional: runs without an image model)."""
        found = self.fields(block, BORDERLINE, "borderline")
        if found is None:
            return
        self.inner(found.get("rule"), BORDERLINE_RULE, "borderline.rule")
        values = found.get("cohorts") if isinstance(found.get("cohorts"), dict) else {}
        for name in cohorts:
            if name not in values:
                self.problems.append(f"borderline.cohorts.{name} is missing")
            else:
                self.fields(values[name], BORDERLINE_COHORT, f"borderline.cohorts.{name}")

    def cohort_names(self, cohorts: object) -> list[str]:
        if not isinstance(cohorts, list):
            return []
        names = [name for name in cohorts if TEXT.accepts(name)]
        if len(names) != len(cohorts) or len(set(names)) != len(names):
            self.problems.append(f"cohorts must be a list of distinct cohort names, not {cohorts!r}")
        if DEVELOPMENT not in names:
            self.problems.append(f"cohorts must include {DEVELOPMENT!r} (models are trained and selected on it)")
        return names

    def models(self, models: object, cohorts: list[str]) -> list[str]:
        if not isinstance(models, dict):
            return []
        if not models:
            self.problems.append("models is empty: there is nothing to report")
        for name, model in models.items():
            path = f"models.{name}"
            if self.fields(model, {**MODEL, **{cohort: MAPPING for cohort in cohorts}}, path) is None:
                continue
            self.inner(model.get("operating_point"), OPERATING_POINT, f"{path}.operating_point")
            modalities = model.get("modalities")
            if isinstance(modalities, list) and (not modalities or not set(modalities) <= set(MODALITIES)
                                                 or "+".join(m for m in MODALITIES if m in modalities) != name):
                self.problems.append(f"{path}.modalities is {modalities!r}; the model name must join its data types "
                                     f"({', '.join(MODALITIES)}, in that order) with '+'")
            for cohort in cohorts:
                metrics = self.metrics(model.get(cohort), COHORT_METRICS, f"{path}.{cohort}") or {}
                centers = metrics.get("by_center")
                for center, values in (centers.items() if isinstance(centers, dict) else ()):
                    self.metrics(values, CENTER_METRICS, f"{path}.{cohort}.by_center.{center}")
        return list(models)

    def metrics(self, metrics: object, spec: dict[str, Kind], path: str) -> dict | None:
        one_class = isinstance(metrics, dict) and metrics.get("auc") is None and "note" in metrics
        return self.inner(metrics, ONE_CLASS_METRICS if one_class else spec, path)

    def comparisons(self, comparisons: object, path: str, models: list[str], cohorts: list[str]) -> None:
        for index, entry in enumerate(comparisons if isinstance(comparisons, list) else ()):
            where = f"{path}[{index}]"
            if self.fields(entry, COMPARISON, where) is not None:
                self.member(entry.get("a"), models, f"{where}.a", "models")
                self.member(entry.get("b"), models, f"{where}.b", "models")
                self.member(entry.get("cohort"), cohorts, f"{where}.cohort", "cohorts")

    def contributions(self, top: dict, models: list[str], cohorts: list[str]) -> None:
        """Evidential fusion of several data types must say what each contributed; other runs may."""
        summary = top.get("contributions")
        fused = any("+" in name for name in models)
        if not summary:
            if fused and (top.get("options") or {}).get("fusion") == "evidential":
                self.problems.append(f"contributions is {'empty' if 'contributions' in top else 'missing'} although "
                                     "an evidential model fuses several data types")
            return
        if self.fields(summary, {klass: MAPPING for klass in CLASSES}, "contributions") is None:
            return
        for klass in CLASSES:
            shares = summary.get(klass)
            for modality, share in (shares.items() if isinstance(shares, dict) else ()):
                self.member(modality, list(MODALITIES), f"contributions.{klass}.{modality}", "data types")
                if not PROBABILITY.accepts(share):
                    self.problems.append(f"contributions.{klass}.{modality} must be {PROBABILITY.description}, "
                                         f"not {share!r}")
        details = top.get("contribution_details")
        if not isinstance(details, dict):
            self.problems.append("contribution_details is missing (per cohort, data type and class: mean and ci)")
            return
        for cohort, by_modality in details.items():
            self.member(cohort, cohorts, f"contribution_details.{cohort}", "cohorts")
            if not isinstance(by_modality, dict):
                self.problems.append(f"contribution_details.{cohort} must be an object")
                continue
            for modality, by_class in by_modality.items():
                where = f"contribution_details.{cohort}.{modality}"
                self.member(modality, list(MODALITIES), where, "data types")
                if self.fields(by_class, {}, where) is None:
                    continue
                for klass, share in by_class.items():  # a class nobody in the cohort has is left out
                    self.member(klass, list(CLASSES), f"{where}.{klass}", "classes")
                    self.fields(share, SHARE, f"{where}.{klass}")

    def selection(self, top: dict, models: list[str], cohorts: list[str]) -> None:
        selection = self.inner(top.get("selection"), SELECTION, "selection")
        self.member(top.get("selected_model"), models, "selected_model", "models")
        if selection is None:
            return
        self.member(selection.get("best"), models, "selection.best", "models")
        self.member(selection.get("selected"), models, "selection.selected", "models")
        self.member(selection.get("cohort"), cohorts, "selection.cohort", "cohorts")
        if selection.get("selected") != top.get("selected_model"):
            self.problems.append(f"selection.selected ({selection.get('selected')!r}) differs from selected_model "
                                 f"({top.get('selected_model')!r})")
        for index, candidate in enumerate(selection.get("candidates") or ()):
            where = f"selection.candidates[{index}]"
            if self.fields(candidate, CANDIDATE, where) is not None:
                self.member(candidate.get("model"), models, f"{where}.model", "models")

    def int8(self, top: dict) -> None:
        if "int8" not in top:
            self.problems.append("int8 is missing (null with int8_skipped when INT8 did not run)")
            return
        int8 = top["int8"]
        if int8 is None:
            if not TEXT.accepts(top.get("int8_skipped")):
                self.problems.append("int8_skipped is missing: when int8 is null it must say why (a text)")
            return
        if self.fields(int8, INT8, "int8") is None:
            return
        self.inner(int8.get("limits"), INT8_LIMITS, "int8.limits")
        cohorts = int8.get("cohorts")
        for name, values in (cohorts.items() if isinstance(cohorts, dict) else ()):
            self.fields(values, INT8_COHORT, f"int8.cohorts.{name}")

    def complete_cases(self, analysis: object, models: list[str], cohorts: list[str]) -> None:
        path = "sensitivity_analysis.complete_cases"
        block = self.fields(analysis, {"complete_cases": MAPPING}, "sensitivity_analysis") or {}
        complete = self.inner(block.get("complete_cases"), COMPLETE_CASES, path)
        if complete is None:
            return
        self.inner(complete.get("n"), {cohort: INTEGER for cohort in cohorts}, f"{path}.n")
        by_model = complete.get("models")
        for model, by_cohort in (by_model.items() if isinstance(by_model, dict) else ()):
            self.member(model, models, f"{path}.models.{model}", "models")
            if self.fields(by_cohort, {}, f"{path}.models.{model}") is not None:
                for cohort, metrics in by_cohort.items():
                    self.member(cohort, cohorts, f"{path}.models.{model}.{cohort}", "cohorts")
                    self.fields(metrics, COMPLETE_CASE_METRICS, f"{path}.models.{model}.{cohort}")
        self.comparisons(complete.get("comparisons"), f"{path}.comparisons", models, cohorts)

    def oracle(self, oracle: object, cohorts: list[str]) -> None:
        if self.fields(oracle, {}, "oracle") is None:
            return
        for cohort, values in oracle.items():
            self.member(cohort, cohorts, f"oracle.{cohort}", "cohorts")
            self.fields(values, {"all": PROBABILITY.or_null()}, f"oracle.{cohort}")
            for key, value in (values.items() if isinstance(values, dict) else ()):
                if not PROBABILITY.or_null().accepts(value):
                    self.problems.append(f"oracle.{cohort}.{key} must be a number in [0, 1] or null, not {value!r}")


def check_results(results: dict) -> None:
    """Raise :class:`StudyReportError` listing every key of the run-folder contract that is missing
    or of the wrong type (key paths such as ``models.image.external.auc_ci``)."""
    checker = _Checker()
    checker.results(results)
    if checker.problems:
        shown = checker.problems[:25]
        more = len(checker.problems) - len(shown)
        raise StudyReportError("results.json does not follow the run-folder contract:\n"
                               + "\n".join(f"  - {problem}" for problem in shown)
                               + (f"\n  ... and {more} more" if more else "")
                               + "\nfix: rerun `sarco study`, or correct results.json to the contract")


def read_results(run: Path) -> dict:
    """``RUN/results.json``, parsed and checked."""
    path = Path(run) / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyReportError(f"{path}: not found; fix: run `sarco study` into {run} first") from None
    except (OSError, UnicodeDecodeError) as error:
        raise StudyReportError(f"{path}: cannot be read ({error}); fix: make it a readable UTF-8 file") from None
    except json.JSONDecodeError as error:
        raise StudyReportError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
                               "fix: rerun `sarco study`") from None
    try:
        check_results(results)
    except StudyReportError as error:
        raise StudyReportError(f"{path}: {error}") from None
    return results


def load_predictions(run: Path, results: dict) -> dict[tuple[str, str], pd.DataFrame]:
    """Every ``predictions/<model>/<cohort>.csv`` named by results.json, keyed by (model, cohort).

    ``label`` becomes nullable Int64 (NA = unknown) and ``probability`` float; a missing file,
    column or a value out of range is reported with the file, spreadsheet row and column.
    """
    frames = {}
    for model in results["models"]:
        for cohort in results["cohorts"]:
            frames[model, cohort] = _read_predictions(Path(run) / "predictions" / model / f"{cohort}.csv")
    return frames


def _read_predictions(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={"participant_id": str, "cohort": str, "center": str}, keep_default_na=False,
                            na_values=[""])
    except FileNotFoundError:
        raise StudyReportError(f"{path}: not found; fix: rerun `sarco study` (every model writes one file per "
                               "cohort)") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise StudyReportError(f"{path}: cannot be read as CSV ({error}); fix: rerun `sarco study`") from None
    missing = [column for column in PREDICTION_COLUMNS if column not in frame.columns]
    if missing:
        raise StudyReportError(f"{path}: column(s) {', '.join(missing)} missing; fix: rerun `sarco study`")
    repeated = frame["participant_id"].duplicated()
    if repeated.any():
        row = int(np.flatnonzero(repeated.to_numpy())[0]) + 2
        raise StudyReportError(f"{path}: row {row}, column participant_id: "
                               f"{frame['participant_id'].iloc[row - 2]!r} appears twice; fix: rerun `sarco study`")
    _check_values(path, frame, "label", lambda v: v.isin([0, 1]), "0, 1 or empty", nullable=True)
    _check_values(path, frame, "decision", lambda v: v.isin([0, 1]), "0 or 1")
    _check_values(path, frame, "probability", lambda v: v.between(0, 1), "a probability in [0, 1]")
    frame["label"] = frame["label"].astype("Int64")
    frame["probability"] = frame["probability"].astype(float)
    frame["decision"] = frame["decision"].astype(int)
    return frame


def _check_values(path: Path, frame: pd.DataFrame, column: str, allowed: Callable[[pd.Series], pd.Series],
                  expected: str, nullable: bool = False) -> None:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    good = allowed(values) & values.notna()
    if nullable:
        good |= raw.isna()
    bad = np.flatnonzero(~good.to_numpy(dtype=bool))
    if bad.size:
        row = int(bad[0]) + 2  # the header is spreadsheet row 1
        raise StudyReportError(f"{path}: row {row}, column {column}: {raw.iloc[bad[0]]!r} is not {expected} "
                               f"({bad.size} such row(s)); fix: rerun `sarco study`")


def fused_model(results: dict) -> str | None:
    """The model with the most data types (the multimodal one); None when every model has one."""
    models = results["models"]
    widest = max(models, key=lambda name: len(models[name]["modalities"]))
    return widest if len(models[widest]["modalities"]) > 1 else None


def focus_models(results: dict) -> list[str]:
    """The selected model, then the multimodal one: the two a reader compares."""
    fused = fused_model(results)
    return [results["selected_model"], *([fused] if fused and fused != results["selected_model"] else [])]


def complete_cases(results: dict) -> dict | None:
    """The complete-case analysis, when some model has clinical or lab inputs that can be missing."""
    tabular = any(set(model["modalities"]) & {"clinical", "lab"} for model in results["models"].values())
    return (results.get("sensitivity_analysis") or {}).get("complete_cases") if tabular else None


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose label is known (unknown labels cannot be scored)."""
    return frame[frame["label"].notna()]
