"""The alert rules: what the database says now about each device and site, as findings.

A finding is *firing* (the condition holds: open an alert unless one is open) or *clear*
(resolve the open alert); a subject with neither (not enough data, a reading in the margin
between the firing and the clearing threshold) is left as it is. The margins keep a figure
that hovers at a threshold from opening and resolving alerts every evaluation.

Health rules look at online devices only: an offline device's last figures are stale, and its
being offline is the offline rule's business. So while a device is offline its temperature
and backlog alerts are left as they are (neither firing nor clear: the figures are unknown,
and resolving them would say the condition cleared); its next status decides. The offline
rule fires only for a lost connection (the device's last will) — a device whose app said
goodbye was switched off, as clinics do at night. Summaries carry figures and UTC times,
never anything about a screened person.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from dashboard.alert_settings import AlertSettings, RuleSettings
from dashboard.models import Device, ResultCount, TelemetrySample

log = logging.getLogger("dashboard.alerts")

TEMPERATURE_MARGIN_C = 3.0
STALE_READING = timedelta(minutes=5)  # as the page's health view: older says nothing now
UPDATE_PROBLEMS = ("rolled_back", "failed", "refused")


@dataclass(frozen=True)
class Finding:
    rule: str
    site: str
    device: str | None  # None: the whole site
    firing: bool
    summary: str = ""
    value: float | None = None
    threshold: float | None = None

    @property
    def subject(self) -> str:
        return f"{self.site}/{self.device}" if self.device else self.site


@dataclass(frozen=True)
class _DeviceNow:
    device: Device
    temp_c: float | None
    temp_received_at: datetime | None


def evaluate(session: Session, now: datetime, settings: AlertSettings) -> list[Finding]:
    """Every enabled rule over every device and site. A row that breaks a check is logged
    and skipped: one bad row must not silence the alerts of the rest of the fleet."""
    findings: list[Finding] = []
    checks = [(rule, check) for rule, check in _DEVICE_CHECKS.items() if settings.enabled(rule)]
    for row in _devices(session):
        for rule, check in checks:
            try:
                finding = check(row, now, settings.rules)
            except Exception:  # noqa: BLE001 - logged with the subject, the rest go on
                log.exception("alert rule %s failed on device %s/%s; skipped", rule,
                              row.device.site, row.device.device)
                continue
            if finding is not None:
                findings.append(finding)
    if settings.enabled("positive_rate_unusual"):
        findings += positive_rate_findings(session, now.date(), settings.rules)
    return findings


def _devices(session: Session) -> list[_DeviceNow]:
    current = and_(TelemetrySample.site == Device.site, TelemetrySample.device == Device.device,
                   TelemetrySample.at == Device.telemetry_at)
    rows = session.execute(
        select(Device, TelemetrySample.temp_max_c, TelemetrySample.received_at)
        .outerjoin(TelemetrySample, current).order_by(Device.site, Device.device))
    return [_DeviceNow(device, temp, received) for device, temp, received in rows]


def _finding(rule: str, device: Device, firing: bool, summary: str = "",
             value: float | None = None, threshold: float | None = None) -> Finding:
    return Finding(rule, device.site, device.device, firing, summary, value, threshold)


def device_offline(row: _DeviceNow, now: datetime, rules: RuleSettings) -> Finding | None:
    device = row.device
    if not (device.state == "offline" and device.connection_lost):
        return _finding("device_offline", device, firing=False)
    silent_min = (now - device.last_seen_at).total_seconds() / 60
    if silent_min <= rules.offline_minutes:
        return None
    # a time, not "no contact for N min": the summary is written once and read later (the
    # pages say how long it has been when they show it)
    return _finding("device_offline", device, True,
                    f"connection lost; last contact {device.last_seen_at:%Y-%m-%d %H:%M} UTC",
                    round(silent_min, 2), rules.offline_minutes)


def duration(minutes: float) -> str:
    """A duration for people: "40 s", "16 min", "2.5 h"."""
    if minutes < 2:
        return f"{minutes * 60:.0f} s"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h" if minutes < 2880 else f"{minutes / 1440:.1f} days"


def temperature_high(row: _DeviceNow, now: datetime, rules: RuleSettings) -> Finding | None:
    device, temp = row.device, row.temp_c
    if device.state != "online":
        return None  # figures unknown: the alert stays as it is (module docstring)
    if temp is None or row.temp_received_at is None or \
            now - row.temp_received_at > STALE_READING:
        return None
    if temp > rules.max_temp_c:
        return _finding("temperature_high", device, True,
                        f"hottest sensor {temp:.0f} °C (limit {rules.max_temp_c:.0f} °C)",
                        temp, rules.max_temp_c)
    if temp <= rules.max_temp_c - TEMPERATURE_MARGIN_C:
        return _finding("temperature_high", device, firing=False)
    return None


def backlog_high(row: _DeviceNow, now: datetime, rules: RuleSettings) -> Finding | None:
    device, queued = row.device, row.device.queued_results
    if device.state != "online":
        return None  # figures unknown: the alert stays as it is (module docstring)
    if queued is None:
        return None
    if queued > rules.max_backlog:
        return _finding("backlog_high", device, True,
                        f"{queued} results waiting on the device (limit {rules.max_backlog})",
                        queued, rules.max_backlog)
    if queued <= rules.max_backlog / 2:
        return _finding("backlog_high", device, firing=False)
    return None


def update_failed(row: _DeviceNow, now: datetime, rules: RuleSettings) -> Finding | None:
    device = row.device
    if device.update_outcome in UPDATE_PROBLEMS:
        outcome = device.update_outcome.replace("_", " ")
        return _finding("update_failed", device, True,
                        f"model update {device.update_version or '?'} {outcome}")
    return _finding("update_failed", device, firing=False)


_DEVICE_CHECKS: dict[str, Callable[[_DeviceNow, datetime, RuleSettings], Finding | None]] = {
    "device_offline": device_offline, "temperature_high": temperature_high,
    "backlog_high": backlog_high, "update_failed": update_failed,
}


def positive_rate_findings(session: Session, today: date,
                           rules: RuleSettings) -> list[Finding]:
    """Per site, the positive rate (positive / decided, rescans aside) of the recent days
    against the baseline days before them, as a p-chart: it fires outside
    ``baseline ± rate_sigmas`` binomial standard errors for the recent count, and only with
    ``rate_min_recent`` and ``rate_min_baseline`` decided results (a day's first screens say
    nothing). A drift here is a probe, a set-up or a model problem, or a real change in who
    is screened: worth a look either way."""
    recent_from = today - timedelta(days=rules.rate_recent_days - 1)
    baseline_from = recent_from - timedelta(days=rules.rate_baseline_days)
    recent = ResultCount.day >= recent_from

    def total(column, in_recent: bool):  # noqa: ANN001, ANN202
        return func.coalesce(func.sum(case((recent if in_recent else ~recent, column),
                                           else_=0)), 0)

    rows = session.execute(
        select(ResultCount.site,
               total(ResultCount.positive, True).label("recent_positive"),
               total(ResultCount.negative, True).label("recent_negative"),
               total(ResultCount.positive, False).label("base_positive"),
               total(ResultCount.negative, False).label("base_negative"))
        .where(ResultCount.day >= baseline_from, ResultCount.day <= today)
        .group_by(ResultCount.site).order_by(ResultCount.site))
    findings = []
    for row in rows:
        try:
            finding = _rate_finding(row, rules)
        except Exception:  # noqa: BLE001 - logged with the site, the rest go on
            log.exception("alert rule positive_rate_unusual failed on site %s; skipped",
                          row.site)
            continue
        if finding is not None:
            findings.append(finding)
    return findings


def _rate_finding(row, rules: RuleSettings) -> Finding | None:  # noqa: ANN001
    recent_n = row.recent_positive + row.recent_negative
    base_n = row.base_positive + row.base_negative
    if recent_n < rules.rate_min_recent or base_n < rules.rate_min_baseline:
        return None
    usual = row.base_positive / base_n
    rate = row.recent_positive / recent_n
    # a baseline of 0 % or 100 % would make any other rate infinitely unusual
    floor = 0.5 / base_n
    clipped = min(max(usual, floor), 1 - floor)
    error = math.sqrt(clipped * (1 - clipped) / recent_n)
    deviation = abs(rate - usual) / error
    if deviation <= rules.rate_sigmas - 1:
        return Finding("positive_rate_unusual", row.site, None, firing=False)
    if deviation <= rules.rate_sigmas:
        return None
    edge = usual + math.copysign(rules.rate_sigmas * error, rate - usual)
    window = "today" if rules.rate_recent_days == 1 else f"the last {rules.rate_recent_days} days"
    return Finding("positive_rate_unusual", row.site, None, True,
                   f"positive rate {rate:.0%} of {recent_n} screened {window}; usual "
                   f"{usual:.0%} (band {max(usual - rules.rate_sigmas * error, 0):.0%}–"
                   f"{min(usual + rules.rate_sigmas * error, 1):.0%})",
                   round(rate, 4), round(min(max(edge, 0.0), 1.0), 4))
