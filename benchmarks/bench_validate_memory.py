"""Peak memory of `sarco validate` on a large participants.csv (prints figures; not a test).

    .venv/bin/python benchmarks/bench_validate_memory.py                 # 1,000,000 rows
    .venv/bin/python benchmarks/bench_validate_memory.py --rows 100000

Writes a cohort of RANDOM participants (the test factory's schema and columns, no media) to a
temporary folder, runs `sarco validate --no-media --json` on it as its own process and reports
that process's peak resident memory (getrusage of the child), its run time and the verdict.
Issue 17 measured 2.8 GB for 1,000,000 rows before validation streamed the file.
"""

from __future__ import annotations

import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.cohort_factory import SCHEMA  # noqa: E402

COLUMNS = ("participant_id", "cohort", "label", "center", "sex", "age", "albumin", "creatinine",
           "grip_kg", "gait_speed")


def write_cohort(root: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (root / "schema.yaml").write_text(yaml.safe_dump(SCHEMA, sort_keys=False), encoding="utf-8")
    chunk = 100_000
    with (root / "participants.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ages, albumin = rng.integers(55, 90, n), rng.uniform(30, 50, n)
            creatinine, grip, gait = rng.uniform(50, 120, n), rng.uniform(15, 45, n), rng.uniform(0.5, 1.5, n)
            for offset in range(n):
                number = start + offset
                writer.writerow((f"P{number:07d}", "development" if number % 3 else "external",
                                 number % 2, "AB"[number % 2], "MF"[number % 2], ages[offset],
                                 f"{albumin[offset]:.1f}", f"{creatinine[offset]:.0f}",
                                 f"{grip[offset]:.1f}", f"{gait[offset]:.2f}"))


def main(rows: Annotated[int, typer.Option("--rows", help="Participants to write.")] = 1_000_000) -> None:
    with tempfile.TemporaryDirectory(prefix="sarco-validate-memory-") as folder:
        root = Path(folder)
        write_cohort(root, rows)
        size_mb = (root / "participants.csv").stat().st_size / 1e6
        started = time.perf_counter()
        sarco = Path(sys.executable).parent / "sarco"
        finished = subprocess.run([str(sarco), "validate", str(root), "--no-media", "--json"],
                                  capture_output=True, text=True)
        elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    report = json.loads(finished.stdout)
    print(f"{rows:,} participants ({size_mb:.0f} MB CSV): peak RSS {peak_mb:,.0f} MiB, {elapsed:.1f} s, "
          f"exit {finished.returncode}, {report['summary']['participants']:,} participants counted, "
          f"{sum(report['counts'].values())} findings")


if __name__ == "__main__":
    typer.run(main)
