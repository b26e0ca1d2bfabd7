"""Small site cohorts for federated tests: synthetic clinical and lab tables only.

A site is a cohort folder in the usual format. ``sarco synth OUT --size small --seed N`` writes
one with images and videos; the federated tabular test needs only ``participants.csv`` and
``schema.yaml``, so this writes the same synthetic tables (the same generator and seed, so the
same participants) without rendering any media: a second instead of a minute.
"""

from __future__ import annotations

from pathlib import Path

from model_build.synth.generate import SynthOptions, build_tables, cohort_schema


def tabular_site(root: Path, seed: int, size: str = "small", development: int | None = None) -> Path:
    """Cohort folder ``root``: the participants of ``sarco synth --size SIZE --seed SEED``, no
    media; ``development`` keeps only the first that many development participants (sites of
    different sizes, so that FedAvg's weighting shows)."""
    root.mkdir(parents=True, exist_ok=True)
    participants = build_tables(SynthOptions(size=size, seed=seed, videos=False), root).participants
    if development is not None:
        is_development = participants["cohort"] == "development"
        dropped = participants[is_development].index[development:]
        participants = participants.drop(index=dropped).reset_index(drop=True)
    participants.to_csv(root / "participants.csv", index=False, lineterminator="\n")
    cohort_schema().write(root / "schema.yaml")
    return root
