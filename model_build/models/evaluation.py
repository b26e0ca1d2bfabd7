"""A bundle's performance on one cohort of a cohort folder: what `sarco evaluate` reports.

Writes ``OUT/metrics.json`` (n, n_positive, auc, auc_ci, sensitivity, specificity, accuracy, f1,
threshold, plus each modality's AUC, the evidence shares and, for synthetic cohorts, the oracle
AUCs from truth.csv) and ``OUT/predictions.csv`` (participant_id, label, probability,
uncertainty, contribution_<modality>). The threshold is the bundle's, frozen on development
data; nothing is tuned on the evaluated cohort. Here, not in the command, so that the
benchmarks and the federated comparison evaluate exactly as the command does.
"""

from __future__ import annotations

from pathlib import Path

PREDICTION_COLUMNS = ("participant_id", "label", "probability", "uncertainty")


def run_evaluation(model: Path, cohort_path: Path, cohort_name: str, out: Path, threads: int | None,
                   device_name: str, progress) -> dict:
    import torch

    from model_build.cohort import load_cohort
    from model_build.models import InputError
    from model_build.models.bundle import load_bundle
    from model_build.models.data import available_cores, count_media
    from model_build.models.predict import predict_cohort
    from model_build.models.report import classification_metrics, contribution_summary
    from model_build.models.train import choose_device
    from sarco_core.files import atomic_write, write_json

    torch.set_num_threads(threads or available_cores())
    device = choose_device(device_name)
    bundle = load_bundle(model)
    cohort = load_cohort(cohort_path)
    participants = cohort.participants
    frame = participants[participants["cohort"] == cohort_name]
    if frame.empty:
        names = ", ".join(sorted(participants["cohort"].unique()))
        raise InputError(f"{cohort_path}/participants.csv: no participant has cohort {cohort_name!r} "
                            f"(cohorts: {names}); fix: pass --cohort with one of them")
    ids = frame["participant_id"].tolist()
    total = count_media(cohort, ids) if "image" in bundle.config.modalities else 0
    task = progress.add_task("predicting", total=total or None, visible=total > 0)
    predictions = predict_cohort(bundle.model.to(device), bundle.config.fusion, bundle.stacker, bundle.threshold,
                                 cohort, frame, bundle.encoders, bundle.preprocessor, bundle.frames_per_video,
                                 device, lambda n: progress.advance(task, n))
    progress.remove_task(task)
    labelled = predictions[predictions["label"].notna()]
    if labelled["label"].nunique() < 2:
        raise InputError(f"cohort {cohort_name!r} needs labelled participants of both classes to be "
                            "evaluated; fix: use `sarco predict`, or label the cohort (`sarco label`)")
    labels = labelled["label"].astype(int).to_numpy()
    modalities = bundle.config.modalities
    metrics = classification_metrics(labels, labelled["probability"].to_numpy(), bundle.threshold)
    metrics.update({
        "cohort": cohort_name, "model": str(model), "fusion": bundle.config.fusion, "modalities": modalities,
        "n_unlabelled": int(len(predictions) - len(labelled)),
        "per_modality_auc": _per_modality_auc(labelled, modalities),
        "modality_coverage": {m: float(predictions[f"probability_{m}"].notna().mean()) for m in modalities},
        "contributions": contribution_summary(predictions, modalities),
        "missing_columns": sorted(c for e in bundle.encoders.values() for c in e.columns
                                  if c not in participants.columns),
    })
    oracle = _oracle_auc(cohort_path, labelled)
    if oracle:
        metrics["oracle_auc"] = oracle
    out.mkdir(parents=True, exist_ok=True)
    columns = [*PREDICTION_COLUMNS, *(f"contribution_{m}" for m in modalities)]
    atomic_write(out / "predictions.csv", predictions[columns].to_csv(index=False))
    write_json(out / "metrics.json", metrics)
    return metrics


def _per_modality_auc(labelled, modalities: list[str]) -> dict[str, float | None]:
    from model_build.stats import roc_auc

    result = {}
    for modality in modalities:
        rows = labelled[labelled[f"probability_{modality}"].notna()]
        both = rows["label"].nunique() == 2
        result[modality] = roc_auc(rows["label"].astype(int), rows[f"probability_{modality}"]) if both else None
    return result


def _oracle_auc(cohort_path: Path, labelled) -> dict[str, float]:
    """Synthetic cohorts: the Bayes-optimal AUC of each modality on the same participants."""
    import pandas as pd

    from model_build.stats import roc_auc

    truth_path = cohort_path / "truth.csv"
    if not truth_path.is_file():
        return {}
    truth = pd.read_csv(truth_path, dtype={"participant_id": str})
    merged = labelled[["participant_id", "label"]].merge(truth, on="participant_id", how="inner")
    if len(merged) != len(labelled):
        return {}
    return {column.removeprefix("p_"): roc_auc(merged["label"].astype(int), merged[column])
            for column in ("p_image", "p_clinical", "p_lab", "p_all") if column in merged}
