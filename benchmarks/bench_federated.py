"""Pooled, federated and single-site training of one model on a consortium, judged on its evaluation cohorts.

    PYTHONPATH=. python benchmarks/bench_federated.py CONSORTIUM --out DIR [--rounds 8] [--local-epochs 1]
        [--strategy fedavg --strategy fedprox] [--modalities image] [--seed 0]

CONSORTIUM is `sarco synth OUT --size consortium` (OUT/sites/<center>/ and OUT/evaluation/).
Three ways to train the same network with the same options (`federation_options`: the study's
image settings without the weight average; ROUNDS epochs):
- pooled: every site's participants on one machine (`model_build.federated.pooled`), the upper
  reference a consortium cannot run;
- federated: `sarco federated simulate`'s code, one run per strategy;
- each site alone.
Every model is evaluated with `sarco evaluate`'s code on the external and poc cohorts; the table
gives the AUC with its DeLong 95 % CI, the paired DeLong P value against pooled (same
participants), the training wall time, and for the federation the bytes each site sent per
round. Everything is also written to DIR/bench.json.

The targets (issue #19): the best federated strategy's external AUC within 0.01 of pooled, and
above the median single site with paired DeLong P < 0.05; a 6-site simulation with the default
rounds in <= 20 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import Progress

from model_build.commands.evaluate import run_evaluation
from model_build.federated.pooled import pool_sites
from model_build.federated.simulate import federation_options, simulate
from model_build.models.train import train
from model_build.stats.delong import compare_auc

COHORTS = ("external", "poc")


def evaluate(bundle: Path, evaluation: Path, out: Path) -> dict:
    """AUC, CI and the predictions of ``bundle`` on each evaluation cohort."""
    found = {}
    with Progress(console=Console(stderr=True), transient=True) as progress:
        for cohort in COHORTS:
            metrics = run_evaluation(bundle, evaluation, cohort, out / cohort, 1, "cpu", progress)
            predictions = pd.read_csv(out / cohort / "predictions.csv")
            found[cohort] = {"auc": metrics["auc"], "auc_ci": metrics["auc_ci"], "n": metrics["n"],
                             "predictions": predictions[predictions["label"].notna()]}
    return found


def trained(arm: str, work, out: Path) -> dict:  # noqa: ANN001
    started = time.perf_counter()
    extra = work()
    return {"arm": arm, "bundle": str(out), "train_seconds": time.perf_counter() - started, **(extra or {})}


def last_round_loss(result) -> float:  # noqa: ANN001
    """The global model's log loss on the sites' inner validation splits in the last round,
    weighted by their participants: a development-only score (no evaluation participant)."""
    last = [torch.load(result.site_folders / name / f"sent-round-{result.rounds - 1}.pt", weights_only=True)
            for name in result.sites]
    return float(np.average([s["metrics"]["validation_log_loss"] for s in last],
                            weights=[s["participants"] for s in last]))


def paired(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """Paired DeLong test of two models' predictions on the same participants (a - b)."""
    both = a.merge(b, on="participant_id", suffixes=("", "_other"))
    test = compare_auc(both["label"].astype(int), both["probability"], both["probability_other"])
    return {"difference": test.difference, "p": test.p}


def compare_arms(arms: list[dict]) -> None:
    """Every arm against pooled; each federation also against every site alone (the target:
    better than the median site with P < 0.05)."""
    pooled, sites = arms[0], [arm for arm in arms if arm["arm"].startswith("site ")]
    for arm in arms[1:]:
        for cohort in COHORTS:
            found = arm["evaluation"][cohort]
            found["vs_pooled"] = paired(found["predictions"], pooled["evaluation"][cohort]["predictions"])
            if arm["arm"].startswith("federated"):
                found["vs_sites"] = {site["arm"]: paired(found["predictions"],
                                                         site["evaluation"][cohort]["predictions"]) for site in sites}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("consortium", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--strategy", action="append", choices=["fedavg", "fedprox"])
    parser.add_argument("--modalities", default="image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sites = sorted(p for p in (args.consortium / "sites").iterdir() if (p / "participants.csv").is_file())
    evaluation = args.consortium / "evaluation"
    epochs = args.rounds * args.local_epochs  # the references train as many epochs as a site does
    options = replace(federation_options(args.modalities.split(","), args.seed), epochs=epochs, threads=2)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    def fit(cohort: Path, where: Path) -> None:
        train(cohort, where, options)

    arms = [trained("pooled", lambda: fit(pool_sites(sites, out / "pooled-cohort"), out / "pooled"), out / "pooled")]
    for strategy in args.strategy or ["fedavg"]:
        def federate(strategy: str = strategy) -> dict:
            result = simulate(sites, out / strategy, out / f"{strategy}.federation", replace(options, threads=1),
                              rounds=args.rounds, local_epochs=args.local_epochs, strategy=strategy)
            sent = result.sent()
            return {"bytes_per_site_round": int(np.median([r["bytes"] for rows in sent.values() for r in rows])),
                    "validation_log_loss": last_round_loss(result)}
        arms.append(trained(f"federated ({strategy})", federate, out / strategy))
    for site in sites:
        arms.append(trained(f"site {site.name} alone", lambda site=site: fit(site, out / f"site-{site.name}"),
                            out / f"site-{site.name}"))
    for arm in arms:
        arm["evaluation"] = evaluate(Path(arm["bundle"]), evaluation, Path(arm["bundle"] + ".evaluation"))
    compare_arms(arms)
    header = " ".join(f"{c + ' AUC [95% CI]':>24s} {'vs pooled P':>11s}" for c in COHORTS)
    print(f"{'arm':28s} {'train s':>8s} {header}")
    for arm in arms:
        cells = []
        for cohort in COHORTS:
            found = arm["evaluation"][cohort]
            low, high = found["auc_ci"]
            p = found.get("vs_pooled", {}).get("p")
            shown = "" if p is None else f"{p:.3f}"
            cells.append(f"{found['auc']:.3f} [{low:.3f}-{high:.3f}]".rjust(24) + shown.rjust(12))
        print(f"{arm['arm']:28s} {arm['train_seconds']:8.0f} " + " ".join(cells), flush=True)
    kept = [{**arm, "evaluation": {c: {k: v for k, v in e.items() if k != "predictions"}
                                   for c, e in arm["evaluation"].items()}} for arm in arms]
    for arm in arms:
        if "validation_log_loss" in arm:
            print(f"{arm['arm']}: the last round's global model, log loss on the sites' inner validation splits "
                  f"{arm['validation_log_loss']:.4f}; {arm['bytes_per_site_round'] / 1e6:.2f} MB per site and round")
            for cohort in COHORTS:
                tests = arm["evaluation"][cohort]["vs_sites"]
                better = [name for name, t in tests.items() if t["difference"] > 0 and t["p"] < 0.05]
                print(f"  {cohort}: better than {len(better)} of {len(tests)} sites alone at P < 0.05 "
                      f"({', '.join(better) or 'none'})")
    (out / "bench.json").write_text(json.dumps({"rounds": args.rounds, "local_epochs": args.local_epochs,
                                                "modalities": args.modalities,
                                                "seed": args.seed, "arms": kept}, indent=2))


if __name__ == "__main__":
    main()
