"""All sites' data on one machine: the pooled cohort, the upper reference a federation is judged by.

A consortium cannot do this (that is why it federates); the benchmark can, because the sites
are synthetic or the user's own test folders. :func:`pool_sites` writes one cohort folder in
the usual format: the sites' tables one after the other, each site's media under
``sites/<site>/`` as hard links (copies where the file system refuses), so nothing leaves the
folder through a symbolic link (the loader refuses those) and no image is duplicated on disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from model_build.federated.simulate import FederationError

LISTINGS = ("images.csv", "videos.csv")


def pool_sites(sites: list[Path], out: Path) -> Path:
    """``out``: one cohort with every site's participants and media (site folders' names keep
    them apart). Refuses sites whose schema.yaml differ or whose participant ids collide."""
    schemas = {(Path(site) / "schema.yaml").read_text(encoding="utf-8") for site in sites}
    if len(schemas) > 1:
        raise FederationError(f"{', '.join(map(str, sites))}: the sites' schema.yaml differ; fix: one schema for "
                              "every site before pooling")
    names = [Path(site).name for site in sites]
    if len(set(names)) != len(names):
        raise FederationError(f"site folders {', '.join(names)}: two share a name, which keeps their media apart "
                              "in the pooled folder; fix: rename one")
    tables: dict[str, list[pd.DataFrame]] = {"participants.csv": [], **{name: [] for name in LISTINGS}}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{out.name}.partial-", dir=out.parent))
    try:
        for site in map(Path, sites):
            tables["participants.csv"].append(pd.read_csv(site / "participants.csv", dtype=str, keep_default_na=False))
            for name in LISTINGS:
                if (site / name).is_file():
                    listing = pd.read_csv(site / name, dtype=str, keep_default_na=False)
                    for path in listing["path"]:
                        _link(site / path, partial / "sites" / site.name / path)
                    listing["path"] = [f"sites/{site.name}/{path}" for path in listing["path"]]
                    tables[name].append(listing)
        participants = pd.concat(tables["participants.csv"], ignore_index=True)
        twice = participants["participant_id"][participants["participant_id"].duplicated()].unique()
        if len(twice):
            raise FederationError(f"participant ids {', '.join(twice[:5])} are in more than one site; fix: give each "
                                  "site its own id prefix before pooling")
        for name, frames in tables.items():
            if frames:
                pd.concat(frames, ignore_index=True).to_csv(partial / name, index=False, lineterminator="\n")
        shutil.copyfile(Path(sites[0]) / "schema.yaml", partial / "schema.yaml")
        if out.exists():
            shutil.rmtree(out)
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, target)
