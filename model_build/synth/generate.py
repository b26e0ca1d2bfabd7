"""Write a whole synthetic cohort folder (docs/cohort-format.md) with its oracle.

Order of work: per cohort, fix the labels (exact counts, shuffled), draw the latents, the
clinical and lab columns, the missing values and the reference measurements; compute the
Bayes oracle; then render every participant's media in a process pool. Every random draw comes
from a child of ``SeedSequence(seed)`` (one per cohort, one per participant's media), so the
output is the same for any number of workers, and a cohort's content does not depend on the
cohorts after it (the `large` size's development cohort is the `paper` one).

The `consortium` size writes one cohort folder per development site (``OUT/sites/<center>``)
and one with the evaluation cohorts (``OUT/evaluation``), each a cohort as above, with a
``synth.json`` and ``README.md`` at the top that list them. Its cohorts are drawn exactly as a
single folder's are: where a cohort is written changes its media paths' root, nothing else.

The folder is built as ``OUT.partial-XXXX`` next to OUT and renamed at the end, so OUT is
either absent, the previous cohort, or complete.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from model_build.cohort.schema import Schema
from model_build.synth.cohorts import (
    CONSORTIUM,
    EVALUATION_FOLDER,
    MISSING_FRACTION,
    SIZES,
    WHOLE_LAB_MISSING_SHARE,
    CohortSpec,
    cohort_folder,
)
from model_build.synth.latent import (
    LATENT_COLUMNS,
    MODALITY_LATENTS,
    ORACLE_MODALITIES,
    LatentModel,
    OracleTargets,
)
from model_build.synth.media import MediaJob, ParticipantMedia, render_participant
from model_build.synth.reference import REFERENCE_SCHEMA, check_labels, draw_reference
from model_build.synth.tabular import TABULAR_SCHEMA, add_missing_values, clinical_and_lab, draw_sex, drop_whole_lab
from sarco_core.errors import SarcoError

GENERATOR_VERSION = "1.2.0"  # 1.1.0: truth_media.csv; 1.2.0: some participants lack the whole lab table
ASMI_METHOD_BY_CENTER = {"A": "dxa", "B": "bia", "C": "bia", "D": "dxa", "E": "bia", "F": "dxa", "G": "bia", "H": "bia"}
POOLED = "pooled"


class SynthError(SarcoError, ValueError):
    """The cohort cannot be written as asked (the message says why and how to fix it)."""


@dataclass(frozen=True)
class SynthOptions:
    size: str = "paper"
    seed: int = 1
    videos: bool | None = None  # None: on for small, paper and consortium, off for large
    workers: int = 2
    targets: OracleTargets = field(default_factory=OracleTargets)

    @property
    def with_videos(self) -> bool:
        return self.size != "large" if self.videos is None else self.videos


@dataclass(frozen=True)
class SyntheticTables:
    """Everything tabular about a synthetic cohort, before any media are rendered."""

    participants: pd.DataFrame
    truth: pd.DataFrame
    jobs: list[MediaJob]
    oracle_aucs: dict[str, dict[str, float]]  # cohort key (and "pooled") -> modality -> AUC
    population_aucs: dict[str, float]


@dataclass(frozen=True)
class SynthSummary:
    out: Path
    options: SynthOptions
    counts: dict[str, tuple[int, int]]  # cohort key -> (participants, positives)
    n_images: int
    n_videos: int
    oracle_aucs: dict[str, dict[str, float]]
    population_aucs: dict[str, float]
    folders: tuple[str, ...] = ("",)  # the cohort folders written, relative to out ("": out itself)


@dataclass(frozen=True)
class _CohortDraw:
    participants: pd.DataFrame
    truth: pd.DataFrame
    jobs: list[MediaJob]
    log_ratios: np.ndarray  # n x 4, columns ORACLE_MODALITIES: the oracle without the cohort's prior


def _draw_cohort(spec: CohortSpec, model: LatentModel, seed: np.random.SeedSequence,
                 with_videos: bool, root: Path) -> _CohortDraw:
    # The third child (whole lab tables missing) came with 1.2.0; spawning it leaves the first two,
    # and so every other draw, as they were.
    tabular_seed, media_seed, missing_seed = seed.spawn(3)
    rng = np.random.default_rng(tabular_seed)
    n = spec.n_participants
    labels = np.zeros(n, dtype=int)
    labels[:spec.n_positive] = 1
    labels = rng.permutation(labels)
    latents = model.sample(labels, rng)
    sex = draw_sex(n, rng)
    ids = [f"{spec.id_prefix}{i:04d}" for i in range(1, n + 1)]
    inputs = add_missing_values(clinical_and_lab(latents.z, sex, rng), rng, MISSING_FRACTION)
    inputs = drop_whole_lab(inputs, np.random.default_rng(missing_seed), WHOLE_LAB_MISSING_SHARE)
    reference = draw_reference(labels, sex, ASMI_METHOD_BY_CENTER[spec.center], latents.z, latents.frailty, rng)
    participants = pd.concat([
        pd.DataFrame({"participant_id": ids, "cohort": spec.name, "center": spec.center, "label": labels}),
        inputs, reference,
    ], axis=1)

    truth = pd.DataFrame({"participant_id": ids})
    for modality in ORACLE_MODALITIES:
        truth[f"p_{modality}"] = model.posterior(latents.z, modality, spec.prevalence)
    for index, name in enumerate(LATENT_COLUMNS):
        truth[name] = latents.z[:, index]
    truth["frailty"] = latents.frailty

    image_columns = [LATENT_COLUMNS.index(f"z_image_{name}") for name in MODALITY_LATENTS["image"]]
    jobs = [
        MediaJob(participant_id=pid, cohort=spec.name, center=spec.center, sex=str(person_sex),
                 z_image=tuple(float(v) for v in latents.z[i, image_columns]), seed=child,
                 with_video=with_videos, root=root)
        for i, (pid, person_sex, child) in enumerate(zip(ids, sex, media_seed.spawn(n)))
    ]
    log_ratios = np.column_stack([model.log_likelihood_ratio(latents.z, m) for m in ORACLE_MODALITIES])
    return _CohortDraw(participants, truth, jobs, log_ratios)


def build_tables(options: SynthOptions, root: Path) -> SyntheticTables:
    """Tables, oracle and media jobs of a whole size (a consortium's folders together), media
    to be written under ``root`` (in the cohort's folder there)."""
    model, drawn = _draw_size(options, root)
    return _tables(drawn, model, options.size)


def _draw_size(options: SynthOptions, root: Path) -> tuple[LatentModel, list[tuple[CohortSpec, _CohortDraw]]]:
    """Every cohort of the size, each from the child of ``SeedSequence(seed)`` at its position."""
    if options.size not in SIZES:
        raise SynthError(f"unknown size {options.size!r}; fix: use one of {', '.join(SIZES)}")
    model = LatentModel.calibrated(options.targets)
    specs = SIZES[options.size]
    seeds = np.random.SeedSequence(options.seed).spawn(len(specs))
    folders = [root / cohort_folder(options.size, spec) for spec in specs]
    return model, [(spec, _draw_cohort(spec, model, seed, options.with_videos, folder))
                   for spec, seed, folder in zip(specs, seeds, folders)]


def _tables(drawn: list[tuple[CohortSpec, _CohortDraw]], model: LatentModel, size: str) -> SyntheticTables:
    draws = [draw for _, draw in drawn]
    participants = pd.concat([draw.participants for draw in draws], ignore_index=True)
    check_labels(participants)
    oracle = {_key(spec, drawn, size): _aucs(draw.participants["label"].to_numpy(), draw.log_ratios)
              for spec, draw in drawn}
    # Pooled over cohorts on the prior-free log likelihood ratio: the same quantity as the
    # population AUC, estimated on every participant at once.
    oracle[POOLED] = _aucs(participants["label"].to_numpy(), np.vstack([draw.log_ratios for draw in draws]))
    return SyntheticTables(
        participants=participants,
        truth=pd.concat([draw.truth for draw in draws], ignore_index=True),
        jobs=[job for draw in draws for job in draw.jobs],
        oracle_aucs=oracle,
        population_aucs=model.population_aucs(),
    )


def _key(spec: CohortSpec, drawn: list[tuple[CohortSpec, _CohortDraw]], size: str) -> str:
    """A cohort's key in counts and oracle AUCs: its name, or its folder (sites/<center>) where
    several cohorts share the name, as the consortium's development sites do."""
    shared = sum(other.name == spec.name for other, _ in drawn) > 1
    return cohort_folder(size, spec) if shared else spec.name


def _aucs(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {modality: float(roc_auc_score(labels, scores[:, i])) for i, modality in enumerate(ORACLE_MODALITIES)}


def cohort_schema() -> Schema:
    """schema.yaml of every synthetic cohort: label by AWGS 2019 and every column described."""
    return Schema(label_definition="awgs2019", columns={**TABULAR_SCHEMA, **REFERENCE_SCHEMA})


def _write_csv(frame: pd.DataFrame, path: Path, float_format: str | None = None) -> None:
    frame.to_csv(path, index=False, lineterminator="\n", float_format=float_format)


def _one_thread_per_worker() -> None:
    """The pool already keeps every core busy; OpenCV's own threads would only contend."""
    cv2.setNumThreads(1)


def _render_all(jobs: list[MediaJob], workers: int,
                progress: Callable[[int, int], None] | None) -> ParticipantMedia:
    """Run every job (in a pool when workers > 1); rows come back in participant order."""
    results: list[ParticipantMedia | None] = [None] * len(jobs)
    if workers <= 1:
        for index, job in enumerate(jobs):
            results[index] = render_participant(job)
            if progress:
                progress(index + 1, len(jobs))
    else:
        # Spawned, not forked: a fork of a process that already runs threads (OpenCV's pool,
        # an MQTT client, a test runner's) can inherit a held lock and hang in the child.
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_one_thread_per_worker,
                                   mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {pool.submit(render_participant, job): index for index, job in enumerate(jobs)}
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()
                if progress:
                    progress(done, len(jobs))
        finally:  # on an error (or Ctrl-C) do not render the rest first
            pool.shutdown(wait=True, cancel_futures=True)
    return ParticipantMedia(*([row for result in results for row in getattr(result, part)]
                              for part in ParticipantMedia._fields))


def _check_destination(out: Path, force: bool) -> None:
    """OUT must be new or empty; --force replaces only an earlier synthetic cohort (synth.json),
    so that a mistyped OUT never deletes an unrelated folder."""
    if out.exists() and not out.is_dir():
        raise SynthError(f"{out} is a file; fix: choose a folder name for the cohort")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise SynthError(f"{out} already exists and is not empty; fix: pass --force to replace it, "
                         "or choose another folder")
    if not (out / "synth.json").is_file():
        raise SynthError(f"{out} is not a synthetic cohort (no synth.json), so --force will not delete it; "
                         "fix: choose another folder, or remove it yourself")
    part = _consortium_folder(out / "synth.json")
    if part:
        raise SynthError(f"{out} is {part} of a synthetic consortium, so --force will not replace it alone; "
                         f"fix: replace the whole consortium ({out.parents[part.count('/')]}) or choose another folder")


def _consortium_folder(facts: Path) -> str:
    """The folder of a consortium that ``facts`` (a synth.json) describes; "" for any other."""
    try:
        return str(json.loads(facts.read_text(encoding="utf-8")).get("consortium_folder", ""))
    except (OSError, ValueError, AttributeError):
        return ""  # not a consortium's: --force replaces an unreadable synth.json as before


def synthesize(out: str | Path, options: SynthOptions = SynthOptions(), force: bool = False,
               progress: Callable[[int, int], None] | None = None) -> SynthSummary:
    """Write a synthetic cohort (a consortium's folders) to ``out`` atomically; return what it holds.

    ``progress(done, total)`` is called as participants' media are finished.
    """
    out = Path(out).resolve()
    if options.workers < 1:
        raise SynthError(f"workers is {options.workers}; fix: use 1 or more")
    _check_destination(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{out.name}.partial-", dir=out.parent))
    try:
        model, drawn = _draw_size(options, partial)
        whole = _tables(drawn, model, options.size)
        # One pool for every folder's media: the rows come back in participant order.
        media = _render_all(whole.jobs, options.workers, progress)
        by_folder: dict[str, list[tuple[CohortSpec, _CohortDraw]]] = {}
        for spec, draw in drawn:
            by_folder.setdefault(cohort_folder(options.size, spec), []).append((spec, draw))
        summaries = [_write_cohort(partial, folder, out, options, part, model, media)
                     for folder, part in by_folder.items()]
        if len(summaries) == 1:
            summary = summaries[0]
        else:  # a consortium: its top folder lists the cohort folders
            summary = SynthSummary(
                out=out, options=options, counts=_counts(drawn, options.size),
                n_images=sum(s.n_images for s in summaries), n_videos=sum(s.n_videos for s in summaries),
                oracle_aucs=whole.oracle_aucs, population_aucs=whole.population_aucs, folders=tuple(by_folder),
            )
            _write_facts(partial, _facts(summary))
        _replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return summary


def _counts(drawn: list[tuple[CohortSpec, _CohortDraw]], size: str) -> dict[str, tuple[int, int]]:
    return {_key(spec, drawn, size): (spec.n_participants, spec.n_positive) for spec, _ in drawn}


def _write_cohort(partial: Path, relative: str, out: Path, options: SynthOptions,
                  drawn: list[tuple[CohortSpec, _CohortDraw]], model: LatentModel,
                  media: ParticipantMedia) -> SynthSummary:
    """The cohort folder ``relative`` to OUT: its cohorts' tables and their rows of the media."""
    tables = _tables(drawn, model, options.size)
    ids = set(tables.participants["participant_id"])
    images, videos, media_truth = ([row for row in rows if row["participant_id"] in ids] for rows in media)
    folder = partial / relative
    folder.mkdir(parents=True, exist_ok=True)
    _write_csv(tables.participants, folder / "participants.csv")
    _write_csv(tables.truth, folder / "truth.csv", float_format="%.6g")
    _write_csv(pd.DataFrame(media_truth), folder / "truth_media.csv", float_format="%.6g")
    _write_csv(pd.DataFrame(images), folder / "images.csv")
    if videos:
        _write_csv(pd.DataFrame(videos), folder / "videos.csv")
    cohort_schema().write(folder / "schema.yaml")
    summary = SynthSummary(
        out=out / relative, options=options, counts=_counts(drawn, options.size),
        n_images=len(images), n_videos=len(videos),
        oracle_aucs=tables.oracle_aucs, population_aucs=tables.population_aucs,
    )
    _write_facts(folder, _facts(summary, relative))
    return summary


def _write_facts(folder: Path, facts: dict) -> None:
    (folder / "synth.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(_readme(facts), encoding="utf-8")


def _replace(partial: Path, out: Path) -> None:
    """Move the finished folder into place; an old OUT (only with --force) goes last. Folders,
    so renamed here rather than through sarco_core.files.atomic_path (one file)."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(partial, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, out)


def _facts(summary: SynthSummary, folder: str = "") -> dict:
    """synth.json; a consortium's also says where this folder lies (or, at the top, lists them)."""
    options = summary.options
    facts = {
        "synthetic": True,
        "generator": "sarco synth",
        "generator_version": GENERATOR_VERSION,
        "size": options.size,
        "seed": options.seed,
        "videos": options.with_videos,
        "label_definition": "awgs2019",
        "cohorts": {name: {"participants": n, "positives": k} for name, (n, k) in summary.counts.items()},
        "images": summary.n_images,
        "videos_written": summary.n_videos,
        "missing_values": f"MCAR: {MISSING_FRACTION:.4f} of participants lack 1-3 clinical/lab values, "
                          f"{WHOLE_LAB_MISSING_SHARE:.0%} of these the whole lab table instead",
        "oracle_targets": options.targets.as_dict(),
        "oracle_auc_population": {k: round(v, 4) for k, v in summary.population_aucs.items()},
        "oracle_auc": {cohort: {k: round(v, 4) for k, v in aucs.items()}
                       for cohort, aucs in summary.oracle_aucs.items()},
    }
    if folder:
        facts["consortium_folder"] = folder
    elif options.size == CONSORTIUM:
        facts["folders"] = list(summary.folders)
    return facts


def _readme(facts: dict) -> str:
    what = "consortium" if "folders" in facts else "cohort"
    truth = "each folder's `truth.csv`" if "folders" in facts else "`truth.csv`"
    lines = [
        f"# Synthetic sarcopenia {what}",
        "",
        f"**This {what} is synthetic.** No participant, image or video comes from a real person;",
        "every value was drawn by `sarco synth` from a known generative model",
        "(docs/synthetic-cohort.md in the sarco repository).",
        "",
        f"- generator: sarco synth {facts['generator_version']}",
        f"- size: {facts['size']}, seed: {facts['seed']}, videos: {'yes' if facts['videos'] else 'no'}",
        "- labels: AWGS 2019, reproducible with `sarco label COHORT --standard awgs2019`",
        f"- missing values: {facts['missing_values']}",
        *_consortium_lines(facts),
        f"- {truth} holds the latent variables and the Bayes-optimal probabilities; "
        "training code must never read it.",
        "",
        "| cohort | participants | positives |",
        "|---|---|---|",
        *(f"| {name} | {c['participants']} | {c['positives']} |" for name, c in facts["cohorts"].items()),
        "",
        "Oracle AUC (Bayes-optimal classifier given the latent variables):",
        "",
        "| cohort | image | clinical | lab | all |",
        "|---|---|---|---|---|",
        *(f"| {name} | " + " | ".join(f"{aucs[m]:.3f}" for m in ORACLE_MODALITIES) + " |"
          for name, aucs in facts["oracle_auc"].items()),
        "| population (exact) | "
        + " | ".join(f"{facts['oracle_auc_population'][m]:.3f}" for m in ORACLE_MODALITIES) + " |",
        "",
    ]
    return "\n".join(lines)


def _consortium_lines(facts: dict) -> list[str]:
    if "folders" in facts:
        return ["- cohort folders: " + ", ".join(f"`{folder}/`" for folder in facts["folders"])
                + ": one per development site (cohort `development`, the site's own scanner and case mix), "
                f"and `{EVALUATION_FOLDER}/` with the evaluation cohorts"]
    if "consortium_folder" in facts:
        return [f"- consortium: this is `{facts['consortium_folder']}/` of a synthetic consortium; "
                "the README at its top lists the others"]
    return []
