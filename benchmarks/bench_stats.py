"""Speed and pROC agreement of model_build.stats (prints figures; not a timed test).

    .venv/bin/python benchmarks/bench_stats.py             # full run (pROC parts need Rscript + pROC)
    .venv/bin/python benchmarks/bench_stats.py --no-r      # skip pROC timings

Targets (issue 3): paired DeLong on 1,000,000 participants < 1 s on one core; bootstrap CI with
2,000 resamples on 1,000 participants < 2 s. numpy is limited to one thread so that "one core"
holds. The O(n^2) DeLong runs on a subsample and is extrapolated by (N / n)^2, and says so.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # before numpy is imported: one core

import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import model_build.stats as st  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "proc" / "proc_fixtures.json"
console = Console(width=120)

R_TIMING = r"""
suppressPackageStartupMessages(library(pROC))
args <- commandArgs(trailingOnly = TRUE); n <- as.integer(args[2])
raw <- readBin(args[1], what = "double", n = 3 * n, size = 8, endian = "little")
y <- raw[1:n]; a <- raw[(n + 1):(2 * n)]; b <- raw[(2 * n + 1):(3 * n)]
build <- system.time({
  ra <- roc(y, a, levels = c(0, 1), direction = "<", quiet = TRUE)
  rb <- roc(y, b, levels = c(0, 1), direction = "<", quiet = TRUE)
})[["elapsed"]]
if (args[3] == "paired") {
  test <- system.time(result <- roc.test(ra, rb, method = "delong", paired = TRUE))[["elapsed"]]
  out <- list(build = build, run = test, z = unname(result$statistic), p = result$p.value)
} else {
  set.seed(1)
  boot <- system.time(ci <- ci.auc(ra, method = "bootstrap", boot.n = 2000, progress = "none"))[["elapsed"]]
  out <- list(build = build, run = boot, lower = ci[1], upper = ci[3])
}
cat(sprintf('{"build": %.6f, "run": %.6f, "x": %.17g, "y": %.17g}', out$build, out$run, out[[3]], out[[4]]))
"""


def best_time(function: Callable[[], object], repeats: int = 3) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings)


def naive_paired_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The textbook O(m n) DeLong: the full case x control kernel matrix for each score."""
    components = []
    for score in (a, b):
        cases, controls = score[y], score[~y]
        psi = (cases[:, None] > controls[None, :]) + 0.5 * (cases[:, None] == controls[None, :])
        components.append((psi.mean(axis=1), psi.mean(axis=0)))
    s10 = np.cov(np.vstack([c[0] for c in components]))
    s01 = np.cov(np.vstack([c[1] for c in components]))
    s = s10 / y.sum() + s01 / (~y).sum()
    difference = components[0][0].mean() - components[1][0].mean()
    return difference, difference / np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])


def correlated_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    a = np.round(rng.normal(size=n) + 1.0 * y, 4)
    b = np.round(0.7 * a + 0.7 * rng.normal(size=n) + 0.27 * y, 4)  # AUC a little below a's
    return y, a, b


