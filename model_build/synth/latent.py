"""The latent model behind a synthetic cohort, and its Bayes oracle.

Given the label y, the nine latent variables z (three per modality: image, clinical, lab) are
Gaussian with a class-dependent mean and one shared covariance. The covariance comes from a
single "frailty" factor that loads on every latent: it correlates the modalities, so that
combining them helps less than it would if they were independent (as in real patients, where
a frail person is frail in every measurement). Every latent is oriented so that larger means
"more sarcopenia-like".

Because the densities are known, the Bayes-optimal probability of sarcopenia given any subset
of latents is computed exactly, and so is its population AUC (Phi(Delta / sqrt 2) with Delta
the Mahalanobis distance between the class means). :meth:`LatentModel.calibrated` solves for
the class separations and the frailty loading that give chosen oracle AUCs, so the difficulty
is set by four numbers rather than by hand-tuned constants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit, logit
from scipy.stats import multivariate_normal, norm

MODALITY_LATENTS: dict[str, tuple[str, ...]] = {
    "image": ("atrophy", "echo", "blur"),
    "clinical": ("age", "leanness", "comorbidity"),
    "lab": ("malnutrition", "inflammation", "low_muscle_marker"),
}
"""Latent variables per modality (truth.csv names them ``z_<modality>_<name>``)."""

# Relative class separation of the latents inside each modality: which latent carries most of
# that modality's signal. Only the ratios matter; the overall scale is calibrated.
_SEPARATION_SHAPE: dict[str, tuple[float, ...]] = {
    "image": (1.0, 1.0, 0.8),
    "clinical": (1.0, 0.8, 0.6),
    "lab": (1.0, 0.6, 0.8),
}

ORACLE_MODALITIES: tuple[str, ...] = (*MODALITY_LATENTS, "all")
"""What the oracle is given: one modality's latents, or all of them."""

LATENT_COLUMNS: tuple[str, ...] = tuple(
    f"z_{modality}_{name}" for modality, names in MODALITY_LATENTS.items() for name in names
)


@dataclass(frozen=True)
class OracleTargets:
    """Population AUCs of the Bayes-optimal classifier given each modality and all of them.

    Defaults are near the study's difficulty (image 0.87, clinical 0.78, lab 0.75, all 0.90).
    """

    image: float = 0.87
    clinical: float = 0.78
    lab: float = 0.75
    all: float = 0.90

    def as_dict(self) -> dict[str, float]:
        return {"image": self.image, "clinical": self.clinical, "lab": self.lab, "all": self.all}


@dataclass(frozen=True)
class LatentSample:
    """Latents of n participants: ``z`` (n x 9, columns :data:`LATENT_COLUMNS`) and the frailty."""

    z: np.ndarray
    frailty: np.ndarray


@dataclass(frozen=True)
class LatentModel:
    """z | y ~ N(mu_y, Sigma) with mu_y = (y - 1/2) * separation and
    Sigma = loading^2 * 11' + (1 - loading^2) * I (unit variances)."""

    separation: tuple[float, ...]
    frailty_loading: float

    @classmethod
    def calibrated(cls, targets: OracleTargets = OracleTargets()) -> LatentModel:
        """Solve for the per-modality separation scales and the frailty loading that give
        ``targets`` as population oracle AUCs (four equations, four unknowns)."""
        wanted = np.array([targets.image, targets.clinical, targets.lab, targets.all])
        if not np.all((wanted > 0.5) & (wanted < 1.0)):
            raise ValueError(f"oracle AUC targets must lie in (0.5, 1); got {targets}")

        def model_from(params: np.ndarray) -> LatentModel:
            scales = np.exp(params[:3])
            separation = np.concatenate([
                scale * np.asarray(_SEPARATION_SHAPE[modality])
                for scale, modality in zip(scales, MODALITY_LATENTS)
            ])
            return cls(tuple(float(s) for s in separation), float(np.tanh(params[3])))

        def residual(params: np.ndarray) -> np.ndarray:
            aucs = model_from(params).population_aucs()
            return np.array([aucs[k] for k in ("image", "clinical", "lab", "all")]) - wanted

        solution = least_squares(residual, x0=np.array([0.0, 0.0, 0.0, 0.5]), xtol=1e-12, ftol=1e-12)
        if np.max(np.abs(solution.fun)) > 1e-4:
            raise ValueError(
                f"no latent model reaches the oracle AUC targets {targets.as_dict()} "
                f"(closest: {np.round(solution.fun + wanted, 4).tolist()}); the combined target "
                "must exceed each single-modality target, by less than independent modalities would give"
            )
        return model_from(solution.x)

    @property
    def covariance(self) -> np.ndarray:
        size = len(self.separation)
        shared = self.frailty_loading ** 2
        return shared * np.ones((size, size)) + (1.0 - shared) * np.eye(size)

    def class_mean(self, label: int) -> np.ndarray:
        return (label - 0.5) * np.asarray(self.separation)

    def sample(self, labels: np.ndarray, rng: np.random.Generator) -> LatentSample:
        """Draw z for each label through the explicit factor form (frailty + independent part)."""
        labels = np.asarray(labels)
        frailty = rng.standard_normal(len(labels))
        unique = rng.standard_normal((len(labels), len(self.separation)))
        loading = self.frailty_loading
        means = (labels[:, None] - 0.5) * np.asarray(self.separation)[None, :]
        z = means + loading * frailty[:, None] + np.sqrt(1.0 - loading ** 2) * unique
        return LatentSample(z=z, frailty=frailty)

    def _columns(self, modality: str) -> np.ndarray:
        if modality == "all":
            return np.arange(len(LATENT_COLUMNS))
        return np.array([i for i, name in enumerate(LATENT_COLUMNS) if name.startswith(f"z_{modality}_")])

    def log_likelihood_ratio(self, z: np.ndarray, modality: str) -> np.ndarray:
        """log p(z_modality | y=1) - log p(z_modality | y=0), from the Gaussian densities."""
        columns = self._columns(modality)
        covariance = self.covariance[np.ix_(columns, columns)]
        values = np.asarray(z)[:, columns]
        positive = multivariate_normal(self.class_mean(1)[columns], covariance).logpdf(values)
        negative = multivariate_normal(self.class_mean(0)[columns], covariance).logpdf(values)
        return np.atleast_1d(positive - negative)

    def posterior(self, z: np.ndarray, modality: str, prior: float) -> np.ndarray:
        """Bayes-optimal P(y = 1 | z_modality) for a cohort whose prevalence is ``prior``."""
        return expit(logit(prior) + self.log_likelihood_ratio(z, modality))

    def population_aucs(self) -> dict[str, float]:
        """Exact oracle AUC per modality: Phi(Mahalanobis distance / sqrt 2)."""
        separation = np.asarray(self.separation)
        aucs = {}
        for modality in ORACLE_MODALITIES:
            columns = self._columns(modality)
            delta = separation[columns]
            distance = np.sqrt(delta @ np.linalg.solve(self.covariance[np.ix_(columns, columns)], delta))
            aucs[modality] = float(norm.cdf(distance / np.sqrt(2.0)))
        return aucs
