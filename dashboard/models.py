"""Tables of the dashboard database (SQLAlchemy 2 ORM).

Times are naive UTC datetimes everywhere: SQLite has no time-zone type, and one convention for
both back ends keeps the queries identical. Payload fields are copied into typed columns so
the page's group-bys run on indexes instead of parsing JSON.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints: Alembic can then drop or alter them identically on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(), dict[str, Any]: JSON()}


class Result(Base):
    """One screening result, stored once: ``result_id`` is UNIQUE and inserts skip conflicts."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[str] = mapped_column(String(36), unique=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    site: Mapped[str] = mapped_column(String(63))
    device: Mapped[str] = mapped_column(String(63))
    session_id: Mapped[str] = mapped_column(String(36))
    screening_id: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    day: Mapped[date] = mapped_column(Date)  # UTC day of ended_at: the per-day counts' key
    decision: Mapped[str] = mapped_column(String(16))
    probability: Mapped[float | None]
    score_logit: Mapped[float | None]
    threshold: Mapped[float]
    aggregation: Mapped[str] = mapped_column(String(32))
    uncertainty: Mapped[dict[str, Any] | None]  # as sent: its fields grow with the models
    usable_frames: Mapped[int]
    processed_frames: Mapped[int]
    min_usable_frames: Mapped[int]
    skipped_frames: Mapped[int]  # sum over the skip reasons: the "rejected frames" of health
    skipped: Mapped[dict[str, Any]]
    model_name: Mapped[str] = mapped_column(String(64))
    model_sha256: Mapped[str] = mapped_column(String(64))
    app_version: Mapped[str] = mapped_column(String(64))
    stored_at: Mapped[datetime]
    stored_by: Mapped[str] = mapped_column(String(64))  # ingest worker: shows the load split
    # the payload's optional ``measurements`` (docs/mqtt.md; dashboard.measurements): the
    # session medians, null where no frame measured one, and their IQR (null together); every
    # column null, ``frames_measured`` too, for a result sent without measurements
    muscle_thickness_mm: Mapped[float | None]
    muscle_thickness_px: Mapped[float | None]
    pennation_deg: Mapped[float | None]
    echo_intensity: Mapped[float | None]
    muscle_thickness_mm_iqr: Mapped[float | None]
    muscle_thickness_px_iqr: Mapped[float | None]
    pennation_deg_iqr: Mapped[float | None]
    echo_intensity_iqr: Mapped[float | None]
    frames_measured: Mapped[int | None]
    measure_model_name: Mapped[str | None] = mapped_column(String(64))  # the aponeurosis model
    measure_model_sha256: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_results_day_site", "day", "site"),
        Index("ix_results_site_device_day", "site", "device", "day"),
        Index("ix_results_decision_day", "decision", "day"),
    )


class ResultCount(Base):
    """Running totals per site, device, UTC day and model, added to in the same transaction
    as the results they count (only rows that were really inserted), so the page reads a
    few hundred rows instead of scanning a year of results."""

    __tablename__ = "result_counts"

    site: Mapped[str] = mapped_column(String(63), primary_key=True)
    device: Mapped[str] = mapped_column(String(63), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    results: Mapped[int]
    positive: Mapped[int]
    negative: Mapped[int]
    rescans: Mapped[int]
    # sums over a day's sessions: beyond 32 bits long before any one session is
    skipped_frames: Mapped[int] = mapped_column(BigInteger)
    processed_frames: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_result_counts_day_site", "day", "site"),)


class Device(Base):
    """Latest known state of a device, merged from its status, live readings and results."""

    __tablename__ = "devices"

    site: Mapped[str] = mapped_column(String(63), primary_key=True)
    device: Mapped[str] = mapped_column(String(63), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # online, offline, unknown (results only)
    status_at: Mapped[datetime | None]  # the device's clock in its last status message
    state_since: Mapped[datetime | None]  # our clock when the state last arrived
    app_version: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(64))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    queued_results: Mapped[int | None]
    fps: Mapped[float | None]
    live_at: Mapped[datetime | None]
    last_result_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime]
    # the device clock of the newest status that carried health figures: its row in
    # telemetry_samples is the device's current health
    telemetry_at: Mapped[datetime | None]
    # the outcome of the device's last model update (status.update, docs/deployment.md)
    update_version: Mapped[str | None] = mapped_column(String(64))
    update_outcome: Mapped[str | None] = mapped_column(String(16))
    update_reason: Mapped[str | None] = mapped_column(String(300))
    update_at: Mapped[datetime | None]
    update_model_sha256: Mapped[str | None] = mapped_column(String(64))
    # True while the offline state came from the device's last will (the broker lost the
    # connection: power cut, network, crash), False after a goodbye or an online status:
    # only a lost connection is an alert (clinics switch devices off at night)
    connection_lost: Mapped[bool | None]


