"""Loading a cohort for training and evaluation: validated first, then typed per schema.yaml.

The loader refuses a cohort with any error (it raises :class:`CohortError` listing them), so
training code never sees a duplicated id, a label of 2 or "abc" in a lab column. Opening every
image is left to `sarco validate` unless ``check_media=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from model_build.cohort.findings import CohortError, ValidationReport
from model_build.cohort.listings import MEDIA_COLUMNS
from model_build.cohort.participants import LABEL_SPEC, column_specs
from model_build.cohort.paths import cohort_file
from model_build.cohort.schema import ColumnSpec, Schema
from model_build.cohort.validate import check_cohort
from model_build.cohort.values import text_column, typed_column

_KEPT_AS_TEXT = ("participant_id", "cohort", "path")


@dataclass(frozen=True, eq=False)
class Cohort:
    """A usable cohort. Each DataFrame's index is the spreadsheet row (header = 1) of its CSV.

    ``participants``: ``participant_id`` and ``cohort`` as text, ``label`` as nullable Int64
    (NA = unknown), declared columns in their schema type (numeric -> float64, integer and
    binary -> Int64, categorical -> string; missing -> NA), other columns as string.
    ``images`` / ``videos``: None when the cohort has no such listing.
    ``report``: the warnings and infos found while loading.
    """

    root: Path
    schema: Schema
    participants: pd.DataFrame
    images: pd.DataFrame | None
    videos: pd.DataFrame | None
    report: ValidationReport

    def media_path(self, relative: str) -> Path:
        """Real location of a path listed in images.csv or videos.csv. Raises
        :class:`~model_build.cohort.paths.CohortPathError` when it is missing, not a regular
        file, or a link out of the cohort folder (the media may not have been validated)."""
        return cohort_file(self.root, relative)


def load_cohort(path: str | Path, *, check_media: bool = False,
                on_progress: Callable[[int, int], None] | None = None) -> Cohort:
    """Read and validate a cohort folder; raise :class:`CohortError` when it is unusable."""
    report, tables = check_cohort(path, media=check_media, keep_participants=True, on_progress=on_progress)
    if not report.ok:
        raise CohortError(report.findings)
    participants = _typed(tables.participants, column_specs(tables.participants.columns, tables.schema))
    participants["label"] = typed_column(tables.participants["label"], LABEL_SPEC)
    listings = {file: _typed(frame, {name: spec for name, spec in MEDIA_COLUMNS.items() if name in frame})
                for file, frame in tables.listings.items()}
    return Cohort(root=Path(path).resolve(), schema=tables.schema, participants=participants,
                  images=listings.get("images.csv"), videos=listings.get("videos.csv"), report=report)


def _typed(frame: pd.DataFrame, specs: dict[str, ColumnSpec]) -> pd.DataFrame:
    columns = {}
    for name in frame.columns:
        if name in specs:
            columns[name] = typed_column(frame[name], specs[name])
        elif name in _KEPT_AS_TEXT:
            columns[name] = frame[name]
        else:
            columns[name] = text_column(frame[name])
    return pd.DataFrame(columns, index=frame.index)
