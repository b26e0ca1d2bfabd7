"""The one place the tests find real ultrasound images: tests/data/real, a small licensed subset
of the public data in ../shared/data, committed with the repository (sources, licences and uses
in tests/data/real/SOURCES.md; every file with its SHA-256 in MANIFEST.csv). A clone alone runs
every real-image test: nothing here skips, a missing file is a failure. Paths are relative to
REAL_DATA and keep the source layout (``muscle-us-timtrack/dataset1/S1/...``); benchmarks that
need the whole data set still read ../shared/data themselves.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.paths import TEST_DATA

REAL_DATA = TEST_DATA / "real"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


def real_file(relative: str) -> Path:
    """The committed real file at ``relative``; an error naming it when it is not there."""
    path = REAL_DATA / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in the committed real-image subset (tests/data/real/MANIFEST.csv)")
    return path


def real_images(folder: str = "", *, masks: bool = True) -> list[Path]:
    """Every real image under ``folder`` (all of them by default), sorted; ``masks=False``
    leaves out the label masks stored beside some images (dl-track-aponeuroses/masks)."""
    root = REAL_DATA / folder
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder in the committed real-image subset")
    return sorted(path for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES
                  and (masks or "masks" not in path.relative_to(REAL_DATA).parts))
