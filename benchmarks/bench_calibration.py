"""INT8 calibration on a synthetic paper cohort: the issue's targets, measured.

    sarco synth PAPER --size paper --seed 1
    sarco train PAPER --out MODEL --modalities image          # the device graph is the image branch
    python benchmarks/bench_calibration.py MODEL PAPER --work DIR [--targets tensorrt,cpu]

For each target: a 512-frame calibration set of frames that pass the quality gate, quantized
with entropy calibration and verified on the development hold-out, external and poc cohorts;
then a deliberately bad set (only probe-in-the-air frames) quantized and verified the same way.
Prints, per run, each cohort's AUC float / INT8, DeLong p, flipped decisions, the gate's verdict,
the model sizes and CPU latencies, and the time each step took; writes DIR/summary.json.
Targets (issue 5): tensorrt + entropy on the external cohort: |AUC drop| <= 0.005 and flips <= 2 %;
the bad set rejected.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from model_build.calibration.bundles import load_float_bundle, load_int8_bundle
from model_build.calibration.quantize import QuantizeOptions, quantize_bundle
from model_build.calibration.select import save_calibration_set, select_calibration_set
from model_build.calibration.verify import GateLimits, record, verify
from model_build.cohort import load_cohort


def timed(label: str, timings: dict, function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    timings[label] = round(time.perf_counter() - started, 1)
    print(f"  {label}: {timings[label]:.1f} s", flush=True)
    return result


def run(model: Path, cohort_path: Path, work: Path, targets: list[str], n: int, seed: int) -> dict:
    source, cohort = load_float_bundle(model), load_cohort(cohort_path)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict = {}
    sets = {}
    for name, state in (("field", "ok"), ("probe_in_air", "no_tissue")):
        folder = work / f"calib_{name}"
        if not folder.exists():
            chosen = timed(f"select {name}", timings, select_calibration_set, source, cohort, source.train_cohort, n,
                           seed, state)
            save_calibration_set(chosen, folder)
        sets[name] = folder
    from model_build.calibration.select import load_calibration_set

    runs = []
    for target in targets:
        for name, folder in sets.items():
            label = f"{target}-{name}"
            out = work / f"int8_{label}"
            if not out.exists():
                timed(f"quantize {label}", timings, quantize_bundle, source, load_calibration_set(folder),
                                  out, QuantizeOptions(target=target, method="entropy"))
            result = timed(f"verify {label}", timings, verify, source, load_int8_bundle(out, source), cohort,
                           GateLimits())
            record(result, work / f"report_{label}")
            runs.append({"run": label, **result.to_dict()})
            print_run(label, result)
    summary = {"model": str(model), "cohort": str(cohort_path), "n": n, "seed": seed, "timings_s": timings,
               "runs": runs}
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary


def print_run(label: str, result) -> None:
    print(f"\n{label}: {'ACCEPTED' if result.accepted else 'REJECTED'}")
    print(f"  {'cohort':22s} {'n':>4s} {'AUC float':>9s} {'AUC INT8':>9s} {'drop':>8s} {'p':>6s} {'flips':>10s} "
          f"{'frame flips':>11s}")
    for c in result.cohorts:
        auc = (f"{c.auc_float:9.4f} {c.auc_int8:9.4f} {c.auc_drop:8.4f}" if c.auc_float is not None
               else f"{'n/a':>9s} {'n/a':>9s} {'n/a':>8s}")
        p = f"{c.p:6.3f}" if c.p is not None else f"{'n/a':>6s}"
        print(f"  {c.name:22s} {c.n:4d} {auc} {p} {c.flips:4d} ({c.flip_rate:4.1%}) {c.frame_flip_rate:10.2%}")
    for f in result.footprint:
        print(f"  {f.name:6s} {f.megabytes:6.2f} MB, CPU {f.latency_ms_median:6.2f} ms median "
              f"({f.latency_ms_p90:.2f} p90, {f.threads} thread)")
    print("  worst layers: " + ", ".join(f"{e.node} (+{e.added_error:.3f})" for e in result.layers[:3]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="float bundle trained on the paper cohort")
    parser.add_argument("cohort", type=Path, help="`sarco synth --size paper` folder")
    parser.add_argument("--work", type=Path, required=True, help="folder for calibration sets, bundles, reports")
    parser.add_argument("--targets", default="tensorrt,cpu", help="comma-separated: tensorrt, cpu")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    summary = run(args.model, args.cohort, args.work, args.targets.split(","), args.n, args.seed)
    for entry in summary["runs"]:
        if entry["run"].startswith("tensorrt-field"):
            external = entry["cohorts"].get("external")
            if external:
                met = abs(external["auc_drop"]) <= 0.005 and external["flip_rate"] <= 0.02
                print(f"\ntarget (tensorrt, entropy, external): |AUC float - INT8| {abs(external['auc_drop']):.4f} "
                      f"(<= 0.005), flips {external['flip_rate']:.1%} (<= 2%): {'met' if met else 'NOT met'}")
        if entry["run"].endswith("probe_in_air"):
            print(f"target ({entry['run']} rejected): {'met' if not entry['accepted'] else 'NOT met'}")


if __name__ == "__main__":
    main()
