"""Pooled, federated and single-site training of one model on a consortium, judged on its evaluation cohorts.

    PYTHONPATH=. python benchmarks/bench_federated.py CONSORTIUM --out DIR [--rounds 8]
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


def against_pooled(arm: dict, pooled: dict) -> None:
    """Paired DeLong P of ``arm`` against pooled on every evaluation cohort (same participants)."""
    for cohort in COHORTS:
        a, b = arm["evaluation"][cohort]["predictions"], pooled["evaluation"][cohort]["predictions"]
        both = a.merge(b, on="participant_id", suffixes=("", "_pooled"))
        test = compare_auc(both["label"].astype(int), both["probability"], both["probability_pooled"])
        arm["evaluation"][cohort]["vs_pooled"] = {"difference": test.difference, "p": test.p}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("consortium", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--strategy", action="append", choices=["fedavg", "fedprox"])
    parser.add_argument("--modalities", default="image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sites = sorted(p for p in (args.consortium / "sites").iterdir() if (p / "participants.csv").is_file())
    evaluation = args.consortium / "evaluation"
    options = replace(federation_options(args.modalities.split(","), args.seed), epochs=args.rounds, threads=2)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    arms = [trained("pooled", lambda: train(pool_sites(sites, out / "pooled-cohort"), out / "pooled", options),
                    out / "pooled")]
    for strategy in args.strategy or ["fedavg"]:
        def federate(strategy: str = strategy) -> dict:
            result = simulate(sites, out / strategy, out / f"{strategy}.federation", replace(options, threads=1),
                              rounds=args.rounds, strategy=strategy)
            sent = result.sent()
            return {"bytes_per_site_round": int(np.median([r["bytes"] for rows in sent.values() for r in rows]))}
        arms.append(trained(f"federated ({strategy})", federate, out / strategy))
    for site in sites:
        arms.append(trained(f"site {site.name} alone", lambda site=site: train(site, out / f"site-{site.name}", options),
                            out / f"site-{site.name}"))
    for arm in arms:
        arm["evaluation"] = evaluate(Path(arm["bundle"]), evaluation, Path(arm["bundle"] + ".evaluation"))
    for arm in arms[1:]:
        against_pooled(arm, arms[0])
    print(f"{'arm':28s} {'train s':>8s} " + " ".join(f"{c + ' AUC [95% CI]':>24s} {'vs pooled P':>11s}" for c in COHORTS))
    for arm in arms:
        cells = []
        for cohort in COHORTS:
            found = arm["evaluation"][cohort]
            low, high = found["auc_ci"]
            p = found.get("vs_pooled", {}).get("p")
            cells.append(f"{found['auc']:.3f} [{low:.3f}-{high:.3f}]".rjust(24) + ("" if p is None else f"{p:.3f}").rjust(12))
        print(f"{arm['arm']:28s} {arm['train_seconds']:8.0f} " + " ".join(cells), flush=True)
    kept = [{**arm, "evaluation": {c: {k: v for k, v in e.items() if k != "predictions"}
                                   for c, e in arm["evaluation"].items()}} for arm in arms]
    (out / "bench.json").write_text(json.dumps({"rounds": args.rounds, "modalities": args.modalities,
                                                "seed": args.seed, "arms": kept}, indent=2))


if __name__ == "__main__":
    main()
