"""How far the study's headline figures move: over seeds, and between two runs of one seed.

Two questions a reader of one results.json cannot answer from it (issue 24, item 5):
- how much of a figure is the seed? :func:`spread_section` tabulates the headline figures of
  several demos (``sarco demo --seed N``: a cohort and a study per seed) into docs/study.md;
- is another machine's (or thread count's) run the same study? :func:`compare` puts two runs of
  one seed side by side. Where their provenance says they took the same float path (the same
  thread count, CPU, kernels and libraries; only the cores lent may differ, since the study fixes
  its thread count), every figure must be equal, and :func:`differing_sections` checks the rest
  of results.json. Otherwise each figure is checked against a bound taken from the seed spread,
  not typed in: float sums ordered by another thread count or another CPU's kernels change a
  training's path the way a new seed does, so a difference inside the seeds' range is explained
  and one outside it is not. The provenance that differs is listed beside the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_build.study.formatting import format_number
from model_build.study.inputs import DEVELOPMENT, StudyReportError, check_results, fused_model
from model_build.study.narrative import find_comparison
from model_build.study.provenance import THREAD_VARIABLES
from model_build.study.readme import rewrite
from sarco_core.files import atomic_write, read_json, write_json

START, END = "<!-- seed-spread:start -->", "<!-- seed-spread:end -->"
PROVENANCE_KEYS = (("torch", "intra_op_threads"), ("torch", "inter_op_threads"), ("torch", "cpu_capability"),
                   ("torch", "onednn_version"), ("torch", "mkldnn_enabled"), ("torch", "deterministic_algorithms"),
                   ("cpu", "model"), ("cpu", "usable_cores"), ("packages", "torch"), ("packages", "numpy"),
                   ("packages", "onnxruntime"), ("packages", "sklearn"), ("python", None), *(
                       ("environment", name) for name in THREAD_VARIABLES))
SAME_PATH_MAY_DIFFER = {"cpu.usable_cores"}
"""Provenance two runs may differ in and still take the same float path: the study fixes its
thread count (``STUDY_THREADS``), so the cores a machine lends it reorder no sum (measured:
docs/study.md, "How far the figures move")."""
UNCOMPARED_SECTIONS = ("created", "timings", "provenance")


def headline(results: dict) -> dict[str, float | str | None]:
    """The figures the README leads with, by name, in reading order."""
    models, cohorts = results["models"], results["cohorts"]
    fused = fused_model(results)
    figures: dict[str, float | str | None] = {}
    for name in ("image", *([fused] if fused else [])):
        if name not in models:
            continue
        for cohort in cohorts:
            figures[f"{name} AUC, {cohort}"] = models[name][cohort]["auc"]
        external = models[name].get("external", {})
        if external.get("oracle_auc") is not None and external.get("auc") is not None:
            figures[f"{name} gap to the oracle, external"] = external["oracle_auc"] - external["auc"]
    if fused and "image" in models:
        test = find_comparison(results["comparisons"], fused, "image", DEVELOPMENT)
        figures[f"{fused} vs image, P (development)"] = None if test is None else test[1]
    figures["selected model"] = results["selected_model"]
    int8 = results.get("int8")
    if int8:
        figures["INT8 gate"] = "accepted" if int8["accepted"] else "rejected"
        figures["INT8 largest AUC change"] = max(abs(c["auc_int8"] - c["auc_float"]) for c in int8["cohorts"].values())
    return figures


def summary(results: dict) -> dict:
    """What docs/results/seeds.json keeps of one run: its seed, headline figures and provenance."""
    return {"seed": int(results["options"]["seed"]), "created": results["created"], "figures": headline(results),
            "provenance": results.get("provenance")}


def spread_section(runs: list[dict]) -> str:
    """The Markdown table of the headline figures over ``runs`` (:func:`summary` of one run per
    seed), with mean, SD and range."""
    if len(runs) < 2:
        raise StudyReportError("a spread needs the results.json of at least 2 seeds; fix: run `sarco demo --seed N` "
                               "for more seeds")
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise StudyReportError(f"seeds {seeds}: each results.json must come from a different seed")
    figures = [r["figures"] for r in runs]
    names = [name for name in figures[0] if all(name in f for f in figures)]
    header = ["figure", *(f"seed {s}" for s in seeds), "mean", "SD", "range"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        values = [f[name] for f in figures]
        numeric = [v for v in values if isinstance(v, float)]
        cells = [_cell(v) for v in values]
        if len(numeric) == len(values):
            cells += [format_number(float(np.mean(numeric))), format_number(float(np.std(numeric, ddof=1))),
                      format_number(max(numeric) - min(numeric))]
        else:
            cells += ["", "", "same" if len(set(map(str, values))) == 1 else "differs"]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def _cell(value: float | str | None) -> str:
    if value is None:
        return "n/a"
    return format_number(value) if isinstance(value, float) else str(value)


@dataclass
class Difference:
    figure: str
    first: float | str | None
    second: float | str | None
    bound: float | None      # 0 on the same float path, else the seeds' range; None: not numeric
    within: bool
    seen: tuple[str, ...] = ()  # a word figure on another float path: the values the seeds gave it


@dataclass
class Comparison:
    rows: list[Difference]
    provenance: dict[str, tuple]  # "torch.intra_op_threads": (2, 1)
    same_path: bool               # the provenance says both runs summed in the same order: figures must be equal


def compare(first: dict, second: dict, seeds: list[dict]) -> Comparison:
    """Each headline figure of two runs of one seed (:func:`summary` of each): equal where the
    runs took the same float path, else within the range over ``seeds`` (summaries, one per seed).
    A word figure (the selected model, the INT8 gate) on another path is explained when the seeds
    gave it both values: a borderline gate that one seed passes and another fails can flip with
    the float order as well."""
    if first["seed"] != second["seed"]:
        raise StudyReportError(f"the two runs have seeds {first['seed']} and {second['seed']}: compare two runs of "
                               "the same seed (on two machines, or with two thread counts)")
    provenance = _provenance_differences(first.get("provenance") or {}, second.get("provenance") or {})
    same_path = bool(first.get("provenance") and second.get("provenance")) and set(provenance) <= SAME_PATH_MAY_DIFFER
    a, b = first["figures"], second["figures"]
    spread = [r["figures"] for r in seeds]
    rows = []
    for name in a:
        if name not in b:
            continue
        values = [s[name] for s in spread if isinstance(s.get(name), float)]
        numeric = isinstance(a[name], float) and isinstance(b[name], float)
        bound = (0.0 if same_path else max(values) - min(values)) if numeric and len(values) >= 2 else None
        seen = () if numeric or same_path else tuple(sorted({str(s[name]) for s in spread if name in s}))
        within = (abs(a[name] - b[name]) <= bound + 1e-12) if bound is not None else a[name] == b[name] or (
            numeric and not same_path and math.isclose(a[name], b[name])) or (
            len(seen) > 1 and {str(a[name]), str(b[name])} <= set(seen))
        rows.append(Difference(name, a[name], b[name], bound, within, seen))
    return Comparison(rows, provenance, same_path)


def differing_sections(first: dict, second: dict) -> list[str]:
    """The sections of two results.json that differ, but for when, how long, on what and where
    they ran: the cohort is compared by its content (``data_hash`` and the rest), not by the
    folder it was read from, which differs between two clones."""
    def comparable(results: dict, key: str):  # noqa: ANN202
        value = results.get(key)
        return {k: v for k, v in value.items() if k != "path"} if key == "cohort" and isinstance(value, dict) else value
    return [key for key in sorted(set(first) | set(second))
            if key not in UNCOMPARED_SECTIONS and comparable(first, key) != comparable(second, key)]


def _provenance_differences(first: dict, second: dict) -> dict[str, tuple]:
    differences = {}
    for group, key in PROVENANCE_KEYS:
        x = first.get(group) if key is None else (first.get(group) or {}).get(key)
        y = second.get(group) if key is None else (second.get(group) or {}).get(key)
        if x != y:
            differences[group if key is None else f"{group}.{key}"] = (x, y)
    return differences


# --- files -------------------------------------------------------------------------------------


def load_runs(paths: list[Path]) -> list[dict]:
    """Summaries from results.json files and kept seeds.json files (``{"runs": [...]}``), in order."""
    runs = []
    for path in paths:
        data = read_json(path, StudyReportError, "fix: give a study's results.json or a kept seeds.json")
        if isinstance(data.get("runs"), list):
            runs += data["runs"]
        elif isinstance(data.get("options"), dict):
            check_results(data)
            runs.append(summary(data))
        else:
            raise StudyReportError(f"{path}: neither a study's results.json nor a seeds.json; fix: give "
                                   "RUN/results.json from `sarco study` or `sarco demo`")
    return runs


def regenerate_spread(sources: list[Path], doc: Path, keep: Path | None = None, check: bool = False) -> bool:
    """Rewrite ``doc``'s seed-spread section from ``sources`` (first kept, as one seeds.json, in
    ``keep``); with ``check`` only compare. True when ``doc`` already said it."""
    runs = sorted(load_runs(sources), key=lambda run: run["seed"])
    text = spread_section(runs)
    if keep is not None and not check:
        write_json(keep, {"runs": runs})
    current = doc.read_text(encoding="utf-8")
    wanted = rewrite(current, text, (START, END), str(doc), "the seed-spread table")
    if not check and wanted != current:
        atomic_write(doc, wanted, mode=None)
    return wanted == current
