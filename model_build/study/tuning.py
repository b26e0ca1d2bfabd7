"""`sarco tune`: the study's image settings chosen on development alone (docs/study.md, "The tuning rule").

Why it exists: the image settings the study used to ship with were picked by their external AUC,
which turned the external cohort into a tuning score. Here each candidate (image size x epoch
budget) is scored by cross-validation inside development, on folds seeded apart from the study's.
Every other cohort is dropped from the participant table before a file is read, so this path
cannot see an external or poc participant; tuning.json lists the participants it read, and
``sarco study --tuning`` refuses a tuning that saw any of its validation participants
(:func:`check_against`).

The default rule is the one-standard-error rule (Breiman et al. 1984; Hastie, Tibshirani and
Friedman, *The Elements of Statistical Learning*, 2nd ed., section 7.10): the cheapest candidate
whose mean fold AUC lies within one standard error of the best mean. Cheapest means the smallest
image, then the fewest epochs: the device's cost, and the less flexible fit, so fold noise does
not buy a bigger model.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from model_build.cohort import load_cohort
from model_build.models.crossval import out_of_fold
from model_build.models.train import TrainOptions
from model_build.models.training_data import available_modalities, read_library
from model_build.stats.selection import one_standard_error_rule, standard_error
from model_build.study import TUNING_RULES
from model_build.study.design import STUDY_THREADS, StudyError, assign_folds, image_options
from model_build.study.provenance import provenance
from model_build.study.results import auc_of
from sarco_core.files import read_json

DEVELOPMENT = "development"
SCHEMA_VERSION = 1
RULE_TEXT = {"one-se": "the smallest image, then the fewest epochs, whose mean fold AUC is within one standard "
                       "error of the best mean (the one-standard-error rule)",
             "best": "the highest mean fold AUC"}


@dataclass(frozen=True)
class TuneOptions:
    """The grid and how it is scored. The fixed part of the recipe (frozen blocks, weight
    averaging, one frame per recording, patience) is the study's (:func:`image_options`)."""

    seed: int = 0
    folds: int = 3
    sizes: tuple[int, ...] = (64, 80, 96)
    epochs: tuple[int, ...] = (4, 8)
    rule: str = "one-se"
    threads: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.rule not in TUNING_RULES:
            raise StudyError(f"--rule {self.rule}: use one of {', '.join(TUNING_RULES)}")
        if not self.sizes or any(size < 32 or size % 8 for size in self.sizes):
            raise StudyError(f"--sizes {_listed(self.sizes)}: give image sizes in pixels, multiples of 8 from 32, "
                             "e.g. 64,80,96")
        if not self.epochs or any(epochs < 1 for epochs in self.epochs):
            raise StudyError(f"--epochs {_listed(self.epochs)}: give epoch budgets of at least 1, e.g. 4,8")
        if self.folds < 2:
            raise StudyError(f"--folds {self.folds}: cross-validation needs at least 2 folds")

    def candidates(self) -> list[tuple[int, int]]:
        """(image size, epochs), cheapest first."""
        return sorted({(size, epochs) for size in self.sizes for epochs in self.epochs})

    def training(self, size: int, epochs: int, fold: int) -> TrainOptions:
        seed = int(np.random.default_rng([self.seed, 7919, fold]).integers(2**31))
        return replace(image_options(False, seed), image_size=size, epochs=epochs,
                       threads=self.threads or STUDY_THREADS, device=self.device)


def _listed(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values) or "(none)"


def development_rows(participants: pd.DataFrame, where: Path) -> pd.DataFrame:
    """The labelled development participants: the only rows a tuning may read."""
    rows = participants[(participants["cohort"] == DEVELOPMENT) & participants["label"].notna()]
    if rows.empty:
        raise StudyError(f"{where}/participants.csv: no labelled participant in cohort `development`; "
                         "fix: name the cohort the models are developed on `development`")
    return rows.reset_index(drop=True)


def development_fingerprint(rows: pd.DataFrame) -> str:
    """SHA-256 of the development participants' ids and labels, in id order: the study checks
    that a tuning was made on its own development cohort."""
    table = rows[["participant_id", "label"]].astype({"label": int}).sort_values("participant_id")
    return hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()


def tune(cohort_path: Path, options: TuneOptions, progress: Progress | None = None) -> dict:
    """Score every candidate by ``options.folds``-fold cross-validation on development; tuning.json's content."""
    progress = progress or Progress(disable=True)
    cohort = load_cohort(cohort_path)
    rows = development_rows(cohort.participants, cohort_path)
    cohort = replace(cohort, participants=rows)  # from here on, nothing outside development exists
    if "image" not in available_modalities(cohort, rows):
        raise StudyError(f"{cohort_path}: its development participants have no images or recordings, and `sarco tune` "
                         "chooses the image model's settings; fix: list their images in images.csv or videos.csv")
    labels = rows["label"].astype(int).to_numpy()
    fold_of = assign_folds(labels, options.folds, int(np.random.default_rng([options.seed, 7919]).integers(2**31)))
    scored = []
    with tempfile.TemporaryDirectory(prefix="sarco-tune-") as scratch:
        task = progress.add_task("tuning: image settings", total=len(options.candidates()) * options.folds)
        for size in sorted(set(options.sizes)):
            library = read_library(cohort, rows["participant_id"].tolist(), options.training(size, 1, 0), progress)
            for epochs in sorted(set(options.epochs)):
                scored.append(_score(cohort, rows, fold_of, library, options, size, epochs, Path(scratch),
                                     lambda: progress.advance(task)))
        progress.remove_task(task)
    chosen, best = choose(scored, options.rule)
    fixed = asdict(options.training(chosen["image_size"], chosen["epochs"], 0))
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cohort": {"path": str(Path(cohort_path).resolve()), "development_fingerprint": development_fingerprint(rows)},
        "data": {"cohorts_read": [DEVELOPMENT], "participants": len(rows),
                 "participant_ids": sorted(rows["participant_id"].astype(str))},
        "folds": options.folds, "seed": options.seed,
        "fixed": {key: fixed[key] for key in ("backbone", "freeze_blocks", "weight_average", "frames_per_video",
                                              "patience", "batch_size", "learning_rate", "backbone_learning_rate")},
        "rule": options.rule, "rule_text": RULE_TEXT[options.rule],
        "candidates": scored, "best": {key: best[key] for key in ("image_size", "epochs")},
        "chosen": {key: chosen[key] for key in ("image_size", "epochs")},
        "reason": _reason(chosen, best, options.rule),
        "provenance": provenance(),
    }


