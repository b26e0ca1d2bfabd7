"""How a result's optional ``measurements`` (docs/mqtt.md) are stored: nullable columns of
``results`` named after the schema's fields, so the ingest copies them without a mapping to
keep in step, and the CSV export and the pages read them by the same names.

The schema (``sarco_core.wire.schema``) has already checked every value, its bound and its
agreement with the rest of the result when a payload gets here: this module only moves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sarco_core.wire import schema

QUANTITIES = tuple(schema.MEASUREMENT_BOUNDS)  # the session medians, in the schema's order


def spread_column(quantity: str) -> str:
    """The column holding a quantity's IQR (the payload's ``spread``)."""
    return f"{quantity}_iqr"


# every stored column, in the CSV export's order: the medians, the frame count, the spreads,
# the measurement model
COLUMNS = (*QUANTITIES, "frames_measured", *(spread_column(name) for name in QUANTITIES),
           "measure_model_name", "measure_model_sha256")


def stored_columns(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    """A decoded payload's ``measurements`` as ``results`` columns; all null without one
    (an older device, or one without the measurement model)."""
    if entry is None:
        return dict.fromkeys(COLUMNS)
    return {**{name: entry[name] for name in QUANTITIES},
            "frames_measured": entry["frames_measured"],
            **{spread_column(name): entry["spread"][name] for name in QUANTITIES},
            "measure_model_name": entry["model"]["name"],
            "measure_model_sha256": entry["model"]["sha256"]}
