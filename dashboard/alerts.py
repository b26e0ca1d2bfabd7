"""Alerts in the database: opened from the rules' findings, acknowledged and resolved by
staff, resolved automatically when the condition clears; and the queries of the page and API.

An alert moves open -> acknowledged -> resolved (or open -> resolved), each step with who and
when. There is at most one unresolved alert per rule and subject: the insert skips a conflict
on the partial unique index, so two ``serve`` processes evaluating at once open it once.
Opening or resolving an alert queues its notifications (``alert_deliveries``) in the same
transaction: a notification exists exactly when the change it tells of was committed. A
resolution is queued for the channels its opening went to, so a receiver that heard of an
alert hears of its end, whatever the configuration says by then.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dashboard.alert_rules import Finding
from dashboard.db import dialect_insert
from dashboard.models import Alert, AlertDelivery

RULE_LABELS = {
    "device_offline": "Device offline", "temperature_high": "Temperature high",
    "backlog_high": "Outbox backlog", "update_failed": "Update failed",
    "positive_rate_unusual": "Positive rate out of band",
}
AUTOMATIC = "automatic"  # resolved_by when the condition cleared
# what an automatic resolution means, per rule (the page says it in these words)
CLEARED = {
    "device_offline": "the device is back online",
    "temperature_high": "the temperature is back below the limit",
    "backlog_high": "the backlog is back down",
    "update_failed": "a later update was installed",
    "positive_rate_unusual": "the positive rate is back in its band",
}
StateFilter = Literal["active", "open", "acknowledged", "resolved", "all"]


class DeliveryRecord(BaseModel):
    event: str  # opened, resolved
    channel: str  # webhook, email
    state: str  # pending, delivered, failed
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None


class AlertRecord(BaseModel):
    id: int
    rule: str
    site: str
    device: str | None
    state: str
    summary: str
    value: float | None
    threshold: float | None
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    deliveries: list[DeliveryRecord]


@dataclass
class Changes:
    opened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)


def apply_findings(session: Session, findings: list[Finding], now: datetime,
                   channels: tuple[str, ...]) -> Changes:
    """Open an alert for each firing finding without one, resolve the unresolved alert of
    each clear finding. The caller commits."""
    unresolved = {(a.rule, a.subject): a.id for a in
                  session.scalars(select(Alert).where(Alert.resolved_at.is_(None)))}
    changes = Changes()
    for finding in findings:
        current = unresolved.get((finding.rule, finding.subject))
        if finding.firing and current is None:
            opened = _open(session, finding, now, channels)
            if opened is not None:
                changes.opened.append(opened)
        elif not finding.firing and current is not None:
            if resolve(session, current, AUTOMATIC, now):
                changes.resolved.append(current)
    return changes


def _open(session: Session, finding: Finding, now: datetime,
          channels: tuple[str, ...]) -> int | None:
    insert = dialect_insert(session.get_bind().dialect.name)
    alert_id = session.scalar(
        insert(Alert).values(
            rule=finding.rule, subject=finding.subject, site=finding.site,
            device=finding.device, state="open", summary=finding.summary[:300],
            value=finding.value, threshold=finding.threshold, opened_at=now)
        .on_conflict_do_nothing(index_elements=["rule", "subject"],
                                index_where=Alert.resolved_at.is_(None))
        .returning(Alert.id))
    if alert_id is not None:
        _queue(session, alert_id, "opened", channels, now)
    return alert_id


def _queue(session: Session, alert_id: int, event: str, channels: tuple[str, ...],
           now: datetime) -> None:
    session.add_all(AlertDelivery(
        alert_id=alert_id, event=event, channel=channel, idempotency_key=uuid.uuid4().hex,
        state="pending", attempts=0, next_attempt_at=now, created_at=now)
        for channel in channels)


def acknowledge(session: Session, alert_id: int, by: str, now: datetime) -> bool:
    """Staff have seen an open alert; False if it is not open (any more)."""
    done = session.execute(update(Alert).where(Alert.id == alert_id, Alert.state == "open")
                           .values(state="acknowledged", acknowledged_at=now,
                                   acknowledged_by=by))
    return done.rowcount == 1


def resolve(session: Session, alert_id: int, by: str, now: datetime) -> bool:
    """Close an unresolved alert (staff, or AUTOMATIC) and queue its resolution for the
    channels that were told of it; False if it was resolved already. Resolving by hand while
    the condition still holds opens a new alert at the next evaluation."""
    done = session.execute(update(Alert).where(Alert.id == alert_id,
                                               Alert.resolved_at.is_(None))
                           .values(state="resolved", resolved_at=now, resolved_by=by))
    if done.rowcount != 1:
        return False
    told = session.scalars(select(AlertDelivery.channel).where(
        AlertDelivery.alert_id == alert_id, AlertDelivery.event == "opened")).all()
    _queue(session, alert_id, "resolved", tuple(told), now)
    return True


def list_alerts(session: Session, state: StateFilter = "active", rule: str | None = None,
                site: str | None = None, limit: int = 200) -> list[AlertRecord]:
    """Newest first; "active" is open and acknowledged."""
    query = select(Alert).order_by(Alert.opened_at.desc(), Alert.id.desc()).limit(limit)
    if state == "active":
        query = query.where(Alert.resolved_at.is_(None))
    elif state != "all":
        query = query.where(Alert.state == state)
    if rule:
        query = query.where(Alert.rule == rule)
    if site:
        query = query.where(Alert.site == site)
    alerts = session.scalars(query).all()
    deliveries: dict[int, list[DeliveryRecord]] = {}
    if alerts:
        for row in session.scalars(select(AlertDelivery).where(
                AlertDelivery.alert_id.in_([a.id for a in alerts])).order_by(AlertDelivery.id)):
            deliveries.setdefault(row.alert_id, []).append(
                DeliveryRecord.model_validate(row, from_attributes=True))
    return [AlertRecord.model_validate({**_columns(alert), "deliveries":
                                        deliveries.get(alert.id, [])}) for alert in alerts]


def _columns(alert: Alert) -> dict:
    return {column.name: getattr(alert, column.name) for column in Alert.__table__.columns}


@dataclass(frozen=True)
class Unresolved:
    """An open or acknowledged alert, as the fleet, site and device pages flag it."""

    id: int
    rule: str
    label: str
    state: str
    site: str
    device: str | None
    summary: str
    value: float | None
    opened_at: datetime


def unresolved(session: Session, site: str | None = None,
               device: str | None = None) -> list[Unresolved]:
    """Open and acknowledged alerts (of a site, of a device), oldest first."""
    query = select(Alert).where(Alert.resolved_at.is_(None)).order_by(Alert.opened_at,
                                                                        Alert.id)
    if site:
        query = query.where(Alert.site == site)
    if device:
        query = query.where(Alert.device == device)
    return [Unresolved(a.id, a.rule, RULE_LABELS.get(a.rule, a.rule), a.state, a.site,
                       a.device, a.summary, a.value, a.opened_at) for a in session.scalars(query)]


def attention(session: Session, site: str | None = None) -> dict[str, list[Unresolved]]:
    """Unresolved alerts by subject: "site/device" for a device's, "site" for a site's."""
    found: dict[str, list[Unresolved]] = {}
    for alert in unresolved(session, site):
        subject = f"{alert.site}/{alert.device}" if alert.device else alert.site
        found.setdefault(subject, []).append(alert)
    return found


def unresolved_count(session: Session) -> int:
    """Open and acknowledged alerts: the number on the navigation's Alerts entry."""
    return session.scalar(select(func.count()).select_from(Alert)
                          .where(Alert.resolved_at.is_(None))) or 0
