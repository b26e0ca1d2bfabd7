"""What the page, the CSV export and the REST API show: one set of queries, typed records.

Counting rules (docs/dashboard.md): a day is the day a session ended in the viewer's time
zone (the pages; the API's days are UTC days); "screened" counts
the sessions with a decision (sarcopenia or no_sarcopenia), "rescan" the ones without enough
usable frames; the positive rate is positive / screened; a referral is a positive result, and
it is open until a staff member marks it followed up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from dashboard import measurements
from dashboard.db import utc_now
from dashboard.local_days import (
    DEFAULT_DAYS,
    UTC,
    decisions_per_day,
    ended_between,
    is_utc,
    local_today,
    utc_bounds,
)
from dashboard.models import (
    Device,
    FollowUp,
    RejectedMessage,
    Result,
    ResultCount,
    TelemetrySample,
)

POSITIVE, NEGATIVE, RESCAN = "sarcopenia", "no_sarcopenia", "rescan"
# an open referral older than this is flagged overdue: a week is the program's target from a
# positive screen to the person being contacted and referred
REFERRAL_DUE = timedelta(days=7)


@dataclass(frozen=True)
class Filters:
    """Site (None: all) and an inclusive range of days in ``zone`` (the API's: UTC)."""

    site: str | None
    date_from: date
    date_to: date
    zone: ZoneInfo = UTC

    @classmethod
    def last_days(cls, today: date, site: str | None = None,
                  days: int = DEFAULT_DAYS, zone: ZoneInfo = UTC) -> Filters:
        return cls(site, today - timedelta(days=days - 1), today, zone)

    @property
    def utc_days(self) -> bool:
        """Days that are UTC days: the running totals (``result_counts``) answer."""
        return is_utc(self.zone)

    def where(self, table: type = Result) -> list:
        """The filter on ``results``, or on ``result_counts`` (UTC days only)."""
        if table is ResultCount or self.utc_days:
            clauses = [table.day >= self.date_from, table.day <= self.date_to]
        else:
            clauses = ended_between(*utc_bounds(self.date_from, self.date_to, self.zone))
        if self.site:
            clauses.append(table.site == self.site)
        return clauses


@dataclass(frozen=True)
class HealthRules:
    """When a device counts as unhealthy, and why these numbers."""

    min_fps: float = 10.0  # below this the live view stutters and sessions gather few frames
    max_rejected_share: float = 0.5  # most frames gated out: probe handling or scanner setup
    max_backlog: int = 20  # results waiting on the device: its uplink is failing
    # hottest sensor: a margin below where Jetson modules start cutting their clocks, so the
    # fan or the enclosure gets checked before the frame rate drops
    max_temp_c: float = 85.0
    live_stale_s: float = 300.0  # an fps or a temperature older than this says nothing now
    window_days: int = 2  # rejected-frame share over today and yesterday
    # an update that did not take: the device runs an older model than intended
    update_problems: tuple[str, ...] = ("rolled_back", "failed", "refused")


# ----------------------------------------------------------------------------- records


class SiteSummary(BaseModel):
    site: str
    devices: int
    devices_online: int
    screened_today: int
    positive_today: int
    rescans_today: int


class Summary(BaseModel):
    results_total: int
    devices_online: int
    devices_total: int
    day: date
    sites: list[SiteSummary]


class DailyCount(BaseModel):
    site: str
    day: date
    screened: int
    positive: int
    rescans: int
    positive_rate: float | None


class Referral(BaseModel):
    result_id: str
    screening_id: str
    ended_at: datetime
    site: str
    device: str
    probability: float | None
    decision: str
    followed_up_by: str | None
    followed_up_at: datetime | None
    outcome: str | None = Field(description="what came of the referral (see docs/dashboard.md)")
    overdue: bool = Field(description="still open a week after the screen")


class ModelVersion(BaseModel):
    model_name: str
    model_sha256: str
    app_version: str | None
    devices: int
    devices_online: int
    results_in_range: int


class Telemetry(BaseModel):
    """The health figures of one status message (docs/mqtt.md, ``status.health``):
    tegrastats (null off a Jetson) and the app's own counters since it started."""

    at: datetime = Field(description="device clock of the status that carried them (UTC)")
    gpu_load_pct: float | None
    cpu_load_pct: float | None = Field(description="mean over the online CPU cores")
    temp_max_c: float | None = Field(description="hottest real sensor")
    power_mw: int | None = Field(description="module input power")
    ram_used_mb: int | None
    ram_total_mb: int | None
    swap_used_mb: int | None
    fps: float = Field(description="frames processed per second, last two seconds")
    frames_processed: int
    frames_rejected: int = Field(description="frames the quality gate held back")
    frame_errors: int
    queue_length: int | None = Field(description="results waiting in the device's outbox")


class ModelUpdate(BaseModel):
    """The outcome of the device's last model update (docs/deployment.md)."""

    version: str | None
    outcome: Literal["installed", "rolled_back", "refused", "failed"]
    reason: str
    at: datetime
    model_sha256: str | None = Field(description="of the model running after it")


class DeviceHealth(BaseModel):
    site: str
    device: str
    state: str
    state_since: datetime | None
    last_seen_at: datetime
    model_name: str | None
    model_sha256: str | None
    app_version: str | None
    fps: float | None = Field(description="newest of the live readings and the status "
                                          "health, if from the last 5 minutes")
    rejected_share: float | None = Field(description="share of the frames of today's and "
                                                     "yesterday's sessions the gate rejected")
    queued_results: int | None
    telemetry: Telemetry | None = Field(description="health figures of the newest status "
                                                    "that carried them, however old")
    update: ModelUpdate | None
    issues: list[str]

    @property
    def healthy(self) -> bool:
        return not self.issues


class SiteFleet(BaseModel):
    site: str
    devices: list[DeviceHealth]


class RejectedRecord(BaseModel):
    topic: str
    reason: str
    size_bytes: int
    first_seen: datetime
    last_seen: datetime
    times_seen: int
    payload_kept: bool = Field(description="the payload is in the database (it broke no "
                                           "schema rule: a wrong device clock, a result id "
                                           "stored with other content, a database refusal)")


class TotalsInRange(BaseModel):
    screened: int
    positive: int
    rescans: int
    positive_rate: float | None
    referrals_open: int


# ----------------------------------------------------------------------------- queries


def _rate(positive: int, screened: int) -> float | None:
    return positive / screened if screened else None


def sites(session: Session) -> list[str]:
    names = set(session.scalars(select(Device.site).distinct()))
    return sorted(names)


def _decisions(session: Session, filters: Filters, *group: object) -> list:
    """Positive, negative and rescan counts in the filter, grouped by ``group`` (columns of
    both tables, by name): from the running totals for UTC days, else from the results."""
    if filters.utc_days:
        table = ResultCount
        columns = [func.coalesce(func.sum(ResultCount.positive), 0).label("positive"),
                   func.coalesce(func.sum(ResultCount.negative), 0).label("negative"),
                   func.coalesce(func.sum(ResultCount.rescans), 0).label("rescans")]
    else:
        table = Result
        columns = [func.count().filter(Result.decision == name).label(label)
                   for name, label in ((POSITIVE, "positive"), (NEGATIVE, "negative"),
                                       (RESCAN, "rescans"))]
    keys = [getattr(table, name) for name in group]
    query = select(*keys, *columns).where(*filters.where(table))
    return list(session.execute(query.group_by(*keys) if keys else query))


def summary(session: Session, today: date, site: str | None = None,
            zone: ZoneInfo = UTC) -> Summary:
    """Today's counts (``today`` is a day in ``zone``) and the devices online, of one site or
    (None) of the whole fleet."""
    per_site = {row.site: row for row in _decisions(
        session, Filters(site, today, today, zone), "site")}
    devices = {row.site: row for row in session.execute(
        select(Device.site, func.count().label("devices"),
               func.count().filter(Device.state == "online").label("online"))
        .where(*([Device.site == site] if site else []))
        .group_by(Device.site))}
    site_rows = []
    for name in sorted(set(per_site) | set(devices)):
        counts, fleet = per_site.get(name), devices.get(name)
        site_rows.append(SiteSummary(
            site=name, devices=fleet.devices if fleet else 0,
            devices_online=fleet.online if fleet else 0,
            screened_today=(counts.positive + counts.negative) if counts else 0,
            positive_today=counts.positive if counts else 0,
            rescans_today=counts.rescans if counts else 0))
    total = session.scalar(select(func.coalesce(func.sum(ResultCount.results), 0))
                           .where(*([ResultCount.site == site] if site else [])))
    return Summary(
        results_total=total or 0,
        devices_online=sum(s.devices_online for s in site_rows),
        devices_total=sum(s.devices for s in site_rows),
        day=today, sites=site_rows)


def daily_counts(session: Session, filters: Filters) -> list[DailyCount]:
    """Per site and day of the filter's zone, newest day first; days without results are
    left out."""
    if filters.utc_days:
        rows = [(r.site, r.day, Counter({POSITIVE: r.positive, NEGATIVE: r.negative,
                                         RESCAN: r.rescans}))
                for r in _decisions(session, filters, "site", "day")]
    else:
        rows = [(site, day, counts) for (site, day), counts in decisions_per_day(
            session, filters.zone, filters.date_from, filters.date_to, filters.site).items()]
    rows.sort(key=lambda row: (-row[1].toordinal(), row[0]))
    return [DailyCount(site=site, day=day, screened=counts[POSITIVE] + counts[NEGATIVE],
                       positive=counts[POSITIVE], rescans=counts[RESCAN],
                       positive_rate=_rate(counts[POSITIVE],
                                           counts[POSITIVE] + counts[NEGATIVE]))
            for site, day, counts in rows]


def totals(session: Session, filters: Filters) -> TotalsInRange:
    [row] = _decisions(session, filters)
    # few results are followed up: look them up by id (IN) rather than scan the range
    followed_up = session.scalar(
        select(func.count()).select_from(Result)
        .where(Result.result_id.in_(select(FollowUp.result_id)), *filters.where())) or 0
    screened = row.positive + row.negative
    return TotalsInRange(screened=screened, positive=row.positive, rescans=row.rescans,
                         positive_rate=_rate(row.positive, screened),
                         referrals_open=row.positive - followed_up)


def referral_query(*where: object) -> Select:
    """Positive results with their follow-up, open ones first, newest first."""
    return (select(Result.result_id, Result.screening_id, Result.ended_at, Result.site,
                   Result.device, Result.probability, Result.decision,
                   FollowUp.by_user, FollowUp.at, FollowUp.outcome)
            .outerjoin(FollowUp, FollowUp.result_id == Result.result_id)
            .where(Result.decision == POSITIVE, *where)
            .order_by(FollowUp.at.is_not(None), Result.ended_at.desc(), Result.id))


def referral_records(session: Session, query: Select, now: datetime) -> list[Referral]:
    return [Referral(result_id=r.result_id, screening_id=r.screening_id, ended_at=r.ended_at,
                     site=r.site, device=r.device, probability=r.probability,
                     decision=r.decision, followed_up_by=r.by_user, followed_up_at=r.at,
                     outcome=r.outcome,
                     overdue=r.at is None and now - r.ended_at > REFERRAL_DUE)
            for r in session.execute(query)]


def referrals(session: Session, filters: Filters, limit: int | None = 200,
              now: datetime | None = None) -> list[Referral]:
    """Open referrals first, newest first; ``now`` (naive UTC) decides what is overdue."""
    query = referral_query(*filters.where())
    if limit is not None:
        query = query.limit(limit)
    return referral_records(session, query, now or utc_now())


def model_versions(session: Session, filters: Filters) -> list[ModelVersion]:
    table = ResultCount if filters.utc_days else Result
    results = {(r.model_name, r.model_sha256): r.n for r in session.execute(
        select(table.model_name, table.model_sha256,
               func.sum(ResultCount.results).label("n") if table is ResultCount
               else func.count().label("n"))
        .where(*filters.where(table))
        .group_by(table.model_name, table.model_sha256))}
    device_filter = [Device.site == filters.site] if filters.site else []
    rows = session.execute(
        select(Device.model_name, Device.model_sha256, Device.app_version,
               func.count().label("devices"),
               func.count().filter(Device.state == "online").label("online"))
        .where(Device.model_name.is_not(None), *device_filter)
        .group_by(Device.model_name, Device.model_sha256, Device.app_version)
        .order_by(func.count().desc()))
    return [ModelVersion(model_name=r.model_name, model_sha256=r.model_sha256,
                         app_version=r.app_version, devices=r.devices, devices_online=r.online,
                         results_in_range=results.get((r.model_name, r.model_sha256), 0))
            for r in rows]


def device_health(session: Session, now: datetime, site: str | None = None,
                  rules: HealthRules | None = None, zone: ZoneInfo = UTC) -> list[DeviceHealth]:
    """Every device (of ``site``) with its issues; "today and yesterday" (the rejected
    frames) are days in ``zone``."""
    rules = rules or HealthRules()
    today = local_today(zone, now)
    window = Filters(site, today - timedelta(days=rules.window_days - 1), today, zone)
    table = ResultCount if window.utc_days else Result
    frames = {(r.site, r.device): r for r in session.execute(
        select(table.site, table.device,
               func.sum(table.skipped_frames).label("skipped"),
               func.sum(table.processed_frames).label("processed"))
        .where(*window.where(table))
        .group_by(table.site, table.device))}
    rows = session.execute(
        select(Device, TelemetrySample)
        .outerjoin(TelemetrySample, and_(TelemetrySample.site == Device.site,
                                         TelemetrySample.device == Device.device,
                                         TelemetrySample.at == Device.telemetry_at))
        .where(*([Device.site == site] if site else []))
        .order_by(Device.site, Device.device))

    def fresh(at: datetime | None) -> bool:
        return at is not None and (now - at).total_seconds() <= rules.live_stale_s

    health = []
    for device, sample in rows:
        counts = frames.get((device.site, device.device))
        rejected = (counts.skipped / counts.processed) if counts and counts.processed else None
        telemetry = _telemetry(sample) if sample is not None else None
        update = _update(device)
        # the newer of a live reading (sessions only) and the status's health (always); the
        # live reading on a tie
        readings = [(device.live_at, device.fps)] if fresh(device.live_at) else []
        if telemetry is not None and fresh(telemetry.at):
            readings.append((telemetry.at, telemetry.fps))
        fps = max(readings, key=lambda reading: reading[0])[1] if readings else None
        temp = telemetry.temp_max_c if telemetry is not None and fresh(telemetry.at) else None
        health.append(DeviceHealth(
            site=device.site, device=device.device, state=device.state,
            state_since=device.state_since, last_seen_at=device.last_seen_at,
            model_name=device.model_name, model_sha256=device.model_sha256,
            app_version=device.app_version, fps=fps, rejected_share=rejected,
            queued_results=device.queued_results, telemetry=telemetry, update=update,
            issues=_issues(rules, device, fps, rejected, temp, update)))
    return health


def _issues(rules: HealthRules, device: Device, fps: float | None, rejected: float | None,
            temp: float | None, update: ModelUpdate | None) -> list[str]:
    """An offline device shows only that and a failed update: its frame rate, temperature,
    backlog and rejected frames are from before it went away and say nothing about now."""
    issues = []
    if device.state != "online":
        issues.append(device.state)
    backlog = device.queued_results
    if device.state == "offline":
        fps = temp = rejected = backlog = None
    if fps is not None and fps < rules.min_fps:
        issues.append(f"low fps ({fps:.1f})")
    if rejected is not None and rejected > rules.max_rejected_share:
        issues.append(f"{rejected:.0%} frames rejected")
    if backlog is not None and backlog > rules.max_backlog:
        issues.append(f"backlog of {backlog} results")
    if temp is not None and temp >= rules.max_temp_c:
        issues.append(f"hot ({temp:.0f} °C)")
    if update is not None and update.outcome in rules.update_problems:
        issues.append(" ".join(filter(None, ("update", update.version,
                                             update.outcome.replace("_", " ")))))
    return issues


def _telemetry(sample: TelemetrySample) -> Telemetry:
    return Telemetry.model_validate(sample, from_attributes=True)


def _update(device: Device) -> ModelUpdate | None:
    if device.update_outcome is None or device.update_at is None:
        return None
    return ModelUpdate(version=device.update_version, outcome=device.update_outcome,
                       reason=device.update_reason or "", at=device.update_at,
                       model_sha256=device.update_model_sha256)


def telemetry_history(session: Session, site: str, device: str,
                      since: datetime) -> list[Telemetry] | None:
    """A device's health samples since ``since`` (our clock), oldest first; None if there is
    no such device."""
    if session.get(Device, (site, device)) is None:
        return None
    samples = session.scalars(
        select(TelemetrySample)
        .where(TelemetrySample.site == site, TelemetrySample.device == device,
               TelemetrySample.received_at >= since)
        .order_by(TelemetrySample.at))
    return [_telemetry(sample) for sample in samples]


def fleet_by_site(health: list[DeviceHealth]) -> list[SiteFleet]:
    grouped: dict[str, list[DeviceHealth]] = {}
    for device in health:
        grouped.setdefault(device.site, []).append(device)
    return [SiteFleet(site=site, devices=devices) for site, devices in grouped.items()]


def rejected_messages(session: Session, limit: int = 20) -> list[RejectedRecord]:
    rows = session.scalars(select(RejectedMessage).order_by(RejectedMessage.last_seen.desc())
                           .limit(limit))
    return [RejectedRecord(topic=r.topic, reason=r.reason, size_bytes=r.size_bytes,
                           first_seen=r.first_seen, last_seen=r.last_seen,
                           times_seen=r.times_seen, payload_kept=r.payload is not None)
            for r in rows]


def rejected_total(session: Session) -> int:
    return session.scalar(select(func.coalesce(func.sum(RejectedMessage.times_seen), 0))) or 0


# the results export: a result's fields, then its muscle measurements (empty without them)
RESULT_COLUMNS = ("result_id", "screening_id", "site", "device", "started_at", "ended_at",
                  "decision", "probability", "threshold", "usable_frames",
                  "processed_frames", "skipped_frames", "model_name", "model_sha256",
                  "app_version", "stored_at", *measurements.COLUMNS)


def iter_results(session: Session, filters: Filters) -> Iterator[tuple]:
    """Every result in the filter, oldest first, streamed (an export may be large)."""
    query = (select(*(getattr(Result, name) for name in RESULT_COLUMNS))
             .where(*filters.where()).order_by(Result.ended_at, Result.id)
             .execution_options(yield_per=2000))
    yield from session.execute(query)
