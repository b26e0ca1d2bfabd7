"""The alert loop inside ``serve``: every ``evaluate_every_s``, evaluate the rules, open and
resolve alerts, then send what is due.

A background thread, so alerts need no process of their own; it survives everything: a
failing evaluation or delivery is logged and tried again next time, the database being
unavailable included. Evaluation and delivery are separate steps, so a receiver that is down
never holds up the alerts themselves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from dashboard import alert_rules, alerts
from dashboard.alert_delivery import CLAIM_MARGIN, deliver_due, senders_for
from dashboard.alert_settings import AlertSettings
from dashboard.db import session_factory, utc_now

log = logging.getLogger("dashboard.alerts")


class AlertService:
    def __init__(self, engine: Engine, settings: AlertSettings,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self._sessions = session_factory(engine)
        self._senders = senders_for(settings)
        self._clock = clock
        timeouts = [channel.timeout_s for channel in (settings.webhook, settings.email)
                    if channel is not None]
        self._claim_for = timedelta(seconds=max(timeouts, default=0)) + CLAIM_MARGIN
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def run_once(self) -> None:
        """One evaluation and one delivery pass, each failing on its own."""
        try:
            self.evaluate()
        except Exception:  # noqa: BLE001 - the loop must not die: next time, again
            log.exception("evaluating the alert rules failed; trying again in %.0f s",
                          self.settings.evaluate_every_s)
        try:
            self.deliver()
        except Exception:  # noqa: BLE001
            log.exception("delivering alerts failed; trying again in %.0f s",
                          self.settings.evaluate_every_s)

    def evaluate(self) -> alerts.Changes:
        now = self._clock()
        with self._sessions() as session:
            findings = alert_rules.evaluate(session, now, self.settings)
            changes = alerts.apply_findings(session, findings, now, self.settings.channels)
            session.commit()
        if changes.opened or changes.resolved:
            log.info("alerts: %d opened, %d resolved", len(changes.opened),
                     len(changes.resolved))
        return changes

    def deliver(self) -> int:
        return deliver_due(self._sessions, self._senders, self.settings.delivery, self._clock,
                           self._claim_for)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.run_once()
            self._stopping.wait(self.settings.evaluate_every_s)