def _score(cohort, rows: pd.DataFrame, fold_of: np.ndarray, library, options: TuneOptions, size: int,  # noqa: ANN001
           epochs: int, scratch: Path, advance) -> dict:  # noqa: ANN001
    started = time.perf_counter()
    folds = out_of_fold(cohort, rows, fold_of, library, lambda fold: options.training(size, epochs, fold),
                        scratch / f"{size}px-{epochs}ep", advance)
    aucs = [auc_of(fold.predictions) for fold in folds]
    mean = float(np.mean(aucs))
    se = standard_error(aucs)
    return {"image_size": size, "epochs": epochs, "fold_aucs": [round(a, 6) for a in aucs],
            "mean_auc": round(mean, 6), "se": round(se, 6),
            "pooled_auc": round(auc_of(pd.concat([fold.predictions for fold in folds])), 6),
            "epochs_run": [fold.epochs_run for fold in folds], "seconds": round(time.perf_counter() - started, 1)}


def choose(scored: list[dict], rule: str) -> tuple[dict, dict]:
    """(chosen, best) among scored candidates under ``rule``; candidates are compared by mean fold AUC,
    the smaller image, then the fewer epochs, being the cheaper."""
    chosen, best = one_standard_error_rule(scored, lambda c: (c["image_size"], c["epochs"]))
    return (best, best) if rule == "best" else (chosen, best)


def _reason(chosen: dict, best: dict, rule: str) -> str:
    name = f"{chosen['image_size']} px, {chosen['epochs']} epoch{'' if chosen['epochs'] == 1 else 's'}"
    if chosen is best or rule == "best":
        return f"{name} has the highest mean fold AUC ({best['mean_auc']:.3f})"
    return (f"{name} (mean fold AUC {chosen['mean_auc']:.3f}) is the cheapest within one standard error "
            f"({best['se']:.3f}) of the best, {best['image_size']} px, {best['epochs']} epochs ({best['mean_auc']:.3f})")


# --- the study's side -------------------------------------------------------------------------------


def read_tuning(path: Path) -> dict:
    """tuning.json, parsed and checked (JSON only: nothing in it is executed)."""
    tuning = read_json(path, StudyError, f"fix: run `sarco tune COHORT --out {path}` first")
    problems = _problems(tuning)
    if problems:
        raise StudyError(f"{path}: not a tuning file from `sarco tune`: {'; '.join(problems)}; fix: rerun `sarco tune`")
    return tuning


def _problems(tuning: dict) -> list[str]:
    if tuning.get("schema_version") != SCHEMA_VERSION:
        return [f"schema_version must be {SCHEMA_VERSION}"]
    problems = []
    chosen = tuning.get("chosen")
    if not (isinstance(chosen, dict) and all(isinstance(chosen.get(k), int) and not isinstance(chosen.get(k), bool)
                                             and chosen[k] > 0 for k in ("image_size", "epochs"))):
        problems.append("chosen must hold whole positive image_size and epochs")
    data = tuning.get("data")
    if not (isinstance(data, dict) and data.get("cohorts_read") == [DEVELOPMENT]
            and isinstance(data.get("participant_ids"), list)):
        problems.append("data must list cohorts_read [\"development\"] and the participant_ids read")
    if not isinstance(tuning.get("cohort"), dict) or not isinstance(tuning["cohort"].get("development_fingerprint"),
                                                                    str):
        problems.append("cohort.development_fingerprint is missing")
    return problems


def check_against(tuning: dict, path: Path, development: pd.DataFrame, validation: dict[str, pd.DataFrame]) -> None:
    """Refuse a tuning that read a validation participant, or was made on another development cohort."""
    read = set(map(str, tuning["data"]["participant_ids"]))
    for name, rows in validation.items():
        seen = sorted(read & set(rows["participant_id"].astype(str)))
        if seen:
            raise StudyError(f"{path}: tuned on {len(seen)} participant(s) of the {name} cohort (e.g. {seen[0]}); "
                             "validation cohorts are touched once, at the end; fix: rerun `sarco tune` on this "
                             "cohort, which reads development only")
    if tuning["cohort"]["development_fingerprint"] != development_fingerprint(development):
        raise StudyError(f"{path}: tuned on another development cohort (its participants or labels differ from "
                         "this cohort's); fix: run `sarco tune COHORT --out tuning.json` on this cohort")


def tuned_image_options(tuning: dict, quick: bool, seed: int) -> TrainOptions:
    return replace(image_options(quick, seed), image_size=tuning["chosen"]["image_size"],
                   epochs=tuning["chosen"]["epochs"])
