"""Image recipes side by side: k-fold cross-validation by participant on real and synthetic cohorts.

    python benchmarks/bench_recipe.py COHORT... --out FILE.json [--recipes a,b] [--folds 5] [--seed 0]

Each COHORT's labelled `development` participants (no other cohort is read) are split into
``--folds`` stratified folds (``assign_folds``: rows are participants, so no participant's images
sit on both sides). For every recipe (model_build/models/recipes.py) a model is trained on each
fold's complement with `sarco train`'s code and scores the fold. Printed per recipe and cohort:
the mean fold AUC with its t interval over folds, the pooled out-of-fold AUC with its DeLong
interval, epochs run and training minutes per fold. Results are written to FILE.json after every
recipe, and a rerun skips the (cohort, recipe) pairs already there, so the benchmark can be
stopped and resumed or extended by a recipe.

The synthetic side (docs/models.md): a `sarco synth PAPER --size paper` cohort with
``--recipes compact-frozen,compact --folds 3`` (10-16 minutes per fold on 2 cores).

Issue #21's targets: mean fold AUC >= 0.93 on `busi-development` with the default recipe, and
its training on the 545-image cohort <= 15 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress
from scipy import stats as scipy_stats

from model_build.cohort import load_cohort
from model_build.models.crossval import out_of_fold
from model_build.models.data import available_cores
from model_build.models.recipes import RECIPES, is_shipped, one_standard_error_choice
from model_build.models.train import TrainOptions
from model_build.models.training_data import read_library
from model_build.stats import auc_ci, compare_auc
from model_build.stats.selection import standard_error
from model_build.study.design import assign_folds
from model_build.study.results import auc_of
from model_build.study.tuning import development_rows


def cross_validate(cohort_path: Path, recipe: str, folds: int, seed: int, threads: int | None,
                   progress: Progress) -> dict:
    cohort = load_cohort(cohort_path)
    rows = development_rows(cohort.participants, cohort_path)
    cohort = replace(cohort, participants=rows)
    labels = rows["label"].astype(int).to_numpy()
    fold_of = assign_folds(labels, folds, int(np.random.default_rng([seed, 21]).integers(2**31)))
    base = TrainOptions(modalities=["image"], threads=threads, device="cpu", **RECIPES[recipe])
    library = read_library(cohort, rows["participant_id"].tolist(), base, progress)
    task = progress.add_task(f"{cohort_path.name}: {recipe}", total=folds)

    def fold_options(fold: int) -> TrainOptions:
        return replace(base, seed=int(np.random.default_rng([seed, 21, fold]).integers(2**31)))

    with tempfile.TemporaryDirectory(prefix="sarco-recipe-") as scratch:
        results = out_of_fold(cohort, rows, fold_of, library, fold_options, Path(scratch),
                              lambda: progress.advance(task))
    progress.remove_task(task)
    aucs = [auc_of(fold.predictions) for fold in results]
    minutes = [fold.seconds / 60 for fold in results]
    pooled = pd.concat([fold.predictions for fold in results])
    interval = auc_ci(pooled["label"].to_numpy(int), pooled["probability"].to_numpy(float))
    mean, se = float(np.mean(aucs)), standard_error(aucs)
    half = float(scipy_stats.t.ppf(0.975, folds - 1)) * se
    return {"cohort": cohort_path.name, "recipe": recipe, "options": RECIPES[recipe], "folds": folds, "seed": seed,
            "participants": len(rows), "fold_aucs": [round(a, 4) for a in aucs],
            "mean_auc": round(mean, 4), "mean_auc_ci": [round(mean - half, 4), round(min(1.0, mean + half), 4)],
            "pooled_auc": round(interval.auc, 4), "pooled_auc_ci": [round(interval.lower, 4), round(interval.upper, 4)],
            "epochs_run": [fold.epochs_run for fold in results],
            "train_minutes_per_fold": round(float(np.mean(minutes)), 2),
            "train_minutes_max": round(float(np.max(minutes)), 2), "threads": threads or available_cores(),
            "predictions": {str(pid): round(float(prob), 6)
                            for pid, prob in zip(pooled["participant_id"], pooled["probability"])},
            "labels": {str(pid): int(label) for pid, label in zip(pooled["participant_id"], pooled["label"])}}


def line(result: dict) -> str:
    low, high = result["mean_auc_ci"]
    plow, phigh = result["pooled_auc_ci"]
    return (f"{result['cohort']:<20} {result['recipe']:<16} seed {result['seed']}  "
            f"mean fold AUC {result['mean_auc']:.3f} [{low:.3f}-{high:.3f}]"
            f"  pooled {result['pooled_auc']:.3f} [{plow:.3f}-{phigh:.3f}]"
            f"  epochs {result['epochs_run']}"
            f"  {result['train_minutes_per_fold']:.1f} min/fold (max {result['train_minutes_max']:.1f})")


def paired_p(result: dict, results: list[dict], reference: str) -> str:
    """Paired DeLong P of the pooled out-of-fold AUC against ``reference``'s, same cohort, folds and
    seed; empty where either run kept no predictions (runs made before they were kept)."""
    other = next((r for r in results if r["recipe"] == reference and r["cohort"] == result["cohort"]
                  and (r["folds"], r["seed"]) == (result["folds"], result["seed"])), None)
    if result["recipe"] == reference or other is None or "predictions" not in result or "predictions" not in other:
        return ""
    ids = sorted(result["predictions"])
    comparison = compare_auc([result["labels"][i] for i in ids], [result["predictions"][i] for i in ids],
                             [other["predictions"][i] for i in ids])
    return f"{comparison.p:.3f}"


def repeated(results: list[dict]) -> list[str]:
    """Per cohort and recipe cross-validated with more than one ``--seed`` (other folds, other
    training seeds): the mean of all their fold AUCs and its standard error (folds of different
    seeds overlap in participants, so the error is a little optimistic)."""
    groups: dict[tuple[str, str, int], dict[int, dict]] = {}
    for r in results:
        if is_shipped(r):
            groups.setdefault((r["cohort"], r["recipe"], r["folds"]), {})[r["seed"]] = r
    lines = []
    for (cohort, recipe, _), by_seed in groups.items():
        runs = list(by_seed.values())
        if len(runs) > 1:
            aucs = np.concatenate([r["fold_aucs"] for r in runs])
            lines.append(f"{cohort:<20} {recipe:<16} seeds {', '.join(str(r['seed']) for r in runs)}: "
                         f"mean of {len(aucs)} fold AUCs {aucs.mean():.3f} (standard error "
                         f"{standard_error(aucs):.3f})")
    return lines


def rule_choices(results: list[dict]) -> list[str]:
    """Per cohort, folds and seed: the recipe the one-standard-error rule picks (the rule that set
    STILL_DEFAULT from busi-development's seed 0), among the shipped recipes measured there."""
    groups: dict[tuple[str, int, int], list[dict]] = {}
    for r in results:
        groups.setdefault((r["cohort"], r["folds"], r["seed"]), []).append(r)
    lines = []
    for (cohort, folds, seed), group in groups.items():
        try:
            chosen, best = one_standard_error_choice(group)
        except ValueError:
            continue  # no shipped recipe measured here
        lines.append(f"{cohort:<20} {folds} folds, seed {seed}: of the shipped recipes measured, the "
                     f"one-standard-error rule chooses {chosen['recipe']} ({chosen['mean_auc']:.3f}); best "
                     f"{best['recipe']} ({best['mean_auc']:.3f})")
    return lines


def markdown(results: list[dict], reference: str) -> str:
    """The table docs/models.md shows."""
    lines = ["| cohort | recipe | options | seed | mean fold AUC [95 % CI] | pooled out-of-fold AUC [95 % CI] | "
             f"P vs {reference} | epochs run | min per fold |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        options = ", ".join(f"{k}={Path(v.split(' (')[0]).name if k == 'image_weights' else v}"
                            for k, v in r["options"].items())
        lines.append(f"| {r['cohort']} | {r['recipe']} | {options or '(defaults)'} | {r['seed']} | {r['mean_auc']:.3f} "
                     f"[{r['mean_auc_ci'][0]:.3f}-{r['mean_auc_ci'][1]:.3f}] | {r['pooled_auc']:.3f} "
                     f"[{r['pooled_auc_ci'][0]:.3f}-{r['pooled_auc_ci'][1]:.3f}] | {paired_p(r, results, reference)} | "
                     f"{', '.join(map(str, r['epochs_run']))} | {r['train_minutes_per_fold']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohorts", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="results JSON (read first: finished pairs are kept)")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of {', '.join(RECIPES)}")
    parser.add_argument("--folds", type=int, default=5, help="at least 2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--markdown", action="store_true", help="also print the results as docs/models.md's table")
    parser.add_argument("--reference", default="compact", help="the recipe the table's paired P values compare with")
    args = parser.parse_args()
    recipes = [name.strip() for name in args.recipes.split(",") if name.strip()]
    unknown = [name for name in recipes if name not in RECIPES]
    if unknown:
        parser.error(f"--recipes: unknown {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    if args.folds < 2:
        parser.error(f"--folds {args.folds}: cross-validation needs at least 2 folds")
    missing = [str(cohort) for cohort in args.cohorts if not (cohort / "participants.csv").is_file()]
    if missing:
        parser.error(f"{', '.join(missing)}: not a cohort folder (no participants.csv); fix: give cohort folders, "
                     "e.g. ../shared/data/busi-development")
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    # A pair is done when the recipe is still defined as it was measured.
    done = {(r["cohort"], r["recipe"], r["folds"], r["seed"]) for r in results if is_shipped(r)}
    with Progress(console=Console(stderr=True), transient=True) as progress:
        for cohort in args.cohorts:
            for recipe in recipes:
                if (cohort.name, recipe, args.folds, args.seed) in done:
                    continue
                results = [r for r in results if (r["cohort"], r["recipe"], r["folds"], r["seed"]) !=
                           (cohort.name, recipe, args.folds, args.seed)]
                results.append(cross_validate(cohort, recipe, args.folds, args.seed, args.threads, progress))
                print(line(results[-1]), flush=True)
                temporary = args.out.with_suffix(".tmp")
                temporary.write_text(json.dumps(results, indent=1))
                temporary.replace(args.out)
    for result in results:
        print(line(result))
    for summary in repeated(results) + rule_choices(results):
        print(summary)
    if args.markdown:
        print(markdown(results, args.reference))


if __name__ == "__main__":
    main()
