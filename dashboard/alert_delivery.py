"""Sending the queued alert notifications (``alert_deliveries``): webhook and email, with
retries and a bound.

Each due row is first *claimed* (a conditional UPDATE that bumps its attempt count and moves
its next attempt past the send's timeout): two ``serve`` processes never send the same attempt,
and a process that dies mid-send leaves a row that is tried again once the claim lapses. A
failure is retried after ``first_retry_s``, doubling up to ``max_retry_s``; after
``max_attempts`` the row is marked failed with the last error, and the page shows it.

Delivery is at least once: a receiver that answered 2xx just before this process died, before
the success was recorded, gets that notification again. Every attempt carries the same
``Idempotency-Key`` (the Message-ID of an email), so such a repeat can be recognised and
dropped: a receiver that does so sees each notification exactly once.

The payload holds the rule, site, device, figures and times — nothing about a screened
person (no screening or result ids), because a webhook leaves the program's systems.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from dashboard.alert_settings import (
    AlertSettings,
    DeliverySettings,
    EmailSettings,
    WebhookSettings,
)
from dashboard.alerts import RULE_LABELS
from dashboard.models import Alert, AlertDelivery
from sarco_core.errors import SarcoError

log = logging.getLogger("dashboard.alerts")

CLAIM_MARGIN = timedelta(seconds=60)  # beyond the send timeout, before a claim lapses
BATCH = 50  # rows per pass: a long outage's backlog drains over several passes
Sender = Callable[[dict[str, Any], str], None]  # (payload, idempotency key); raises on failure


class DeliveryFailed(SarcoError):
    """One attempt failed; the message (no secrets, no payload) is kept as last_error."""


def payload(alert: Alert, event: str, key: str, now: datetime) -> dict[str, Any]:
    """The JSON body of a webhook (and the content of an email); format in docs/dashboard.md."""

    def stamp(moment: datetime | None) -> str | None:
        return None if moment is None else moment.isoformat(timespec="seconds") + "Z"

    return {
        "event": event, "idempotency_key": key, "sent_at": stamp(now),
        "alert": {
            "id": alert.id, "rule": alert.rule, "title": RULE_LABELS.get(alert.rule, alert.rule),
            "site": alert.site, "device": alert.device, "state": alert.state,
            "summary": alert.summary, "value": alert.value, "threshold": alert.threshold,
            "opened_at": stamp(alert.opened_at),
            "acknowledged_at": stamp(alert.acknowledged_at),
            "acknowledged_by": alert.acknowledged_by,
            "resolved_at": stamp(alert.resolved_at), "resolved_by": alert.resolved_by,
        },
    }


def webhook_sender(settings: WebhookSettings) -> Sender:
    """POST the payload as JSON; any 2xx is success. With a secret the body is signed:
    ``X-Sarco-Signature: sha256=HEX`` (HMAC-SHA256 of the exact body)."""

    def send(body: dict[str, Any], key: str) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key,
                   "X-Sarco-Event": body["event"], "User-Agent": "sarco-dashboard"}
        if settings.secret is not None:
            digest = hmac.new(settings.secret.get_secret_value().encode(), data,
                              hashlib.sha256).hexdigest()
            headers["X-Sarco-Signature"] = f"sha256={digest}"
        request = urllib.request.Request(settings.url, data=data, headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            # the host only: a URL may carry a token
            reason = getattr(exc, "reason", exc)
            raise DeliveryFailed(f"{urlsplit(settings.url).hostname}: {reason}") from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"HTTP {status}")

    return send


def email_sender(settings: EmailSettings) -> Sender:
    """One plain-text email per notification, through the configured SMTP server."""

    def send(body: dict[str, Any], key: str) -> None:
        alert = body["alert"]
        subject = alert["site"] + (f"/{alert['device']}" if alert["device"] else "")
        message = EmailMessage()
        message["Subject"] = f"[sarco] {body['event']}: {alert['title']} at {subject}"
        message["From"] = settings.sender
        message["To"] = ", ".join(settings.recipients)
        message["Message-ID"] = f"<{key}@sarco-dashboard>"
        message.set_content(f"{alert['title']} at {subject}: {alert['summary']}\n"
                            f"state {alert['state']}, opened {alert['opened_at']}\n\n"
                            + json.dumps(body, indent=2) + "\n")
        smtp_class = smtplib.SMTP_SSL if settings.security == "tls" else smtplib.SMTP
        try:
            with smtp_class(settings.smtp_host, settings.smtp_port,
                            timeout=settings.timeout_s) as smtp:
                if settings.security == "starttls":
                    smtp.starttls()
                if settings.username and settings.password is not None:
                    smtp.login(settings.username, settings.password.get_secret_value())
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"SMTP {settings.smtp_host}:{settings.smtp_port}: "
                                 f"{exc.__class__.__name__}: {exc}") from None

    return send


def senders_for(settings: AlertSettings) -> dict[str, Sender]:
    senders: dict[str, Sender] = {}
    if settings.webhook is not None:
        senders["webhook"] = webhook_sender(settings.webhook)
    if settings.email is not None:
        senders["email"] = email_sender(settings.email)
    return senders


def retry_delay(attempts: int, policy: DeliverySettings) -> timedelta:
    """After the ``attempts``-th failure: first_retry_s, doubling, at most max_retry_s."""
    return timedelta(seconds=min(policy.first_retry_s * 2 ** (attempts - 1),
                                 policy.max_retry_s))


def deliver_due(sessions: sessionmaker[Session], senders: dict[str, Sender],
                policy: DeliverySettings, clock: Callable[[], datetime],
                claim_for: timedelta) -> int:
    """Attempt every due delivery once; the number attempted. A failure of one (or a bug)
    is recorded on its row and the others go on."""
    with sessions() as session:
        due = session.execute(
            select(AlertDelivery.id, AlertDelivery.attempts)
            .where(AlertDelivery.state == "pending", AlertDelivery.next_attempt_at <= clock())
            .order_by(AlertDelivery.id).limit(BATCH)).all()
    attempted = 0
    for delivery_id, attempts in due:
        with sessions() as session:
            if not _claim(session, delivery_id, attempts, clock() + claim_for):
                continue  # another process took it
            attempted += 1
            _attempt(session, delivery_id, senders, policy, clock)
    return attempted


def _claim(session: Session, delivery_id: int, attempts: int, until: datetime) -> bool:
    claimed = session.execute(
        update(AlertDelivery).where(AlertDelivery.id == delivery_id,
                                    AlertDelivery.state == "pending",
                                    AlertDelivery.attempts == attempts)
        .values(attempts=attempts + 1, next_attempt_at=until))
    session.commit()
    return claimed.rowcount == 1


def _attempt(session: Session, delivery_id: int, senders: dict[str, Sender],
             policy: DeliverySettings, clock: Callable[[], datetime]) -> None:
    delivery = session.get(AlertDelivery, delivery_id)
    alert = session.get(Alert, delivery.alert_id)
    send = senders.get(delivery.channel)
    error = None
    if send is None:
        error = f"channel {delivery.channel} is no longer configured"
        delivery.attempts = policy.max_attempts  # nothing to retry with
    else:
        try:
            send(payload(alert, delivery.event, delivery.idempotency_key, clock()),
                 delivery.idempotency_key)
        except DeliveryFailed as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug: recorded, retried, the loop goes on
            log.exception("sending alert %d by %s failed", alert.id, delivery.channel)
            error = f"{exc.__class__.__name__}: {exc}"
    now = clock()
    if error is None:
        delivery.state, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
        delivery.last_error = None
        log.info("alert %d (%s) %s: delivered by %s", alert.id, alert.rule, delivery.event,
                 delivery.channel)
    elif delivery.attempts >= policy.max_attempts:
        delivery.state, delivery.next_attempt_at = "failed", None
        delivery.last_error = f"gave up after {delivery.attempts} attempts: {error}"[:300]
        log.error("alert %d (%s) %s by %s: %s", alert.id, alert.rule, delivery.event,
                  delivery.channel, delivery.last_error)
    else:
        delivery.next_attempt_at = now + retry_delay(delivery.attempts, policy)
        delivery.last_error = error[:300]
        log.warning("alert %d (%s) %s by %s failed (attempt %d, next at %s UTC): %s",
                    alert.id, alert.rule, delivery.event, delivery.channel, delivery.attempts,
                    delivery.next_attempt_at.strftime("%H:%M:%S"), error)
    session.commit()
