"""How close any model can get to the synthetic cohort's oracle: observation ceilings.

The oracle AUC (truth.csv) is computed from the latent variables. Models never see them: the
images are rendered from per-muscle parameters that also carry the person's anatomy, sex and
probe placement, and each clinical or lab column adds measurement noise. So for each modality
this prints three figures on a large simulated population drawn exactly as `sarco synth` draws
participants (latents, sex, the stills each participant gets, their rendering parameters, the
clinical and lab columns with missing values):

- **oracle**: Bayes-optimal AUC from the latents (what the models' targets are measured against);
- **observation ceiling**: a gradient-boosting classifier trained on half of the population, on
  the *exact* observations (every still's muscle thickness, echo intensity, fascicle contrast
  and pennation before any pixel is drawn; the columns as written). A pixel model must also
  estimate those parameters through speckle, gain and scanner, so it can only do worse;
- **at development size**: a logistic regression with cross-validated L2 penalty on the same
  exact observations, trained on development-sized samples (357 participants, 101 positive:
  the development cohort of the paper and large sizes) and tested on the held-out population;
  mean and SD over repeats. This is what a perfect feature reader reaches with the training
  data the models get.

    .venv/bin/python benchmarks/bench_synth_ceiling.py [--n 100000] [--repeats 30] [--seed 0]

Docs: docs/models.md ("How close a model can get").
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table
from scipy.special import logit
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model_build.synth.cohorts import MISSING_FRACTION, PAPER
from model_build.synth.latent import LATENT_COLUMNS, MODALITY_LATENTS, LatentModel
from model_build.synth.media import ANATOMY, participant_muscle, still_plan
from model_build.synth.tabular import TABULAR_SCHEMA, add_missing_values, clinical_and_lab, draw_sex

DEVELOPMENT = PAPER[0]
IMAGE_LATENTS = [LATENT_COLUMNS.index(f"z_image_{name}") for name in MODALITY_LATENTS["image"]]


def image_observations(z: np.ndarray, sex: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per participant and muscle: the mean over its stills of log thickness, echo logit,
    contrast logit and log relative pennation, and the number of stills (NaN when none)."""
    rows = []
    for latents, person_sex in zip(z[:, IMAGE_LATENTS], sex):
        muscles, views = {}, {name: [] for name in ANATOMY}
        for muscle, _ in still_plan(rng):
            if muscle not in muscles:
                muscles[muscle] = participant_muscle(muscle, str(person_sex), tuple(latents), rng)
            view, anatomy = muscles[muscle].view(rng), ANATOMY[muscle]
            views[muscle].append([np.log(view.muscle_thickness_mm), logit(view.echo_intensity) - anatomy.echo_offset,
                                  logit(view.fascicle_contrast), np.log(view.pennation_deg / anatomy.pennation_deg)])
        row = []
        for name in ANATOMY:
            row += [*np.mean(views[name], axis=0), len(views[name])] if views[name] else [np.nan] * 4 + [0]
        rows.append(row)
    return np.asarray(rows, dtype=float)


def population(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Labels, each modality's observations and each modality's oracle log likelihood ratio."""
    rng = np.random.default_rng(seed)
    model = LatentModel.calibrated()
    labels = (rng.random(n) < DEVELOPMENT.prevalence).astype(int)
    z = model.sample(labels, rng).z
    sex = draw_sex(n, rng)
    table = add_missing_values(clinical_and_lab(z, sex, rng), rng, MISSING_FRACTION)
    table["sex"] = (table["sex"] == "M").astype(float)
    table = table.astype(float)
    columns = {role: [name for name, spec in TABULAR_SCHEMA.items() if spec.role == role]
               for role in ("clinical", "lab")}
    observed = {"image": image_observations(z, sex, rng),
                "clinical": table[columns["clinical"]].to_numpy(), "lab": table[columns["lab"]].to_numpy()}
    observed["all"] = np.hstack(list(observed.values()))
    oracle = {modality: model.log_likelihood_ratio(z, modality) for modality in observed}
    return labels, observed, oracle


def development_sized_auc(x: np.ndarray, labels: np.ndarray, test: np.ndarray, pool: np.ndarray,
                          repeats: int, seed: int) -> np.ndarray:
    """Test AUC of a penalised logistic regression trained on ``repeats`` development-sized draws."""
    aucs = []
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, repeat])
        positives = rng.choice(pool[labels[pool] == 1], DEVELOPMENT.n_positive, replace=False)
        negatives = rng.choice(pool[labels[pool] == 0], DEVELOPMENT.n_participants - DEVELOPMENT.n_positive,
                               replace=False)
        train = np.concatenate([positives, negatives])
        model = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler(),
                              LogisticRegressionCV(Cs=np.logspace(-3, 1, 9), cv=5, scoring="roc_auc",
                                                   l1_ratios=(0.0,), use_legacy_attributes=False, max_iter=2000))
        aucs.append(roc_auc_score(labels[test], model.fit(x[train], labels[train]).predict_proba(x[test])[:, 1]))
    return np.asarray(aucs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="simulated participants (half train, half test)")
    parser.add_argument("--repeats", type=int, default=30, help="development-sized training draws")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    labels, observed, oracle = population(args.n, args.seed)
    pool, test = np.arange(args.n // 2), np.arange(args.n // 2, args.n)
    table = Table(title=f"Ceilings on {len(test):,} simulated participants (oracle from the latents)")
    for column in ("modality", "oracle", "observation ceiling", "gap", "at development size (SD)", "gap"):
        table.add_column(column, justify="left" if column == "modality" else "right")
    for modality in track(list(observed), description="fitting"):
        x = observed[modality]
        ceiling_model = HistGradientBoostingClassifier(max_iter=500, learning_rate=0.05, random_state=args.seed)
        ceiling = roc_auc_score(labels[test], ceiling_model.fit(x[pool], labels[pool]).predict_proba(x[test])[:, 1])
        best = roc_auc_score(labels[test], oracle[modality][test])
        small = development_sized_auc(x, labels, test, pool, args.repeats, args.seed)
        table.add_row(modality, f"{best:.4f}", f"{ceiling:.4f}", f"{best - ceiling:.4f}",
                      f"{small.mean():.4f} ({small.std():.4f})", f"{best - small.mean():.4f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
