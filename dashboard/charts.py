"""The data of the pages' charts, in the shape static/charts.js draws with uPlot: shared x
values (epoch seconds) and, per chart, one named series of y values (null: no value) per
line; a histogram (``"kind": "histogram"``) brings its own x values instead, the centres of
its bins. The page embeds it as JSON (a ``<script type="application/json">`` element, which the
Content-Security-Policy allows because it is never run) and lists the same figures in a
table, for printing and for readers without the chart.
"""

from __future__ import annotations

from datetime import datetime, time, timezone
from typing import Any
from zoneinfo import ZoneInfo

from dashboard.measure_stats import SiteMeasurements
from dashboard.trends import Trends

# what each chart shows: (key, title, unit); "count" draws whole-number ticks
TREND_CHARTS = (("screened", "Screened per day", "count"),
                ("positive_rate", "Positive rate (%)", "%"),
                ("rescans", "Rescans per day", "count"),
                ("referrals_open", "Referrals open at the end of the day", "count"))
# a measurement histogram's (title, unit of its x axis)
HISTOGRAMS = {"muscle_thickness_mm": ("Muscle thickness (mm)", "mm"),
              "pennation_deg": ("Pennation angle (°)", "°"),
              "echo_intensity": ("Echo intensity (0–255), per device", "")}
TELEMETRY_CHARTS = (("temp_max_c", "Temperature, hottest sensor (°C)", "°C"),
                    ("fps", "Frame rate (fps)", "fps"),
                    ("queue_length", "Backlog (unsent results)", "count"))


def _day_start(day) -> float:  # noqa: ANN001
    """A local date as the epoch of its UTC midnight: charts.js labels it in UTC, which
    prints the date itself whatever the browser's zone."""
    return datetime.combine(day, time(), tzinfo=timezone.utc).timestamp()


def _percent(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 1)


def trend_charts(trends: Trends) -> dict[str, Any]:
    days = trends.sites[0].days if trends.sites else []
    charts = []
    for key, title, unit in TREND_CHARTS:
        series = [{"label": site.site,
                   "values": [_percent(day.positive_rate) if key == "positive_rate"
                              else getattr(day, key) for day in site.days]}
                  for site in trends.sites]
        charts.append({"id": key, "title": title, "unit": unit, "series": series})
    return {"time": "day", "x": [_day_start(day.day) for day in days], "charts": charts}


def epoch(moment: datetime) -> float:
    """Seconds since 1970 of a naive UTC time, as uPlot's x values."""
    return moment.replace(tzinfo=timezone.utc).timestamp()


def telemetry_charts(series: dict[str, list], device: str, since: datetime, now: datetime,
                     zone: ZoneInfo) -> dict[str, Any]:
    """The sparklines span ``since`` .. ``now`` (naive UTC: the last 24 hours, whatever the
    samples cover), their times labelled in the viewer's ``zone``."""
    return {"time": "instant", "x": series["at"], "x_range": [epoch(since), epoch(now)],
            "zone": zone.key,
            "charts": [{"id": key, "title": title, "unit": unit,
                        "series": [{"label": device, "values": series[key]}]}
                       for key, title, unit in TELEMETRY_CHARTS]}


def measurement_charts(measured: SiteMeasurements) -> list[dict[str, Any]]:
    """A histogram per quantity of the site's screened results: one series for a pooled
    quantity (drawn as bars), one per device for echo intensity (lines, one per scanner)."""
    return [{"id": f"histogram-{found.quantity}", "kind": "histogram", "unit": "count",
             "title": HISTOGRAMS[found.quantity][0], "x_unit": HISTOGRAMS[found.quantity][1],
             "x": found.centres, "bin": found.width,
             "series": [{"label": device or "screened results", "values": counts}
                        for device, counts in found.counts.items()]}
            for found in measured.histograms]
