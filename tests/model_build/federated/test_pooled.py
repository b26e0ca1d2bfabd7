"""The pooled reference: every site's participants and media in one cohort folder that loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_build.cohort import load_cohort
from model_build.federated.pooled import pool_sites
from model_build.federated.simulate import FederationError
from testkit.cohort_factory import make_cohort
from testkit.federated_sites import image_site


def test_the_pooled_cohort_holds_every_site_and_loads(tmp_path: Path) -> None:
    sites = [image_site(tmp_path / "north", 1, "N"), image_site(tmp_path / "south", 2, "S")]
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
