"""Oracle AUCs of the synthetic cohort on the `large` size, and generation times.

Prints, for `sarco synth --size large`, the oracle AUC per cohort and pooled (likelihood ratio,
2,857 participants) beside the population value the latent model was calibrated to, and the
time to draw the tables. With --paper it also writes a full `paper` cohort (stills and videos)
into a temporary folder and reports wall and CPU time (all processes), since other work on a
shared machine inflates wall time.

    .venv/bin/python benchmarks/bench_synth_oracle.py [--seed 1] [--paper] [--workers 2]

Target (foundation issue): pooled oracle AUC on `large` within ~0.01 of image 0.87, clinical
0.78, lab 0.75, all 0.90; `paper` generated in a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from model_build.synth.generate import POOLED, SynthOptions, build_tables, synthesize
from model_build.synth.latent import ORACLE_MODALITIES

console = Console(width=120)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker pool)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def oracle_on_large(seed: int) -> None:
    options = SynthOptions(size="large", seed=seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        tables = build_tables(options, Path(scratch))
    seconds = time.perf_counter() - started
    table = Table(title=f"Oracle AUC, size large, seed {seed} (tables drawn in {seconds:.1f} s)")
    table.add_column("cohort")
    table.add_column("n", justify="right")
    for modality in ORACLE_MODALITIES:
        table.add_column(modality, justify="right")
    counts = tables.participants.groupby("cohort", sort=False)["label"].size()
    for cohort, aucs in tables.oracle_aucs.items():
        n = int(counts.sum() if cohort == POOLED else counts[cohort])
        table.add_row(cohort, str(n), *(f"{aucs[m]:.3f}" for m in ORACLE_MODALITIES))
    table.add_row("population (target)", "", *(f"{tables.population_aucs[m]:.3f}" for m in ORACLE_MODALITIES))
    pooled = tables.oracle_aucs[POOLED]
    table.add_row("pooled - population", "",
                  *(f"{pooled[m] - tables.population_aucs[m]:+.3f}" for m in ORACLE_MODALITIES))
    console.print(table)


def paper_generation(seed: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "paper"
        cpu_before, started = _cpu_seconds(), time.perf_counter()
        summary = synthesize(out, SynthOptions(size="paper", seed=seed, workers=workers))
        wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_before
        size_mb = sum(path.stat().st_size for path in out.rglob("*") if path.is_file()) / 1e6
    participants = sum(n for n, _ in summary.counts.values())
    console.print(f"paper, seed {seed}, {workers} workers on {os.cpu_count()} CPUs: {participants} "
                  f"participants, {summary.n_images} images, {summary.n_videos} videos, {size_mb:.0f} MB; "
                  f"wall {wall:.0f} s, CPU {cpu:.0f} s ({cpu / participants:.2f} s per participant)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--paper", action="store_true", help="also time a full paper-size generation")
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    oracle_on_large(arguments.seed)
    if arguments.paper:
        paper_generation(arguments.seed, arguments.workers)


if __name__ == "__main__":
    main()
