"""Numbers about a model: discrimination, the operating point, evidence shares, the model card.

AUCs and their DeLong intervals, Youden's threshold and the accuracy figures come from the
statistics engine (:mod:`model_build.stats`), so a bundle and a study report agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from model_build.models import evidential
from model_build.stats import StatsInputError, auc_ci, confusion_table, roc_auc, youden_threshold

if TYPE_CHECKING:
    from model_build.models.bundle import Bundle
    from model_build.models.data import Arrays
    from model_build.models.fusion import FusionOutput, Outputs

CONTRIBUTION_BOOTSTRAP = 2000


def modality_probabilities(outputs: Outputs, fusion: str) -> np.ndarray:
    """``(N, V)`` P(sarcopenia) from each modality's own head (its opinion alone)."""
    logits = outputs.logits.float()
    if fusion == "evidential":
        return evidential.expected_probability(evidential.evidence_from_logits(logits))[..., 1].numpy()
    return logits.softmax(dim=-1)[..., 1].numpy()


def classification_metrics(labels: np.ndarray, probability: np.ndarray, threshold: float) -> dict:
    """The ``metrics.json`` keys: n, n_positive, auc, auc_ci, sensitivity, specificity, accuracy,
    f1, threshold (positive when ``probability >= threshold``)."""
    labels = np.asarray(labels, dtype=int)
    table = confusion_table(labels, probability, threshold)
    tp, fp, fn, tn = table.true_positive, table.false_positive, table.false_negative, table.true_negative
    try:
        interval = auc_ci(labels, probability, method="delong")
        auc, ci = interval.auc, [interval.lower, interval.upper]
    except StatsInputError:  # DeLong needs 2 of each class; the AUC itself needs 1
        auc, ci = roc_auc(labels, probability), None
    return {
        "n": int(len(labels)), "n_positive": int(labels.sum()), "auc": auc, "auc_ci": ci,
        "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
        "accuracy": (tp + tn) / len(labels), "f1": 2 * tp / (2 * tp + fp + fn),
        "threshold": float(threshold),
    }


def per_modality_auc(labels: np.ndarray, probabilities: np.ndarray, present: np.ndarray,
                     modalities: list[str]) -> dict[str, float | None]:
    """Each head's AUC over the participants who have that modality (None if one class only)."""
    result: dict[str, float | None] = {}
    for view, modality in enumerate(modalities):
        rows = present[:, view]
        have_both = len(np.unique(labels[rows])) == 2
        result[modality] = roc_auc(labels[rows], probabilities[rows, view]) if have_both else None
    return result


def contribution_summary(predictions: pd.DataFrame, modalities: list[str], seed: int = 0) -> dict:
    """The study-level "contribution": mean share of each modality's evidence for class k over
    participants whose true class is k, with a 95% percentile bootstrap interval."""
    rng = np.random.default_rng(seed)
    labelled = predictions[predictions["label"].notna()]
    summary: dict = {}
    for modality in modalities:
        column = f"contribution_{modality}"
        if labelled[column].isna().all():
            continue
        summary[modality] = {}
        for klass, name in ((1, "sarcopenia"), (0, "non_sarcopenia")):
            shares = labelled.loc[labelled["label"] == klass, column].to_numpy(dtype=float)
            if shares.size == 0:
                continue
            means = rng.choice(shares, size=(CONTRIBUTION_BOOTSTRAP, shares.size)).mean(axis=1)
            summary[modality][name] = {"mean": float(shares.mean()),
                                       "ci": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]}
    return summary


def choose_threshold(labels: np.ndarray, probability: np.ndarray) -> dict:
    """Youden's J on the inner validation split; 0.5 when it cannot separate the classes."""
    try:
        chosen = youden_threshold(labels, probability).to_dict()
    except StatsInputError as error:
        return {"value": 0.5, "rule": "default", "target": None, "development_sensitivity": None,
                "development_specificity": None, "note": str(error)}
    return {**chosen, "chosen_on": f"inner validation split ({len(labels)} participants)"}


def validation_metrics(held_out: Arrays, outputs: Outputs, fused: FusionOutput, modalities: list[str],
                       fusion: str) -> tuple[dict, dict]:
    """Metrics on the inner validation split and the threshold chosen there."""
    labels = held_out.labels
    threshold = choose_threshold(labels, fused.probability)
    metrics = {"validation": classification_metrics(labels, fused.probability, threshold["value"]),
               "validation_per_modality_auc": per_modality_auc(
                   labels, modality_probabilities(outputs, fusion), held_out.present, modalities)}
    return metrics, threshold


