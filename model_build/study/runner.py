"""`sarco study`: the SARCO design run on one cohort, from images on disk to results.json.

Stages, each timed:
1. read every image once (the device's preprocessing) into a library all trainings share, and
   measure them once with the aponeurosis model (:mod:`model_build.measure.cohort`);
2. cross-validation on development: per fold, the monomodal models and the measurements model
   (:mod:`model_build.study.measurements`), then the best data type combined with the others;
   the image network is trained once per fold and frozen inside the fusion models that contain
   it (:mod:`model_build.models.branch`);
3. refit of every model on all of development, written as a bundle (the measurements model:
   its coefficients) and run frozen on every other cohort;
4. statistics (:mod:`model_build.study.results`), the selection rule, INT8 for an image-only
   selection (:mod:`model_build.study.int8`), the report.

The run is built in ``RUN.partial`` and renamed to RUN at the end: RUN is complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from rich.progress import Progress

from model_build.cohort import Cohort, load_cohort
from model_build.models.branch import ImageBranch
from model_build.measure.cohort import CohortMeasurements, measure_cohort
from model_build.measure.infer import AponeurosisModel
from model_build.models.data import ImageLibrary, count_media, data_hash, tabular_columns
from model_build.models.train import Trainer
from model_build.models.training_data import available_modalities, read_library
from model_build.study import borderline, measurements, recovery, threshold_choice, tuning
from model_build.study.choices import choices
from model_build.study.provenance import provenance
from model_build.study import results as study_results
from model_build.study.design import (StudyError, StudyOptions, assign_folds, combined_models, modalities_of,
                                      select_model)
from sarco_core.files import atomic_write, write_json


class Study:
    """One study run: the cohort, its image library, and every model's predictions."""

    def __init__(self, cohort_path: Path, out: Path, options: StudyOptions, progress: Progress | None = None) -> None:
        self.out, self.options = out, options
        self.progress = progress or Progress(disable=True)
        self.work = out.with_name(out.name + ".partial")
        self.cohort_path = cohort_path
        self.cohort: Cohort = load_cohort(cohort_path)
        self.timings: dict[str, float] = {}
        participants = self.cohort.participants
        labelled = participants[participants["label"].notna()]
        self.development = labelled[labelled["cohort"] == "development"].reset_index(drop=True)
        if self.development.empty:
            raise StudyError(f"{cohort_path}/participants.csv: no labelled participant in cohort `development`; "
                             "fix: name the cohort the models are developed on `development`")
        self.others = {name: rows.reset_index(drop=True) for name, rows in labelled.groupby("cohort", sort=False)
                       if name != "development"}
        self.tuning = None if options.tuning is None else tuning.read_tuning(Path(options.tuning))
        if self.tuning is not None:
            tuning.check_against(self.tuning, Path(options.tuning), self.development, self.others)
        self.modalities = available_modalities(self.cohort, self.development)
        self.labels = self.development["label"].astype(int).to_numpy()
        self.fold_of = assign_folds(self.labels, options.folds, options.seed)
        self.library: ImageLibrary | None = None
        self.branches: dict[int | None, ImageBranch] = {}  # fold (None: the refit) -> its image network
        self.predictions: dict[str, dict[str, pd.DataFrame]] = {}
        self.operating: dict[str, dict] = {}  # model -> its threshold, chosen on out-of-fold development
        self.measured: CohortMeasurements | None = None  # every participant's images, measured
        self.measurements_model: measurements.MeasurementsModel | None = None  # not fitted: the inputs
        self.thickness_unit = "px"
        self.refit_measurements: measurements.MeasurementsModel | None = None

    # --- stages ------------------------------------------------------------------------------

    def run(self) -> Path:
        started = time.perf_counter()
        if self.work.exists():
            shutil.rmtree(self.work)  # a previous run that stopped half-way
        self.work.mkdir(parents=True)
        self._timed("read_images", self.read_images)
        self._timed("measure_images", self.measure_images)
        monomodal = list(self.modalities)
        beside = [measurements.MODEL] if self.measurements_model is not None else []
        self._timed("cross_validation", lambda: self.cross_validate(monomodal + beside))
        aucs = {name: study_results.auc_of(self.predictions[name]["development"]) for name in monomodal}
        self.best_monomodal = max(aucs, key=lambda name: aucs[name])
        combined = combined_models(self.best_monomodal, self.modalities)
        self._timed("cross_validation_fusion", lambda: self.cross_validate(combined))
        models = monomodal + combined
        self._timed("thresholds", lambda: self.choose_thresholds(models + beside))
        self._timed("refit", lambda: self.refit(models + beside))
        results = self._timed("statistics", lambda: self.statistics(models))
        self._timed("int8", lambda: self.int8(results))
        results["choices"] = choices(self.options, self.tuning, tuning.development_fingerprint(self.development),
                                     results["cohorts"], self.best_monomodal, results["selection"],
                                     results.get("int8"))
        self._timed("report", lambda: self.report(results))
        self.timings["total_seconds"] = time.perf_counter() - started
        results["timings"] = {"total_seconds": self.timings.pop("total_seconds"), "stages": self.timings}
        write_json(self.work / "results.json", results)
        if self.out.exists():
            shutil.rmtree(self.out)
        os.replace(self.work, self.out)  # the whole run folder: not atomic_path (one file)
        return self.out

    def _timed(self, stage: str, work):
        started = time.perf_counter()
        value = work()
        self.timings[stage] = time.perf_counter() - started
        return value

    def participant_ids(self) -> list[str]:
        return self.development["participant_id"].tolist() + [pid for rows in self.others.values()
                                                              for pid in rows["participant_id"]]

    def read_images(self) -> None:
        if "image" not in self.modalities:
            return
        self.library = read_library(self.cohort, self.participant_ids(), self.options.image, self.progress)

    def measure_images(self) -> None:
        """Every participant's images (the image model's frames) through the shipped aponeurosis
        model, once: the measurements model's inputs. A fixed model that never sees a label, so
        measuring the validation cohorts here leaks nothing; their labels are read at the refit."""
        if "image" not in self.modalities:
            return
        ids = self.participant_ids()
        task = self.progress.add_task("measuring the images", total=count_media(self.cohort, ids))
        self.measured = measure_cohort(self.cohort, ids, AponeurosisModel(threads=1),
                                       self.options.image.frames_per_video, lambda n: self.progress.advance(task, n))
        self.progress.remove_task(task)
        self.measurements_model, self.thickness_unit = measurements.untrained_model(self.cohort,
                                                                                   self.measured.participants)

    def cross_validate(self, names: list[str]) -> None:
        """Out-of-fold predictions of every model in ``names`` for every development participant."""
        folds = self.options.folds
        task = self.progress.add_task(f"cross-validation: {', '.join(names)}", total=folds * len(names))
        parts: dict[str, list[pd.DataFrame]] = {name: [] for name in names}
        for fold in range(folds):
            train_rows = self.development[self.fold_of != fold]
            test_rows = self.development[self.fold_of == fold]
            for name in names:
                trainer = self._train(name, fold, train_rows)
                table = self._with_spread(name, fold, trainer.predict(test_rows))
                table["fold"] = fold
                table["threshold"] = trainer.threshold["value"]
                parts[name].append(table)
                self.progress.advance(task)
        self.progress.remove_task(task)
        for name in names:
            frame = pd.concat(parts[name], ignore_index=True)
            self.predictions.setdefault(name, {})["development"] = self._annotate(frame, self.development)

    def choose_thresholds(self, names: list[str]) -> None:
        """Each model's threshold from its out-of-fold development predictions
        (:mod:`model_build.study.threshold_choice`); the development decisions follow it."""
        options = self.options
        for name in names:
            development = self.predictions[name]["development"]
            self.operating[name] = threshold_choice.choose_operating_point(
                development, options.threshold_rule, options.threshold_target, options.seed)
            self.predictions[name]["development"] = threshold_choice.apply_to_development(development,
                                                                                          self.operating[name])

    def refit(self, names: list[str]) -> None:
        """Every model on all of development, saved as a bundle (with the threshold chosen on the
        out-of-fold predictions), frozen on the other cohorts."""
        task = self.progress.add_task("refit on development", total=len(names))
        for name in names:
            trainer = self._train(name, None, self.development, bundle=self.work / "bundles" / name)
            for cohort, rows in self.others.items():
                table = self._with_spread(name, None, trainer.predict(rows))
                table["threshold"] = self.operating[name]["refit_threshold"]
                self.predictions[name][cohort] = self._annotate(table, rows)
            self.progress.advance(task)
        self.progress.remove_task(task)

    def _train(self, name: str, fold: int | None, rows: pd.DataFrame,
               bundle: Path | None = None) -> Trainer | measurements.MeasurementsModel:
        if name == measurements.MODEL:  # a logistic regression: no bundle, its coefficients go in results.json
            fitted = self.measurements_model.fit(rows)
            if fold is None:
                self.refit_measurements = fitted
            return fitted
        modalities = modalities_of(name)
        options = self.options.training(modalities, fold)
        where = bundle or self.work / "scratch" / f"fold{fold}-{name}"
        where.mkdir(parents=True, exist_ok=True)
        branch = self.branches.get(fold) if "image" in modalities and modalities != ["image"] else None
        if "image" in modalities and modalities != ["image"] and branch is None:
            raise StudyError(f"{name}: the image model of fold {fold} must be trained first")
        trainer = Trainer(options, self.progress).fit(self.cohort, where, rows=rows, library=self.library,
                                                      branch=branch)
        if bundle is not None:
            trainer.finish(self.operating[name])
        else:
            trainer.settle()
        if modalities == ["image"]:
            self.branches[fold] = ImageBranch(trainer.image_scorer(), self.library, trainer.data.preprocessor)
        if bundle is None:
            shutil.rmtree(where)
        return trainer

    def _with_spread(self, name: str, fold: int | None, table: pd.DataFrame) -> pd.DataFrame:
        """The image model's per-image spread (the device's borderline rule reads it)."""
        if name != borderline.MODEL:
            return table
        readout = "evidential" if self.options.fusion == "evidential" else "softmax"
        return borderline.add_spread(table, self.branches[fold], readout)

    def _annotate(self, table: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
        """Add cohort, center, the decision and whether the participant is a complete case."""
        keyed = rows.set_index("participant_id")
        ids = table["participant_id"]
        table.insert(1, "cohort", keyed.loc[ids, "cohort"].to_numpy())
        table.insert(2, "center", keyed.loc[ids, "center"].astype(str).to_numpy() if "center" in keyed
                     else "all")
        table["label"] = table["label"].astype(int)
        table["decision"] = (table["probability"] >= table["threshold"]).astype(int)
        columns = [c.name for m in ("clinical", "lab") for c in tabular_columns(self.cohort, m)]
        table["complete_case"] = keyed.loc[ids, columns].notna().all(axis=1).to_numpy() if columns else True
        return table

    # --- after the training ------------------------------------------------------------------

    def statistics(self, models: list[str]) -> dict:
        for name, cohorts in self.predictions.items():
            for cohort, table in cohorts.items():
                path = self.work / "predictions" / name / f"{cohort}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, table.to_csv(index=False))
        cohorts = ["development", *self.others]
        truth = study_results.read_truth(self.cohort_path)
        summary = study_results.summarise(self.predictions, models, cohorts, truth, self.options.seed)
        dev_aucs = {name: summary["models"][name]["development"]["auc"] for name in models}
        best = max(dev_aucs, key=lambda name: dev_aucs[name])
        selection = select_model(dev_aucs, study_results.versus(summary["comparisons"], best),
                                 self.options.selection, self.options.alpha, self.options.margin)
        for name in models:
            summary["models"][name]["bundle"] = f"bundles/{name}"
            summary["models"][name]["operating_point"] = self.operating[name]
        columns = ["participant_id", "label"] + [c.name for m in ("clinical", "lab")
                                                 for c in tabular_columns(self.cohort, m)]
        participants = self.cohort.participants
        return {
            "schema_version": 1,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cohort": {"path": str(self.cohort_path.resolve()),
                       "data_hash": data_hash(participants, [c for c in columns if c in participants],
                                              [] if self.library is None else self.library.images.digests)},
            "options": self.options.to_dict(),
            "provenance": provenance(),
            "cohorts": cohorts,
            "evaluation": {name: ("refit on development, frozen" if name != "development" else
                                  f"{self.options.folds}-fold cross-validation, out-of-fold") for name in cohorts},
            **summary,
            "selection": selection,
            "selected_model": selection["selected"],
            **({"oracle": study_results.oracle_by_cohort(truth, self.predictions[models[0]])} if truth is not None
               else {}),
            **({"borderline": borderline.summary(self.predictions[borderline.MODEL])}
               if borderline.MODEL in self.predictions else {}),
            **({"measurements": self.measurements_block(cohorts)} if self.refit_measurements is not None else {}),
        }

    def measurements_block(self, cohorts: list[str]) -> dict:
        """results.json's ``measurements``, its inputs written beside it (RUN/measurements/)."""
        folder = self.work / "measurements"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "frames.csv", self.measured.frames.to_csv(index=False))
        atomic_write(folder / "participants.csv", self.measured.participants.to_csv(index=False))
        block = measurements.summary(self.predictions, self.measured.participants, self.refit_measurements,
                                     self.thickness_unit, self.measured.model, cohorts)
        truth = recovery.read_media_truth(self.cohort_path)
        ids = self.measured.participants["participant_id"]
        cohort_of = self.cohort.participants.set_index("participant_id").loc[ids, "cohort"]
        block["recovery"] = None if truth is None else recovery.recovery(self.measured.frames, truth, cohort_of)
        return block

    def int8(self, results: dict) -> None:
        from model_build.study.int8 import calibrate_device_model

        results.update(calibrate_device_model(self.cohort_path, self.work, list(results["models"]),
                                              results["selected_model"], self.options, self.progress))

    def report(self, results: dict) -> None:
        from model_build.study.gradcam import gradcam_figure
        from model_build.study.report import write_report

        write_json(self.work / "results.json", results)
        if "image" in self.predictions and self.others:
            cohort = next(iter(self.others))
            gradcam_figure(self.work / "bundles" / "image", self.cohort, self.predictions["image"][cohort],
                           self.work / "figures" / "gradcam.png", seed=self.options.seed)
        write_report(self.work, self.cohort)
        shutil.rmtree(self.work / "scratch", ignore_errors=True)


def run_study(cohort: Path, out: Path, options: StudyOptions, progress: Progress | None = None) -> Path:
    """Run the whole study on ``cohort`` into ``out`` (see the module docstring)."""
    if out.exists() and any(out.iterdir()) and not (out / "results.json").is_file():
        raise StudyError(f"{out}: exists and is not a study run; fix: choose a new --out folder")
    return Study(cohort, out, options, progress).run()


def read_results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text(encoding="utf-8"))

