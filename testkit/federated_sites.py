"""Small site cohorts for federated tests.

A site is a cohort folder in the usual format. ``sarco synth OUT --size small --seed N`` writes
one with images and videos; the federated tabular test needs only ``participants.csv`` and
``schema.yaml``, so :func:`tabular_site` writes the same synthetic tables (the same generator and
seed, so the same participants) without rendering any media: a second instead of a minute.
:func:`image_site` is a factory cohort with images and its own participant ids.
"""

from __future__ import annotations

from pathlib import Path

from model_build.synth.generate import SynthOptions, build_tables, cohort_schema
from testkit.cohort_factory import make_cohort


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


def image_site(root: Path, seed: int, prefix: str, n_participants: int = 6, cohort: str | None = None) -> Path:
    """A factory cohort with images (``testkit.cohort_factory.make_cohort``) whose participant ids
    start with ``prefix``, as a consortium's sites have their own; ``cohort`` renames its
    development participants (e.g. ``poc``, for an evaluation folder)."""
    folder = make_cohort(root, seed=seed, n_participants=n_participants).root
    for name in ("participants.csv", "images.csv", "videos.csv"):
        path = folder / name
        text = path.read_text(encoding="utf-8").replace("P0", f"{prefix}0")
        if cohort and name == "participants.csv":
            text = text.replace(",development,", f",{cohort},")
        path.write_text(text, encoding="utf-8")
    for media in [*folder.glob("images/*"), *folder.glob("videos/*")]:
        media.rename(media.with_name(media.name.replace("P0", f"{prefix}0")))
    return folder
