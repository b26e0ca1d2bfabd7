"""What the device page shows besides its health: when it reported (status history), its
telemetry as chart series, and its results page by page.

The dashboard keeps each status that carried health figures for 24 hours
(``telemetry_samples``); a device sends one every 30 s while it runs, so a silence longer than
``GAP`` means it was away, and the history is the list of reporting and silent periods.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard.models import Result
from dashboard.queries import Telemetry

GAP = timedelta(minutes=5)  # ten missed statuses: away, not a lost message
RESULTS_PER_PAGE = 20


class StatusPeriod(BaseModel):
    reporting: bool
    start: datetime
    end: datetime
    statuses: int


class DeviceResult(BaseModel):
    result_id: str
    screening_id: str
    ended_at: datetime
    decision: str
    probability: float | None
    usable_frames: int
    model_name: str


def status_periods(samples: list[Telemetry]) -> list[StatusPeriod]:
    """Reporting periods and the silences between them, newest first."""
    periods: list[StatusPeriod] = []
    for sample in samples:
        last = periods[-1] if periods else None
        if last is not None and sample.at - last.end <= GAP:
            last.end, last.statuses = sample.at, last.statuses + 1
            continue
        if last is not None:
            periods.append(StatusPeriod(reporting=False, start=last.end, end=sample.at,
                                        statuses=0))
        periods.append(StatusPeriod(reporting=True, start=sample.at, end=sample.at,
                                    statuses=1))
    return periods[::-1]


def telemetry_series(samples: list[Telemetry]) -> dict[str, list]:
    """Columns for the sparklines: times in epoch seconds, a null point inside each silence
    so the line breaks there instead of bridging it."""
    series: dict[str, list] = {"at": [], "temp_max_c": [], "fps": [], "queue_length": []}
    previous: datetime | None = None
    for sample in samples:
        if previous is not None and sample.at - previous > GAP:
            series["at"].append(_epoch(previous + GAP / 2))
            for name in ("temp_max_c", "fps", "queue_length"):
                series[name].append(None)
        series["at"].append(_epoch(sample.at))
        series["temp_max_c"].append(sample.temp_max_c)
        series["fps"].append(sample.fps)
        series["queue_length"].append(sample.queue_length)
        previous = sample.at
    return series


def _epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=timezone.utc).timestamp()


def results_page(session: Session, site: str, device: str,
                 page: int) -> tuple[list[DeviceResult], int, int]:
    """(results newest first, the page shown, the number of pages)."""
    where = (Result.site == site, Result.device == device)
    total = session.scalar(select(func.count()).select_from(Result).where(*where)) or 0
    pages = max(1, -(-total // RESULTS_PER_PAGE))
    page = min(max(page, 1), pages)
    rows = session.scalars(select(Result).where(*where)
                           .order_by(Result.ended_at.desc(), Result.id.desc())
                           .offset((page - 1) * RESULTS_PER_PAGE).limit(RESULTS_PER_PAGE))
    return ([DeviceResult.model_validate(row, from_attributes=True) for row in rows],
            page, pages)
