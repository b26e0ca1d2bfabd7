"""Pooled, federated and single-site training of one network on a consortium (issue #19, item 5).

`sarco federated compare CONSORTIUM --out DIR` trains the same network three ways:
- **pooled**: every site's participants on one machine (:mod:`.pooled`), the upper reference a
  consortium cannot run;
- **federated**: :func:`.simulate.simulate`, one run per strategy;
- **each site alone**;
then evaluates every model with `sarco evaluate`'s code on each labelled cohort of
CONSORTIUM/evaluation (the validation cohorts: touched here, once, after every choice). Paired
DeLong tests (same participants) set every arm against pooled and each federation against every
site alone. The federation the targets are read from is the one with the lowest log loss of its
last global model on the sites' inner validation splits: a development-only choice.

On a synthetic consortium (``truth.csv`` beside the evaluation cohorts) the Bayes oracle of the
same modalities joins the table as a last row, tested like a federation: how far any training
could go on these participants, and whether even it is better than the median site at P < 0.05.

Same options everywhere (:func:`.simulate.federation_options`); the references train as many
epochs as a site does (rounds x local epochs), with `sarco train`'s early stopping on their own
inner validation split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from model_build.federated import STRATEGIES
from model_build.federated.pooled import pool_sites
from model_build.federated.simulate import FederationError, federation_options, simulate
from model_build.stats import auc_ci
from model_build.stats.delong import compare_auc
from sarco_core.files import atomic_write, write_json

DEVELOPMENT = "development"
ORACLE = "Bayes oracle (truth.csv)"
ORACLE_COLUMNS = {("image",): "p_image", ("clinical",): "p_clinical", ("lab",): "p_lab",
                  ("clinical", "image", "lab"): "p_all"}  # truth.csv's Bayes-optimal probabilities
CLOSE_TO_POOLED = 0.01  # issue #19's target: the federation's AUC within 0.01 of pooled
ALPHA = 0.05


@dataclass(frozen=True)
class CompareOptions:
    rounds: int = 8
    local_epochs: int = 4
    strategies: tuple[str, ...] = ("fedavg",)
    modalities: tuple[str, ...] = ("image",)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            raise FederationError(f"strategies {list(self.strategies)}; fix: use {', '.join(STRATEGIES)}")


def consortium_parts(consortium: Path) -> tuple[list[Path], Path, list[str]]:
    """The site folders, the evaluation folder and its labelled cohorts, or what is missing."""
    sites = sorted(p for p in (consortium / "sites").glob("*") if (p / "participants.csv").is_file())
    evaluation = consortium / "evaluation"
    if len(sites) < 2 or not (evaluation / "participants.csv").is_file():
        raise FederationError(f"{consortium}: a consortium folder holds sites/<site>/ (at least 2 cohort folders) and "
                              "evaluation/; fix: write one with `sarco synth OUT --size consortium`, or lay your "
                              "cohorts out that way")
    participants = pd.read_csv(evaluation / "participants.csv", dtype={"label": "string"})
    labelled = participants[participants["label"].notna() & (participants["cohort"] != DEVELOPMENT)]
    cohorts = list(dict.fromkeys(labelled["cohort"]))
    if not cohorts:
        raise FederationError(f"{evaluation}/participants.csv: no labelled participant outside `development`; fix: "
                              "put the validation cohorts (e.g. external, poc) there")
    return sites, evaluation, cohorts


def compare(consortium: Path, out: Path, options: CompareOptions, progress: Progress | None = None) -> dict:
    """Train and evaluate every arm; comparison.json's content (written to ``out`` with the
    table as comparison.md)."""
    from model_build.models.evaluation import run_evaluation
    from model_build.models.train import train

    progress = progress or Progress(disable=True)
    sites, evaluation, cohorts = consortium_parts(consortium)
    training = replace(federation_options(list(options.modalities), options.seed),
                       epochs=options.rounds * options.local_epochs, threads=2)
    out.mkdir(parents=True, exist_ok=True)

    def fit(cohort: Path, where: Path) -> dict:
        train(cohort, where, training, progress=progress)
        return {}

    def federate(strategy: str) -> dict:
        result = simulate(sites, out / strategy, out / f"{strategy}.federation", replace(training, threads=1),
                          rounds=options.rounds, local_epochs=options.local_epochs, strategy=strategy)
        sent = result.sent()
        return {"strategy": strategy, "validation_log_loss": last_round_loss(sent),
                "bytes_per_site_round": int(np.median([r["bytes"] for rows in sent.values() for r in rows]))}

    arms = [_timed("pooled", out / "pooled", lambda: fit(pool_sites(sites, out / "pooled-cohort"), out / "pooled"))]
    arms += [_timed(f"federated ({s})", out / s, lambda s=s: federate(s)) for s in options.strategies]
    arms += [_timed(f"site {site.name} alone", out / f"site-{site.name}",
                    lambda site=site: fit(site, out / f"site-{site.name}")) for site in sites]
    predictions = {}
    for arm in arms:
        arm["cohorts"], predictions[arm["arm"]] = {}, {}
        for cohort in cohorts:
            where = Path(arm["bundle"] + ".evaluation") / cohort
            metrics = run_evaluation(Path(arm["bundle"]), evaluation, cohort, where, 1, "cpu", progress)
            table = pd.read_csv(where / "predictions.csv")
            predictions[arm["arm"]][cohort] = table[table["label"].notna()]
            arm["cohorts"][cohort] = {"auc": metrics["auc"], "auc_ci": metrics["auc_ci"], "n": metrics["n"]}
    oracle = oracle_predictions(evaluation, options.modalities, predictions["pooled"])
    if oracle is not None:
        predictions[ORACLE] = oracle
        arms.append({"arm": ORACLE, "oracle": True, "cohorts": {cohort: _auc(oracle[cohort]) for cohort in cohorts}})
    _tests(arms, predictions, cohorts)
    result = {"consortium": str(consortium.resolve()), "options": asdict(options),
              "sites": {site.name: _participants(site) for site in sites}, "cohorts": cohorts, "arms": arms,
              "targets": targets(arms, cohorts)}
    write_json(out / "comparison.json", result)
    atomic_write(out / "comparison.md", table_markdown(result) + "\n")
    return result


def _timed(arm: str, bundle: Path, work: Callable[[], dict]) -> dict:
    started = time.perf_counter()
    extra = work()
    return {"arm": arm, "bundle": str(bundle), "train_seconds": round(time.perf_counter() - started, 1), **extra}


def oracle_predictions(evaluation: Path, modalities: tuple[str, ...], like: dict[str, pd.DataFrame]
                       ) -> dict[str, pd.DataFrame] | None:
    """Per cohort, the Bayes oracle's probability for ``modalities`` on the participants of
    ``like`` (an arm's predictions), or None without ``truth.csv`` or an oracle of these modalities."""
    column = ORACLE_COLUMNS.get(tuple(sorted(modalities)))
    truth_path = evaluation / "truth.csv"
    if column is None or not truth_path.is_file():
        return None
    truth = pd.read_csv(truth_path, dtype={"participant_id": str})[["participant_id", column]]
    found = {}
    for cohort, table in like.items():
        rows = table[["participant_id", "label"]].astype({"participant_id": str}).merge(truth, on="participant_id")
        if len(rows) != len(table):
            return None
        found[cohort] = rows.rename(columns={column: "probability"})
    return found


def _auc(predictions: pd.DataFrame) -> dict:
    interval = auc_ci(predictions["label"].astype(int), predictions["probability"], method="delong")
    return {"auc": interval.auc, "auc_ci": [interval.lower, interval.upper], "n": len(predictions)}


def _participants(site: Path) -> int:
    participants = pd.read_csv(site / "participants.csv", dtype={"label": "string"})
    return int((participants["label"].notna() & (participants["cohort"] == DEVELOPMENT)).sum())


def last_round_loss(sent: dict[str, list[dict]]) -> float:
    """The last global model's log loss on the sites' inner validation splits, weighted by their
    participants (each site reports it for the model it receives; :meth:`.simulate.Federation.sent`):
    development data only."""
    last = [rows[-1] for rows in sent.values()]
    return float(np.average([row["validation_log_loss"] for row in last],
                            weights=[row["participants"] for row in last]))


def paired(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """Paired DeLong test of two models' predictions on the same participants (a - b)."""
    both = a.merge(b, on="participant_id", suffixes=("", "_other"))
    test = compare_auc(both["label"].astype(int), both["probability"], both["probability_other"])
    return {"difference": test.difference, "lower": test.lower, "upper": test.upper, "p": test.p}


def _tests(arms: list[dict], predictions: dict, cohorts: list[str]) -> None:
    pooled = arms[0]["arm"]
    sites = [arm["arm"] for arm in arms if arm["arm"].startswith("site ")]
    for arm in arms[1:]:
        for cohort in cohorts:
            found = arm["cohorts"][cohort]
            found["vs_pooled"] = paired(predictions[arm["arm"]][cohort], predictions[pooled][cohort])
            if "strategy" in arm or arm.get("oracle"):
                found["vs_sites"] = {site: paired(predictions[arm["arm"]][cohort], predictions[site][cohort])
                                     for site in sites}


def targets(arms: list[dict], cohorts: list[str]) -> dict:
    """Issue #19's targets, read from the federation chosen on development (lowest validation
    loss): per cohort, within CLOSE_TO_POOLED of pooled (not worse by more), and better than the
    median site alone with P < ALPHA (against each site at or next to the median)."""
    federations = [arm for arm in arms if "strategy" in arm]
    chosen = min(federations, key=lambda arm: arm["validation_log_loss"])
    sites = [arm for arm in arms if arm["arm"].startswith("site ")]
    oracle = next((arm for arm in arms if arm.get("oracle")), None)
    found = {"federation": chosen["arm"], "chosen_by": "lowest validation log loss of the last global model"}
    for cohort in cohorts:
        ranked = sorted(sites, key=lambda arm: arm["cohorts"][cohort]["auc"])
        middle = {ranked[(len(ranked) - 1) // 2]["arm"], ranked[len(ranked) // 2]["arm"]}
        tests = chosen["cohorts"][cohort]["vs_sites"]
        found[cohort] = {
            "difference_vs_pooled": chosen["cohorts"][cohort]["vs_pooled"]["difference"],
            "within_pooled": chosen["cohorts"][cohort]["vs_pooled"]["difference"] >= -CLOSE_TO_POOLED,
            "median_sites": sorted(middle),
            "beats_median_site": all(tests[s]["difference"] > 0 and tests[s]["p"] < ALPHA for s in middle),
            "beats_sites": sorted(s for s, t in tests.items() if t["difference"] > 0 and t["p"] < ALPHA)}
        if oracle is not None:
            versus = oracle["cohorts"][cohort]["vs_sites"]
            found[cohort]["oracle_auc"] = oracle["cohorts"][cohort]["auc"]
            found[cohort]["oracle_beats_median_site"] = all(versus[s]["difference"] > 0 and versus[s]["p"] < ALPHA
                                                            for s in middle)
    return found


def table_markdown(result: dict) -> str:
    """The comparison as a Markdown table (AUC [95 % CI], P against pooled) per cohort."""
    cohorts = result["cohorts"]
    header = ["arm", "participants", "training s"] + [f"{c} {h}" for c in cohorts
                                                      for h in ("AUC [95 % CI]", "P vs pooled")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in result["arms"]:
        site = arm["arm"].removeprefix("site ").removesuffix(" alone")
        n = result["sites"][site] if arm["arm"].startswith("site ") else sum(result["sites"].values())
        cells = [arm["arm"], "", ""] if arm.get("oracle") else [arm["arm"], str(n), f"{arm['train_seconds']:.0f}"]
        for cohort in cohorts:
            found = arm["cohorts"][cohort]
            low, high = found["auc_ci"]
            p = found.get("vs_pooled", {}).get("p")
            cells += [f"{found['auc']:.3f} [{low:.3f}-{high:.3f}]", "" if p is None else _p(p)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"
