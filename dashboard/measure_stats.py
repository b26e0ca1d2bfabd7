"""A site's muscle measurements over a range of days, for the site page: how many results
carried them, and per quantity the median, the quartiles and a histogram.

What is pooled, and why:

* Muscle thickness in **millimetres** and the **pennation angle** are geometry, comparable
  between scanners: one distribution per site.
* Thickness in **pixels** is not: a pixel's size depends on the scanner, its probe and its
  depth setting. A result with pixels alone (its device knew no pixel size) is counted, never
  pooled.
* **Echo intensity** compares only within one scanner and preset (``ECHO_CAVEAT`` in
  ``sarco_core.measure``): one distribution per device.

Only screened results count (a decision; a rescan's person is scanned again, and would count
twice). Each result gives its session median; the figures are the median and quartiles of
those, as ``statistics.quantiles`` computes them with the inclusive method (numpy's default
linear interpolation, which the device uses for a session's own IQR).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import Result
from dashboard.queries import RESCAN, Filters

POOLED = ("muscle_thickness_mm", "pennation_deg")  # one distribution per site
PER_DEVICE = ("echo_intensity",)  # one per device: comparable within one scanner only
LABELS = {"muscle_thickness_mm": "Muscle thickness (mm)", "pennation_deg": "Pennation angle (°)",
          "echo_intensity": "Echo intensity"}
# histogram bin widths to choose from (the narrowest that needs at most MAX_BINS bins; the
# widest covers every bound of schema.MEASUREMENT_BOUNDS but the pixels', which never pool)
BIN_WIDTHS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
MAX_BINS = 20
_EDGE = 1e-9  # a value on a bin's edge (17.0 with width 0.1) belongs to the bin it starts


class QuantitySummary(BaseModel):
    """One quantity's distribution over a site's results (or one device's, for echo
    intensity): the table row under the site page's histograms."""

    quantity: str = Field(description="the schema's name, e.g. muscle_thickness_mm")
    device: str | None = Field(description="per device (echo intensity); null: the site")
    n: int = Field(description="screened results with the quantity measured")
    median: float
    q1: float = Field(description="25th percentile of the results' session medians")
    q3: float = Field(description="75th percentile")

    @property
    def name(self) -> str:
        """The quantity in words, with its unit."""
        return LABELS[self.quantity]


@dataclass(frozen=True)
class Histogram:
    """Counts per bin: bin ``i`` holds ``start + i*width <= value < start + (i+1)*width``."""

    quantity: str
    start: float
    width: float
    counts: dict[str | None, list[int]]  # per device for echo intensity, else {None: ...}

    @property
    def centres(self) -> list[float]:
        """The bins' middles: the chart's x values (a bar is drawn centred on its bin)."""
        bins = len(next(iter(self.counts.values())))
        return [round(self.start + (i + 0.5) * self.width, 6) for i in range(bins)]


@dataclass(frozen=True)
class SiteMeasurements:
    """What the site page shows of the measurements; the counts say how much of the site's
    screening the distributions stand for."""

    screened: int  # results with a decision in the range
    with_measurements: int  # of those, the ones that carried measurements
    thickness_px_only: int  # of those, thickness in pixels without millimetres
    summaries: list[QuantitySummary]
    histograms: list[Histogram]


def site_measurements(session: Session, filters: Filters) -> SiteMeasurements:
    """The filter's site (or every site, pooled) over its days; see the module docstring."""
    rows = session.execute(
        select(Result.device, Result.frames_measured, Result.muscle_thickness_mm,
               Result.muscle_thickness_px, Result.pennation_deg, Result.echo_intensity)
        .where(*filters.where(), Result.decision != RESCAN)
        .order_by(Result.device)).all()  # a quantity's devices in order
    values: dict[str, dict[str | None, list[float]]] = {q: {} for q in POOLED + PER_DEVICE}
    for row in rows:
        for quantity in POOLED + PER_DEVICE:
            value = getattr(row, quantity)
            if value is not None:
                group = row.device if quantity in PER_DEVICE else None
                values[quantity].setdefault(group, []).append(value)
    summaries = [_summary(quantity, group, found)
                 for quantity, groups in values.items() for group, found in groups.items()]
    return SiteMeasurements(
        screened=len(rows),
        with_measurements=sum(row.frames_measured is not None for row in rows),
        thickness_px_only=sum(row.muscle_thickness_mm is None
                              and row.muscle_thickness_px is not None for row in rows),
        summaries=summaries,
        histograms=[histogram(quantity, groups) for quantity, groups in values.items()
                    if groups])


def _summary(quantity: str, device: str | None, values: list[float]) -> QuantitySummary:
    if len(values) == 1:  # quantiles need two values; one result is its own quartiles
        q1 = median = q3 = values[0]
    else:
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return QuantitySummary(quantity=quantity, device=device, n=len(values), median=median,
                           q1=q1, q3=q3)


def histogram(quantity: str, groups: dict[str | None, list[float]]) -> Histogram:
    """One set of bins for every group (so a device's line compares with the others'): the
    narrowest width of ``BIN_WIDTHS`` that covers the values in ``MAX_BINS`` bins, starting
    on a multiple of itself."""
    pooled = [value for found in groups.values() for value in found]
    low, high = min(pooled), max(pooled)
    width = next(w for w in BIN_WIDTHS if _index(high, w) - _index(low, w) < MAX_BINS)
    first = _index(low, width)
    bins = _index(high, width) - first + 1
    counts = {}
    for group, found in groups.items():
        counts[group] = [0] * bins
        for value in found:
            counts[group][_index(value, width) - first] += 1
    return Histogram(quantity, round(first * width, 6), width, counts)


def _index(value: float, width: float) -> int:
    return math.floor(value / width + _EDGE)
