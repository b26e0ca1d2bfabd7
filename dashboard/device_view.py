"""What the device page shows besides its health: its status history (online, offline and
silent periods), its telemetry as chart series, and its results (with their muscle
measurements) page by page.

The history is made of two records. The state changes (``device_state_changes``) say when
the device came online, said goodbye (switched off) or lost its connection (its last will).
Within an online period, the statuses with health figures (``telemetry_samples``, kept 24
hours, one every 30 s while the app runs) show whether it kept reporting: a silence longer
than ``GAP`` is a period without statuses. Before the first recorded change (a database from
before migration 0007) the samples alone make the history, as they did before.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard.charts import epoch
from dashboard.models import DeviceStateChange, Result
from dashboard.queries import Telemetry

GAP = timedelta(minutes=5)  # ten missed statuses: away, not a lost message
RESULTS_PER_PAGE = 20


class StatusPeriod(BaseModel):
    kind: Literal["online", "silent", "offline"]  # silent: online, but no status came
    start: datetime
    end: datetime | None  # None: until now
    statuses: int = 0  # statuses with health figures in the period
    connection_lost: bool = False  # offline: the broker lost the connection (last will)


class StateChange(BaseModel):
    state: str
    at: datetime
    connection_lost: bool


class DeviceResult(BaseModel):
    result_id: str
    screening_id: str
    ended_at: datetime
    decision: str
    probability: float | None
    usable_frames: int
    model_name: str
    # the session's muscle measurements (medians); null where not measured or not sent
    muscle_thickness_mm: float | None
    muscle_thickness_px: float | None
    pennation_deg: float | None
    echo_intensity: float | None
    frames_measured: int | None


def state_changes(session: Session, site: str, device: str,
                  since: datetime) -> list[StateChange]:
    """The device's state changes since ``since``, oldest first, led by the newest one
    before it (the state the history starts in)."""
    change = DeviceStateChange
    where = (change.site == site, change.device == device)
    before = session.scalars(select(change).where(*where, change.at < since)
                             .order_by(change.at.desc(), change.id.desc()).limit(1)).all()
    after = session.scalars(select(change).where(*where, change.at >= since)
                            .order_by(change.at, change.id)).all()
    return [StateChange.model_validate(row, from_attributes=True)
            for row in [*before, *after]]


def status_periods(samples: list[Telemetry], changes: list[StateChange] | None = None,
                   since: datetime | None = None,
                   now: datetime | None = None) -> list[StatusPeriod]:
    """Online, silent and offline periods since ``since``, newest first: offline periods
    from the state changes (switched off, or connection lost), online ones split where
    the statuses stopped for more than ``GAP``. Without state changes (or before the first),
    the samples alone: reporting periods and the silences between them."""
    changes = changes or []
    times = [sample.at for sample in samples]
    first = changes[0].at if changes else None
    periods = _reporting([t for t in times if first is None or t < first])
    for index, change in enumerate(changes):
        following = changes[index + 1].at if index + 1 < len(changes) else None
        start = change.at if since is None else max(change.at, since)
        if following is not None and since is not None and following <= since:
            continue
        if change.state == "offline":
            periods.append(StatusPeriod(kind="offline", start=start, end=following,
                                        connection_lost=change.connection_lost))
        else:
            inside = [t for t in times if start <= t and (following is None or t < following)]
            periods += _online(start, inside, following, now)
    return periods[::-1]


def _reporting(times: list[datetime]) -> list[StatusPeriod]:
    """Samples alone: a period while they came, a silence where they stopped for > GAP."""
    periods: list[StatusPeriod] = []
    for at in times:
        last = periods[-1] if periods else None
        if last is not None and last.end is not None and at - last.end <= GAP:
            last.end, last.statuses = at, last.statuses + 1
            continue
        if last is not None:
            periods.append(StatusPeriod(kind="silent", start=last.end, end=at))
        periods.append(StatusPeriod(kind="online", start=at, end=at, statuses=1))
    return periods


def _online(start: datetime, times: list[datetime], end: datetime | None,
            now: datetime | None) -> list[StatusPeriod]:
    """An online period from ``start`` to ``end`` (None: now), split into the stretches
    with statuses and the silences of more than ``GAP`` between them."""
    periods = [StatusPeriod(kind="online", start=start, end=start)]
    for at in times:
        current = periods[-1]
        if at - current.end > GAP:
            periods.append(StatusPeriod(kind="silent", start=current.end, end=at))
            periods.append(StatusPeriod(kind="online", start=at, end=at))
        periods[-1].end, periods[-1].statuses = at, periods[-1].statuses + 1
    last = periods[-1]
    closing = end or now
    if closing is not None and closing - last.end > GAP:
        periods.append(StatusPeriod(kind="silent", start=last.end, end=end))
    else:
        last.end = end
    return periods


def telemetry_series(samples: list[Telemetry]) -> dict[str, list]:
    """Columns for the sparklines: times in epoch seconds, a null point inside each silence
    so the line breaks there instead of bridging it."""
    series: dict[str, list] = {"at": [], "temp_max_c": [], "fps": [], "queue_length": []}
    previous: datetime | None = None
    for sample in samples:
        if previous is not None and sample.at - previous > GAP:
            series["at"].append(epoch(previous + GAP / 2))
            for name in ("temp_max_c", "fps", "queue_length"):
                series[name].append(None)
        series["at"].append(epoch(sample.at))
        series["temp_max_c"].append(sample.temp_max_c)
        series["fps"].append(sample.fps)
        series["queue_length"].append(sample.queue_length)
        previous = sample.at
    return series


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