class TelemetrySample(Base):
    """The health figures of one status (``status.health`` in docs/mqtt.md: tegrastats and
    the app's own counters), kept for ``dashboard.store.TELEMETRY_HISTORY``; the newest one
    of each device is kept however old (``Device.telemetry_at`` points at it). Keyed by the
    device clock, so the same status delivered twice (retained, or to two workers) is one
    row. Nullable as in the schema: tegrastats figures are null off a Jetson."""

    __tablename__ = "telemetry_samples"

    site: Mapped[str] = mapped_column(String(63), primary_key=True)
    device: Mapped[str] = mapped_column(String(63), primary_key=True)
    at: Mapped[datetime] = mapped_column(primary_key=True)  # the status's device time
    received_at: Mapped[datetime]  # our clock: what the history's age is measured by
    gpu_load_pct: Mapped[float | None]
    cpu_load_pct: Mapped[float | None]
    temp_max_c: Mapped[float | None]
    power_mw: Mapped[int | None]
    ram_used_mb: Mapped[int | None]
    ram_total_mb: Mapped[int | None]
    swap_used_mb: Mapped[int | None]
    fps: Mapped[float]
    frames_processed: Mapped[int] = mapped_column(BigInteger)  # since the app started
    frames_rejected: Mapped[int] = mapped_column(BigInteger)
    frame_errors: Mapped[int] = mapped_column(BigInteger)
    queue_length: Mapped[int | None]

    __table_args__ = (Index("ix_telemetry_samples_received_at", "received_at"),)


class RejectedMessage(Base):
    """A message set aside, once per distinct (topic, payload), with its reason. The payload
    is kept only when it broke no rule of the schema (a device clock outside the window, a
    result id stored with other content, a row the database refused): then it holds nothing
    the schema keeps out and is what recovering the result needs. A payload that broke the
    schema is never kept: it may hold what the schema keeps out (dashboard.messages)."""

    __tablename__ = "rejected_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    topic: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int]
    payload: Mapped[str | None] = mapped_column(Text)  # at most schema.MAX_PAYLOAD_BYTES
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    times_seen: Mapped[int]


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class ApiKey(Base):
    """Only a SHA-256 of the key is stored: keys are 256-bit random, so no slow hash is
    needed, and the digest is what a request's key is looked up by."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class WebSession(Base):
    """A staff login; the cookie holds the token, the table its SHA-256 (a leaked database
    gives no usable cookies) and the session's CSRF token."""

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class FollowUp(Base):
    """Staff marked a referral as handled (the person was contacted and referred), and later
    what came of it (``dashboard.referrals.OUTCOMES``: a fixed list, so nothing identifying
    can be typed into it)."""

    __tablename__ = "follow_ups"

    result_id: Mapped[str] = mapped_column(
        ForeignKey("results.result_id", ondelete="CASCADE"), primary_key=True)
    by_user: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    outcome: Mapped[str | None] = mapped_column(String(24))
    outcome_by: Mapped[str | None] = mapped_column(String(64))
    outcome_at: Mapped[datetime | None]


