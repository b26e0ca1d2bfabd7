"""The pooled reference: every site's participants and media in one cohort folder that loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_build.cohort import load_cohort
from model_build.federated.pooled import pool_sites
from model_build.federated.simulate import FederationError
from testkit.cohort_factory import make_cohort


def _site(root: Path, seed: int, prefix: str) -> Path:
    """A factory cohort whose participant ids start with ``prefix`` (sites have their own ids)."""
    folder = make_cohort(root, seed=seed, n_participants=6).root
    for name in ("participants.csv", "images.csv", "videos.csv"):
        path = folder / name
        path.write_text(path.read_text(encoding="utf-8").replace("P0", f"{prefix}0"), encoding="utf-8")
    for media in [*folder.glob("images/*"), *folder.glob("videos/*")]:
        media.rename(media.with_name(media.name.replace("P0", f"{prefix}0")))
    return folder


def test_the_pooled_cohort_holds_every_site_and_loads(tmp_path: Path) -> None:
    sites = [_site(tmp_path / "north", 1, "N"), _site(tmp_path / "south", 2, "S")]
    pooled = load_cohort(pool_sites(sites, tmp_path / "pooled"), check_media=True)
    singles = [load_cohort(site) for site in sites]
    assert len(pooled.participants) == sum(len(s.participants) for s in singles)
    assert len(pooled.images) == sum(len(s.images) for s in singles)
    assert len(pooled.videos) == sum(len(s.videos) for s in singles)
    first = pooled.images.iloc[0]
    assert first["path"].startswith("sites/north/")
    original = sites[0] / first["path"].removeprefix("sites/north/")
    assert pooled.media_path(first["path"]).read_bytes() == original.read_bytes()
    assert not list(tmp_path.glob("pooled.partial-*"))


def test_colliding_ids_and_schemas_are_refused_and_nothing_is_left(tmp_path: Path) -> None:
    same = [make_cohort(tmp_path / "a", seed=1).root, make_cohort(tmp_path / "b", seed=2).root]
    with pytest.raises(FederationError, match="more than one site; fix: give each site its own id prefix"):
        pool_sites(same, tmp_path / "pooled")
    assert not (tmp_path / "pooled").exists() and not list(tmp_path.glob("pooled.partial-*"))
    (same[1] / "schema.yaml").write_text((same[1] / "schema.yaml").read_text() + "\n# edited\n")
    with pytest.raises(FederationError, match="schema.yaml differ"):
        pool_sites(same, tmp_path / "pooled")