def model_card(bundle: Bundle) -> str:
    """A short, honest description of the model for whoever deploys or audits it."""
    training, config = bundle.training, bundle.config
    validation = training["metrics"]["validation"]
    per_modality = training["metrics"]["validation_per_modality_auc"]
    lines = [
        "# Model card: sarco sarcopenia screening model", "",
        "## What it does",
        "Estimates the probability that a participant has sarcopenia (AWGS 2019 / EWGSOP2, as the "
        "training labels were defined) from " + ", ".join(config.modalities) + " data, with fusion "
        f"`{config.fusion}`. It is a screening aid, not a diagnosis: a positive result calls for the "
        "reference measurements (grip strength, gait speed, muscle mass).", "",
        "## Model",
        f"- Modalities: {', '.join(config.modalities)}; fusion: {config.fusion}",
    ]
    if "image" in config.modalities:
        options = training["options"]
        start = f"from `{Path(options['image_weights']).name}`" if options.get("image_weights") else \
            "ImageNet-initialised" if options["pretrained"] else "from scratch"
        mirror = "; each image scored as the mean of it and its mirror" if config.flip_average else ""
        lines += [f"- Image network: {config.backbone}, {config.image_size} px grey input ({start}){mirror}; "
                  "several images per participant are pooled as the mean of their logits",
                  "- Device graph: `model.onnx` (the image branch), see docs/model-bundle.md"]
    members = training.get("members")
    if members:
        lines += [f"- Ensemble of {len(members)} networks trained on cross-fitted folds of the training "
                  "participants; the graph outputs the mean of their logits (docs/models.md)"]
    split = "out-of-fold predictions of the ensemble's members" if members else \
        "inner validation split of the training cohort"
    lines += [
        f"- Decision threshold: {bundle.threshold:.4f} ({training['threshold']['rule']}, chosen on the "
        f"{bundle.operating_point['chosen_on'] if bundle.operating_point else split})", "",
        "## Training data",
        f"- Cohort `{training['cohort']}`, subset `{training['train_cohort']}`: " + (
            f"{training['participants']['train']} participants, each held out by one member for early "
            f"stopping and the threshold" if members else
            f"{training['participants']['train']} participants for training and "
            f"{training['participants']['validation']} held out for early stopping and the threshold")
        + f" ({training['participants']['positive']} with sarcopenia in all); {training['images']} images or frames",
        f"- Data hash (SHA-256 of the rows and files used): `{training['data_hash']}`",
        f"- Seed {training['seed']}; " + (
            "epochs run per member " + ", ".join(f"{m['epochs_run']} (best {m['best_epoch']})" for m in members)
            if members else f"{training['epochs_run']} epochs run, best epoch {training['best_epoch']}"), "",
        f"## Performance on the {split}" if members else "## Performance on the inner validation split",
        f"- AUC {validation['auc']:.3f} ({_interval(validation['auc_ci'])}), "
        f"sensitivity {validation['sensitivity']:.3f}, specificity {validation['specificity']:.3f} "
        f"(n = {validation['n']}, {validation['n_positive']} positive)",
        "- Each modality alone: " + ", ".join(
            f"{m} {'n/a' if auc is None else f'{auc:.3f}'}" for m, auc in per_modality.items()),
        "- These are optimistic (the same split chose the epoch and the threshold): judge the model "
        "on an external cohort with `sarco evaluate`.", "",
        "## Limits",
        "- Trained on one population and its scanners; other scanners, muscles or protocols can "
        "shift the scores. Check calibration and the threshold on local data before use.",
        "- The uncertainty (evidential fusion) is the Dirichlet vacuity K/S: high when the "
        "evidence is weak, e.g. a poor image or missing modalities. It is not a calibrated error bar.",
        "- If this model was trained on a synthetic cohort (`sarco synth`), its numbers say nothing "
        "about real patients.", "",
    ]
    return "\n".join(lines)


def _interval(ci: list[float] | None) -> str:
    return "no CI: too few participants" if ci is None else f"95% CI {ci[0]:.3f}-{ci[1]:.3f}"