class LoginThrottle(Base):
    """Failed logins (and invalid API keys) counted per subject: a typed user name (its
    SHA-256, never the text) or a client address; see dashboard.throttle."""

    __tablename__ = "login_throttle"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # account, address...
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int]
    last_failure_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]

    __table_args__ = (Index("ix_login_throttle_last_failure_at", "last_failure_at"),)


class ReferralEvent(Base):
    """What staff did with a referral, oldest first: marked it referred, undid that, recorded
    an outcome, or wrote a note. The follow-up row says where a referral stands; this says
    who did what when, and keeps the notes."""

    __tablename__ = "referral_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[str] = mapped_column(
        ForeignKey("results.result_id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # referred, undone, outcome, note
    text: Mapped[str | None] = mapped_column(String(500))
    by_user: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]

    __table_args__ = (Index("ix_referral_events_result_id", "result_id"),)


class DeviceCommand(Base):
    """A command staff sent to a device from its page, and whether the broker took it: the
    record of who asked a device to do what."""

    __tablename__ = "device_commands"

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(63))
    device: Mapped[str] = mapped_column(String(63))
    command: Mapped[str] = mapped_column(String(16))
    screening_id: Mapped[str | None] = mapped_column(String(32))
    url: Mapped[str | None] = mapped_column(String(512))
    sha256: Mapped[str | None] = mapped_column(String(64))
    by_user: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime]
    accepted: Mapped[bool]  # published and acknowledged by the broker (QoS 1)
    detail: Mapped[str] = mapped_column(String(300))

    __table_args__ = (Index("ix_device_commands_site_device_sent_at", "site", "device",
                            "sent_at"),)


class Alert(Base):
    """One occurrence of a rule's condition for one subject (a device, or a site for the
    positive-rate rule): open, then acknowledged by staff, then resolved by staff or by the
    evaluation when the condition clears. The partial unique index keeps one unresolved
    alert per rule and subject, even with several ``serve`` processes evaluating."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(128))  # "site/device", or "site"
    site: Mapped[str] = mapped_column(String(63))
    device: Mapped[str | None] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))  # open, acknowledged, resolved
    summary: Mapped[str] = mapped_column(String(300))  # figures only, nothing identifying
    value: Mapped[float | None]
    threshold: Mapped[float | None]
    opened_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(64))  # a user, or "automatic"

    __table_args__ = (
        Index("uq_alerts_unresolved", "rule", "subject", unique=True,
              sqlite_where=text("resolved_at IS NULL"),
              postgresql_where=text("resolved_at IS NULL")),
        Index("ix_alerts_opened_at", "opened_at"),
    )


class AlertDelivery(Base):
    """The outbox of notifications: one row per alert, event (opened, resolved) and channel
    (webhook, email), written in the transaction that opened or resolved the alert, so a
    notification is neither lost in a crash nor queued twice. The idempotency key goes with
    every attempt: a receiver that saw it already can drop a repeat."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed (gave up)
    attempts: Mapped[int]
    next_attempt_at: Mapped[datetime | None]  # while pending: not before then
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("alert_id", "event", "channel",
                         name="uq_alert_deliveries_alert_id_event_channel"),
        Index("ix_alert_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    )


class DeviceStateChange(Base):
    """A device going online or offline, as its statuses said (the device page's status
    history): its app's ``online`` status, its goodbye (an ``offline`` status with a time),
    or its last will (``offline`` without a time: the broker lost the connection). Only
    changes are kept, not the status every 30 s. Every worker gets every status, so a change
    is keyed by what all of them see alike: the device time of the status that made it, or
    for a last will (which has no time of its own) the device time of the status before."""

    __tablename__ = "device_state_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(63))
    device: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))  # online, offline
    # when: the status's device time; for a last will, when the dashboard received it
    at: Mapped[datetime]
    status_at: Mapped[datetime]  # the key (above)
    connection_lost: Mapped[bool]  # offline by the last will, not by a goodbye

    __table_args__ = (
        UniqueConstraint("site", "device", "state", "status_at",
                         name="uq_device_state_changes_site_device_state_status_at"),
        Index("ix_device_state_changes_site_device_at", "site", "device", "at"),
    )
