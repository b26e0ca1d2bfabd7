"""Study benchmark: wall time per stage, image AUC beside the oracle, and run-to-run equality.

    python benchmarks/bench_study.py COHORT --out DIR [--quick] [--repeat 2] [--threads N]

COHORT is a synthetic cohort (`sarco synth`), so truth.csv gives the oracle. Each repeat runs
`sarco study` with the same seed into DIR/run-<k> and prints the stage timings, the image
model's AUC and oracle AUC on every cohort, the selected model and the INT8 verdict. With
--repeat 2 it also says whether the two results.json are identical (apart from the creation
time, the timings and the run folder path). The targets (docs/study.md): the full demo under 30
minutes on a 2-core CPU with the image external AUC within 0.05 of the oracle; --quick under 3
minutes (the demo adds `sarco synth` and the edge replay to the study time printed here).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from model_build.study.design import StudyOptions
from model_build.study.runner import run_study

VOLATILE = ("created", "timings")


def comparable(results: dict) -> dict:
    kept = {k: v for k, v in results.items() if k not in VOLATILE}
    kept["cohort"] = {k: v for k, v in results["cohort"].items() if k != "path"}
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    console = Console()
    runs = []
    for number in range(1, args.repeat + 1):
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        with Progress(console=Console(stderr=True), transient=True) as progress:
            run = run_study(args.cohort, args.out / f"run-{number}", StudyOptions(
                seed=args.seed, quick=args.quick, threads=args.threads), progress)
        wall = time.perf_counter() - started
        results = json.loads((run / "results.json").read_text())
        runs.append(results)
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in results["timings"]["stages"].items())
        console.print(f"run {number}: {wall:.0f} s wall ({stages}); load average {load_before:.1f} before, "
                      f"{os.getloadavg()[0]:.1f} after")
        image = results["models"].get("image", {})
        for cohort in results["cohorts"]:
            entry = image.get(cohort, {})
            if entry.get("auc") is not None:
                oracle = entry.get("oracle_auc")
                gap = "" if oracle is None else f", oracle {oracle:.3f}, gap {oracle - entry['auc']:.3f}"
                console.print(f"  image {cohort}: AUC {entry['auc']:.3f}{gap}")
        int8 = results.get("int8")
        console.print(f"  selected {results['selected_model']}; INT8 "
                      + ("not run: " + results.get("int8_skipped", "") if not int8 else
                         ("accepted" if int8["accepted"] else "rejected")))
    if len(runs) > 1:
        same = all(comparable(r) == comparable(runs[0]) for r in runs[1:])
        console.print(f"results.json identical across {len(runs)} runs with seed {args.seed}: {same}")


if __name__ == "__main__":
    main()
