"""The study's design, separate from running it: options, model names, folds, the selection rule.

The SARCO study trained three monomodal models, combined the best data type with each other
one and with both, compared them with paired DeLong tests, and chose the ultrasound-only model
because adding clinical and laboratory data did not buy enough to justify collecting them.
Everything that encodes those choices lives here, so the report can state them exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from model_build.models import MODALITIES, InputError
from model_build.models.train import TrainOptions
from model_build.study import SELECTION_RULES, THRESHOLD_RULES

MIN_PER_CLASS_PER_FOLD = 6  # a fold's training part must still hold 4 of each class after the inner split
STUDY_THREADS = 2
"""Torch threads of every study and tuning training unless ``--threads`` says otherwise, on any
machine: oneDNN splits a convolution's sums by thread, so the thread count decides a training's
last digits and, over a few hundred steps, its path. A count fixed here, rather than the
machine's cores, lets a 2-core laptop and a 32-core workstation with the same CPU kernels write
the same results.json (docs/study.md, "How far the figures move")."""


class StudyError(InputError):
    """The study cannot run as asked; the message says why and how to fix it."""


def image_options(quick: bool, seed: int) -> TrainOptions:
    """The image model as the study trains it on a CPU, six times (5 folds and the refit): 64 px,
    the stem and first 4 blocks frozen, up to 8 epochs, an exponential moving average of the
    weights (decay 0.95 per step); one frame per recording, because the stills already show the
    muscle and frames of one sweep are near duplicates. Size and epochs were chosen by `sarco
    tune` on the development participants of the seed-1 paper cohort alone (3-fold
    cross-validation, the one-standard-error rule; docs/results/tuning-seed1.json and
    docs/study.md, "The tuning rule"); the rest is fixed."""
    if quick:
        return TrainOptions.quick(modalities=["image"], seed=seed, frames_per_video=1, weight_average=0.95)
    return TrainOptions(modalities=["image"], seed=seed, image_size=64, epochs=8, patience=2, frames_per_video=1,
                        freeze_blocks=4, weight_average=0.95)


def tabular_options(quick: bool, seed: int) -> TrainOptions:
    """Clinical, lab and fusion models: small networks (the image branch is frozen features), so
    more epochs cost seconds."""
    epochs = 10 if quick else 40
    return TrainOptions(seed=seed, epochs=epochs, patience=max(3, epochs // 5), augment=False)


@dataclass
class StudyOptions:
    seed: int = 0
    folds: int = 5
    quick: bool = False
    fusion: str = "evidential"
    alpha: float = 0.05
    selection: str = "fewest-not-worse"
    margin: float = 0.05                     # non-inferiority margin on the AUC (selection "non-inferior")
    threshold_rule: str = "youden"
    threshold_target: float | None = None    # sensitivity/specificity to reach, or a missed case's cost
    int8: bool = True
    calibration_inputs: int | None = None    # None: 512, or 64 with --quick
    threads: int | None = None              # None: STUDY_THREADS, whatever the machine
    device: str = "auto"
    tuning: str | None = None                # tuning.json from `sarco tune`: the image settings chosen on development
    image: TrainOptions | None = None
    tabular: TrainOptions | None = None

    def __post_init__(self) -> None:
        if self.selection not in SELECTION_RULES:
            raise StudyError(f"--selection {self.selection}: use one of {', '.join(SELECTION_RULES)}")
        if not 0.0 < self.margin < 0.5:
            raise StudyError(f"--margin {self.margin}: use an AUC difference in (0, 0.5), e.g. 0.05")
        self._check_threshold_rule()
        if self.folds < 2:
            raise StudyError(f"--folds {self.folds}: cross-validation needs at least 2 folds")
        if not 0.0 < self.alpha < 1.0:
            raise StudyError(f"--alpha {self.alpha}: use a significance level in (0, 1), e.g. 0.05")
        if self.calibration_inputs is None:
            self.calibration_inputs = 64 if self.quick else 512
        self.image = self.image or self._image_options()
        self.tabular = self.tabular or tabular_options(self.quick, self.seed)

    def _image_options(self) -> TrainOptions:
        if self.tuning is None:
            return image_options(self.quick, self.seed)
        if self.quick:
            raise StudyError("--quick and --tuning both set the image settings; fix: leave one out")
        from model_build.study.tuning import read_tuning, tuned_image_options  # tuning builds on this module

        return tuned_image_options(read_tuning(Path(self.tuning)), self.quick, self.seed)

    def _check_threshold_rule(self) -> None:
        rule, target = self.threshold_rule, self.threshold_target
        if rule not in THRESHOLD_RULES:
            raise StudyError(f"--threshold-rule {rule}: use one of {', '.join(THRESHOLD_RULES)}")
        if rule == "youden" and target is not None:
            raise StudyError("--threshold-target: Youden's J has no target; leave it out")
        if rule in ("sensitivity", "specificity") and (target is None or not 0.0 < target <= 1.0):
            raise StudyError(f"--threshold-rule {rule} needs --threshold-target in (0, 1], e.g. 0.85")
        if rule == "cost" and (target is None or not target > 0):
            raise StudyError("--threshold-rule cost needs --threshold-target > 0: a missed case's cost in false "
                             "alarms, e.g. 3")

    def training(self, modalities: list[str], fold: int | None) -> TrainOptions:
        """Options of one model; each fold gets its own seed, derived from the study's."""
        base = self.image if modalities == ["image"] else self.tabular
        seed = int(np.random.default_rng([self.seed, 0 if fold is None else fold + 1]).integers(2**31))
        return replace(base, modalities=list(modalities), fusion=self.fusion, seed=seed,
                       threads=self.threads or STUDY_THREADS, device=self.device,
                       image_size=self.image.image_size, frames_per_video=self.image.frames_per_video,
                       crop_to_scan=self.image.crop_to_scan, field_of_view_mm=self.image.field_of_view_mm,
                       backbone=self.image.backbone)

    def to_dict(self) -> dict:
        return asdict(self)