def run_proc(y: np.ndarray, a: np.ndarray, b: np.ndarray, mode: str) -> dict[str, float] | None:
    """Time pROC on the same data (elapsed seconds measured inside R, file reading excluded)."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data.bin"
        np.concatenate((y.astype(np.float64), a, b)).astype("<f8").tofile(data)
        script = Path(folder) / "timing.R"
        script.write_text(R_TIMING)
        result = subprocess.run(["Rscript", str(script), str(data), str(y.size), mode],
                                capture_output=True, text=True, check=False)
    if result.returncode != 0:
        console.print(f"[yellow]pROC skipped: {result.stderr.strip().splitlines()[-1:]}[/yellow]")
        return None
    return json.loads(result.stdout)


def agreement_table() -> Table:
    """Worst disagreement with the pROC fixtures, per quantity (what tests assert, measured)."""
    fixtures = json.loads(FIXTURES.read_text())
    worst: dict[str, float] = {}

    def note(name: str, ours: float, reference: float, relative: bool = False) -> None:
        error = abs(ours - reference) / (abs(reference) if relative and reference else 1.0)
        worst[name] = max(worst.get(name, 0.0), error)

    for data in fixtures["datasets"]:
        for kind in ("a", "b"):
            if f"score_{kind}" not in data or "variance" not in data[f"result_{kind}"]:
                continue
            expected = data[f"result_{kind}"]
            interval = st.auc_ci(data["y"], data[f"score_{kind}"])
            note("AUC (abs)", interval.auc, expected["auc"])
            note("DeLong variance (rel)", interval.variance, expected["variance"], relative=True)
            note("DeLong CI bounds (abs)", interval.lower, expected["delong_ci95"][0])
            note("DeLong CI bounds (abs)", interval.upper, expected["delong_ci95"][1])
        if "paired" in data:
            result = st.compare_auc(data["y"], data["score_a"], data["score_b"])
            note("paired z (rel)", result.z, data["paired"]["z"], relative=True)
            note("paired P (abs)", result.p, data["paired"]["p"])
            note("paired P (rel)", result.p, data["paired"]["p"], relative=True)
            note("paired difference CI (abs)", result.lower, data["paired"]["ci95"][0])
            note("paired difference CI (abs)", result.upper, data["paired"]["ci95"][1])
    by_name = {d["name"]: d for d in fixtures["datasets"]}
    for case in fixtures["unpaired"]:
        a, b = by_name[case["a"]], by_name[case["b"]]
        result = st.compare_auc_unpaired(a["y"], a["score_a"], b["y"], b["score_a"])
        note("unpaired P (rel)", result.p, case["p"], relative=True)
    table = Table(title=f"Agreement with pROC {fixtures['meta']['proc_version']} ({len(fixtures['datasets'])} data sets)")
    table.add_column("quantity")
    table.add_column("worst error", justify="right")
    for name, error in worst.items():
        table.add_row(name, f"{error:.1e}")
    return table


def main(participants: int = typer.Option(1_000_000, help="Participants for the paired DeLong timing."),
         subsample: int = typer.Option(4000, help="Participants for the O(n^2) DeLong (then extrapolated)."),
         use_r: bool = typer.Option(True, "--r/--no-r", help="Also time pROC when Rscript + pROC exist.")) -> None:
    console.print(agreement_table())
    table = Table(title="Speed (wall clock, best of 3, one numpy thread)")
    for column in ("task", "model_build.stats", "reference", "ratio (reference / ours)"):
        table.add_column(column, justify="right" if column != "task" else "left")

    y, a, b = correlated_scores(participants, seed=0)
    ours = best_time(lambda: st.compare_auc(y, a, b))
    ys, as_, bs = y[:subsample], a[:subsample], b[:subsample]
    ours_small = best_time(lambda: st.compare_auc(ys, as_, bs))
    naive_small = best_time(lambda: naive_paired_delong(ys, as_, bs), repeats=1)
    naive_full = naive_small * (participants / subsample) ** 2
    table.add_row(f"paired DeLong, n={subsample:,}", f"{ours_small * 1e3:.1f} ms",
                  f"O(n^2): {naive_small * 1e3:.0f} ms", f"{naive_small / ours_small:,.0f}x")
    table.add_row(f"paired DeLong, n={participants:,} (target < 1 s)", f"{ours:.3f} s",
                  f"O(n^2) extrapolated: {naive_full / 3600:,.1f} h", f"{naive_full / ours:,.0f}x (extrapolated)")
    proc = run_proc(y, a, b, "paired") if use_r else None
    if proc is None:
        table.add_row(f"pROC roc.test, n={participants:,}", "", "skipped (no Rscript/pROC or --no-r)", "")
    else:
        result = st.compare_auc(y, a, b)
        table.add_row(f"pROC roc.test, n={participants:,}", f"{ours:.3f} s", f"{proc['run']:.3f} s",
                      f"{proc['run'] / ours:.1f}x")
        table.add_row("pROC roc() x2 + roc.test", f"{ours:.3f} s", f"{proc['build'] + proc['run']:.3f} s",
                      f"{(proc['build'] + proc['run']) / ours:.1f}x")
        console.print(f"paired test on {participants:,}: z ours {result.z:.15g} / pROC {proc['x']:.15g}; "
                      f"P ours {result.p:.6g} / pROC {proc['y']:.6g}")

    yb, ab, bb = correlated_scores(1000, seed=1)
    boot = best_time(lambda: st.auc_ci(yb, ab, method="bootstrap", n_boot=2000, seed=0))
    proc_boot = run_proc(yb, ab, bb, "bootstrap") if use_r else None
    if proc_boot is None:
        table.add_row("bootstrap CI, 2,000 x n=1,000 (target < 2 s)", f"{boot:.3f} s", "pROC skipped", "")
    else:
        table.add_row("bootstrap CI, 2,000 x n=1,000 (target < 2 s)", f"{boot:.3f} s",
                      f"pROC ci.auc: {proc_boot['run']:.2f} s", f"{proc_boot['run'] / boot:.0f}x")
        ci = st.auc_ci(yb, ab, method="bootstrap")
        console.print(f"bootstrap 95% CI ours [{ci.lower:.4f}, {ci.upper:.4f}] / pROC "
                      f"[{proc_boot['x']:.4f}, {proc_boot['y']:.4f}] (different random resamples)")
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
