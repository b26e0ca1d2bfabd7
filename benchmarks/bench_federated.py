"""Pooled, federated and single-site training on a consortium, against issue #19's targets.

    PYTHONPATH=. python benchmarks/bench_federated.py CONSORTIUM --out DIR [--rounds 8]
        [--local-epochs 4] [--strategy fedavg --strategy fedprox --strategy fedbn] [--modalities image] [--seed 0]

CONSORTIUM is `sarco synth OUT --size consortium`. The work is `sarco federated compare`'s
(:mod:`model_build.federated.compare`); this script prints its table and the targets: the
federation (the strategy with the lower validation loss) within 0.01 AUC of pooled, better than
the median single site with paired DeLong P < 0.05, and a simulation of the sites in <= 20 min on
2 CPU cores. docs/federated.md quotes its figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model_build.federated import STRATEGIES
from model_build.federated.compare import CompareOptions, compare, table_markdown

SIMULATION_MINUTES = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("consortium", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--local-epochs", type=int, default=4)
    parser.add_argument("--strategy", action="append", choices=STRATEGIES)
    parser.add_argument("--modalities", default="image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    options = CompareOptions(rounds=args.rounds, local_epochs=args.local_epochs,
                             strategies=tuple(args.strategy or ["fedavg"]),
                             modalities=tuple(args.modalities.split(",")), seed=args.seed)
    result = compare(args.consortium, args.out, options)
    print(table_markdown(result))
    targets = result["targets"]
    federation = next(arm for arm in result["arms"] if arm["arm"] == targets["federation"])
    print(f"{federation['arm']}: validation log loss {federation['validation_log_loss']:.4f}, "
          f"{federation['bytes_per_site_round'] / 1e6:.2f} MB per site and round, simulated in "
          f"{federation['train_seconds']:.0f} s (target <= {SIMULATION_MINUTES * 60} s)")
    for cohort in result["cohorts"]:
        found = targets[cohort]
        print(f"{cohort}: {found['difference_vs_pooled']:+.3f} against pooled (target >= -0.01: "
              f"{'met' if found['within_pooled'] else 'missed'}); better than the median site(s) "
              f"{', '.join(found['median_sites'])} at P < 0.05: {'met' if found['beats_median_site'] else 'missed'}; "
              f"better than {', '.join(found['beats_sites']) or 'no site'}")
        if "oracle_auc" in found:
            print(f"  Bayes oracle {found['oracle_auc']:.3f}: better than the median site(s) at P < 0.05: "
                  f"{'yes' if found['oracle_beats_median_site'] else 'no'}")


if __name__ == "__main__":
    main()