def model_name(modalities: list[str] | tuple[str, ...]) -> str:
    return "+".join(m for m in MODALITIES if m in modalities)


def modalities_of(name: str) -> list[str]:
    return name.split("+")


def combined_models(best: str, available: list[str]) -> list[str]:
    """The best data type with each other one, then with all of them (the study's design)."""
    others = [m for m in available if m != best]
    names = [model_name([best, other]) for other in others]
    if len(others) > 1:
        names.append(model_name(available))
    return names


def assign_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number of each participant, stratified by label (rows are participants, so no
    participant's images can sit on both sides of a split)."""
    counts = np.bincount(labels, minlength=2)
    needed = max(folds, int(np.ceil(MIN_PER_CLASS_PER_FOLD * folds / (folds - 1))))
    if counts.min() < needed:  # fewer folds would shrink each training part further: no --folds hint
        raise StudyError(f"development has {counts[1]} sarcopenia and {counts[0]} other labelled participants: "
                         f"too few for {folds}-fold cross-validation; fix: a cohort with at least {needed} "
                         "labelled participants of each class")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    for number, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold_of[test] = number
    return fold_of


@dataclass
class StudyCandidate:
    model: str
    n_modalities: int
    auc: float
    p_vs_best: float | None
    difference_ci: list[float] | None  # AUC of this model minus the best's, development CI
    eligible: bool


RULE_DESCRIPTIONS = {
    "fewest-not-worse": "fewest data types whose AUC is not significantly lower than the best (paired DeLong, "
                        "alpha {alpha}) on development",
    "non-inferior": "fewest data types whose AUC is non-inferior to the best: the lower bound of the CI of the "
                    "difference above -{margin} (pre-specified margin) on development",
    "best": "highest AUC on development",
}


def _eligible(rule: str, auc: float, best_auc: float, versus: dict | None, alpha: float, margin: float) -> bool:
    if versus is None or auc >= best_auc:
        return rule != "best" or auc >= best_auc
    if rule == "fewest-not-worse":
        return versus["p"] >= alpha
    return rule == "non-inferior" and versus["difference_ci"][0] > -margin


def select_model(aucs: dict[str, float], versus_best: dict[str, dict | None], rule: str, alpha: float,
                 margin: float = 0.05) -> dict:
    """Apply the selection rule to development AUCs and each model's comparison with the best
    (``p`` and ``difference_ci``, this model minus the best).

    ``fewest-not-worse`` (default, the study's choice of US alone): among the models whose AUC
    is not significantly lower than the best one's, the one with the fewest data types (then the
    highest AUC). ``non-inferior``: the same, but eligible means the CI of the difference lies
    above -``margin`` (a pre-specified non-inferiority margin), so "not significant" is not read
    as "not worse". ``best``: the highest AUC.
    """
    best = max(aucs, key=lambda name: aucs[name])
    candidates = []
    for name, auc in aucs.items():
        versus = None if name == best else versus_best.get(name)
        eligible = _eligible(rule, auc, aucs[best], versus, alpha, margin)
        candidates.append(StudyCandidate(name, len(modalities_of(name)), auc, None if versus is None else versus["p"],
                                         None if versus is None else list(versus["difference_ci"]), eligible))
    candidates.sort(key=lambda c: (c.n_modalities, -c.auc))
    chosen = next(c for c in candidates if c.eligible) if rule != "best" else \
        next(c for c in candidates if c.model == best)
    fewest = min(c.n_modalities for c in candidates)
    reason = _reason(chosen, best, aucs[best], rule, alpha, margin, fewest)
    return {"rule": RULE_DESCRIPTIONS[rule].format(alpha=alpha, margin=margin), "rule_name": rule,
            "cohort": "development", "alpha": alpha, "margin": margin, "best": best,
            "candidates": [asdict(c) for c in candidates], "selected": chosen.model, "reason": reason}


def _reason(chosen: StudyCandidate, best: str, best_auc: float, rule: str, alpha: float, margin: float,
            fewest: int) -> str:
    if chosen.model == best:
        reason = f"{best} has the highest development AUC ({best_auc:.3f})"
        if rule != "best" and chosen.n_modalities == fewest:
            reason += ", and no model has fewer data types"
        elif rule != "best":
            reason += "; every model with fewer data types was " + (
                "significantly worse" if rule == "fewest-not-worse" else f"not shown non-inferior (margin {margin})")
        return reason
    types = f"needs {chosen.n_modalities} data type{'s' if chosen.n_modalities > 1 else ''}"
    if chosen.p_vs_best is None:  # as good as the best on development
        return f"{chosen.model} (AUC {chosen.auc:.3f}) is as good as the best, {best}, and {types}"
    if rule == "non-inferior":
        lower, upper = chosen.difference_ci
        return (f"{chosen.model} (AUC {chosen.auc:.3f}) is non-inferior to the best, {best} (AUC {best_auc:.3f}): "
                f"difference CI {lower:.3f} to {upper:.3f} lies above -{margin}, and {types}")
    return (f"{chosen.model} (AUC {chosen.auc:.3f}) is not significantly worse than the best, {best} "
            f"(AUC {best_auc:.3f}, paired DeLong P = {chosen.p_vs_best:.3f} >= {alpha}), and {types}")
