"""The committed real images (tests/data/real): every file listed in MANIFEST.csv with its
licence and SHA-256, none unlisted, every source and licence documented in SOURCES.md, and the
subset kept small (it is part of every clone)."""

from __future__ import annotations

import csv
import hashlib

from tests.support.real_data import IMAGE_SUFFIXES, REAL_DATA, real_images

MANIFEST = list(csv.DictReader((REAL_DATA / "MANIFEST.csv").open(newline="")))
NOT_IMAGES = {"MANIFEST.csv", "SOURCES.md", "make_subset.py", "LICENSE", "SOURCE-README.md"}
LICENCES = {"CC0-1.0", "CC-BY-4.0", "Apache-2.0"}
MAX_BYTES = 18_000_000


def test_every_committed_file_is_listed_with_its_checksum():
    files = sorted(path.relative_to(REAL_DATA).as_posix() for path in REAL_DATA.rglob("*")
                   if path.is_file() and path.name not in NOT_IMAGES and "__pycache__" not in path.parts)
    assert files == sorted(row["file"] for row in MANIFEST)
    assert files == [path.relative_to(REAL_DATA).as_posix() for path in real_images()]
    for row in MANIFEST:
        path = REAL_DATA / row["file"]
        assert path.suffix.lower() in IMAGE_SUFFIXES, row["file"]
        assert path.stat().st_size == int(row["bytes"]), row["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"], f"{row['file']} changed"


def test_every_source_and_licence_is_documented():
    sources = (REAL_DATA / "SOURCES.md").read_text(encoding="utf-8")
    assert {row["licence"] for row in MANIFEST} <= LICENCES
    for licence in LICENCES:
        assert licence in sources, licence
    for top in {row["file"].split("/")[0] for row in MANIFEST}:
        assert f"## {top}/" in sources, top
    for top in {row["file"].split("/")[0] for row in MANIFEST if row["licence"] == "Apache-2.0"}:
        assert "Apache License" in (REAL_DATA / top / "LICENSE").read_text(), f"{top}: Apache-2.0 text missing"


def test_the_subset_stays_small():
    assert sum(int(row["bytes"]) for row in MANIFEST) <= MAX_BYTES
