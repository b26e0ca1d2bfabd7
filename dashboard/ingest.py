"""The ingest worker: MQTT 5 subscriber -> schema validation -> database, acknowledged late.

Why it is built this way:

* Every payload is checked with ``sarco_core.wire.schema.decode``, the module the devices build
  their payloads with, so the two sides cannot drift, and with this worker's clock; a
  message that fails there or in the store is recorded with its reason in
  ``rejected_messages``, acknowledged, and the worker carries on (dashboard.messages). A
  message is never retried for its own sake, only while the database is unavailable.
* Results are acknowledged (PUBACK) only after the transaction that stores them has
  committed (paho's manual acks). A crash before the commit means the broker delivers the
  message again; a crash after it means a duplicate that ``ON CONFLICT DO NOTHING`` drops.
  Nothing acknowledged is ever lost, nothing is counted twice.
* The session is persistent (clean start off, session expiry): while the dashboard is down
  the broker queues results for it instead of discarding them. The worker subscribes again
  on every CONNACK, session present or not: Mosquitto does not restore a ``$share``
  subscription after a restart. It reconnects quickly (0.5 s, doubling to 5 s at most):
  until it is back, the broker has no subscriber for results.
* A refused subscription (SUBACK failure: the ACL, or a broker without MQTT 5) is a setup
  error that waiting does not fix: the worker stops and reports it (``state.failed``), and
  the commands exit 1.
* Several workers share the load through one MQTT 5 shared subscription
  (``$share/GROUP/sarco/v1/#``): the broker gives each message to one of them. Retained
  messages are never sent to shared subscriptions, so each worker also holds an ordinary
  subscription to the status topics; status writes are idempotent, so it does not matter
  that every worker applies every status. Subscription identifiers tell the two apart.
* A worker's broker session outlives the worker: Mosquitto keeps handing it its share of
  the results while it is stopped (they wait in its queue, for ``session_expiry_s``). So a
  worker keeps a stable name, and one that is taken out of service for good is *retired*
  (``retire()``): it leaves the group, drains what was queued for it and deletes its session.
* Acks carry the connection they belong to: paho's message ids restart with a connection,
  and acknowledging an old id on a new connection would acknowledge the wrong message.
"""

from __future__ import annotations

import logging
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from dashboard.db import utc_now
from dashboard.messages import Rejection, admit
from dashboard.store import Batch, FleetStore
from sarco_core.wire import schema
from sarco_core.wire.broker import BrokerSettings, make_client

log = logging.getLogger("dashboard.ingest")

_ALL_TOPICS = f"{schema.TOPIC_ROOT}/#"
_STATUS_TOPICS = f"{schema.TOPIC_ROOT}/+/+/status"
_SHARED_ID, _STATUS_ID = 1, 2  # MQTT 5 subscription identifiers


@dataclass(frozen=True)
class IngestSettings:
    """``worker`` names this worker: MQTT client id ``sarco-dashboard-WORKER`` (must be unique
    and stable, it names the persistent session) and the ``stored_by`` of its rows."""

    broker: BrokerSettings
    worker: str
    share_group: str = "sarco-dashboard"
    session_expiry_s: int = 7 * 24 * 3600  # how long the broker queues for a stopped worker
    receive_maximum: int = 1000  # unacknowledged messages the broker may send at once
    max_batch: int = 500  # messages per transaction
    # reconnection: a few workers, not a fleet, so no need to spread out; short, because
    # results published while no worker is subscribed reach nobody
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 5.0
    stall_after_s: float = 30.0  # unhealthy: a message waits, or no broker, this long


@dataclass
class IngestState:
    """What the page and the tests see of a worker."""

    connected: bool = False
    detail: str = "not started"
    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    last_message_at: datetime | None = None
    last_error: str | None = None
    waiting_since: datetime | None = None  # the oldest message read and not yet settled
    disconnected_since: datetime | None = None
    failed: str | None = None  # why the worker gave up (a refused subscription)


@dataclass(frozen=True)
class _Delivery:
    connection: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    subscription_ids: tuple[int, ...]
    received_at: datetime


@dataclass
class _Connection:
    number: int = 0
    pending_subscriptions: set[int] = field(default_factory=set)
    subscribed: threading.Event = field(default_factory=threading.Event)

# SUBACK reason codes that no retry fixes: not authorized, topic filter invalid, shared
# subscriptions / subscription identifiers / wildcards not supported (MQTT 5, 3.9.3)
_PERMANENT_REFUSALS = {0x87, 0x8F, 0x9E, 0xA1, 0xA2}

class IngestWorker:
    """``start()``, then messages flow into the database until ``stop()``.

    One thread does everything: it reads what the broker sent (paho's external-loop API),
    stores it in one transaction, acknowledges it, and reads again. A separate network
    thread would hand every message to the writer through a queue and fight it for the GIL
    at each of the several system calls paho makes per message; one thread costs a quarter
    less CPU per result and batches by itself (what arrived during a write is the next
    batch). Other threads talk to it only through ``_requests``."""

    def __init__(self, engine: Engine, settings: IngestSettings) -> None:
        self.settings = settings
        self.state = IngestState()
        self._store = FleetStore(engine, settings.worker)
        self._inbox: list[_Delivery] = []
        self._requests: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._expire_session = False  # at stop: delete the broker session (retire)
        self._retiring = False
        self._delivered = 0  # messages read from the broker ...
        self._settled = 0  # ... and stored (or dropped) and acknowledged
        self._connection = _Connection()
        self._client = self._new_client()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background (retrying with backoff while the broker is away) and
        start storing."""
        broker = self.settings.broker
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry_s
        properties.ReceiveMaximum = self.settings.receive_maximum
        self.state.detail = f"connecting to {broker.url}"
        self.state.disconnected_since = utc_now()
        self._client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_s,
                                   clean_start=False, properties=properties)
        self._thread.start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Block until the worker is connected and that connection's subscriptions are
        acknowledged (a lost connection's count for nothing)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.state.connected and self._connection.subscribed.is_set():
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Store what was read, then disconnect (the persistent session stays on the broker:
        what it holds for this worker comes with the next start)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.state.connected = False
        self.state.detail = "stopped"

    def retire(self, quiet_s: float = 3.0, timeout_s: float = 600.0) -> bool:
        """Leave the shared group, store everything the broker still holds for this worker,
        then end the session for good (MQTT 5 session expiry 0). Returns False if messages
        kept coming for ``timeout_s`` (the session is then kept: nothing is lost)."""
        if not self.wait_subscribed(30):
            self.stop()
            return False

        def leave() -> None:
            self._retiring = True  # also for a reconnection: subscribe to nothing
            # statuses would keep it busy for ever; what matters is what waits in the session
            self._client.unsubscribe([f"$share/{self.settings.share_group}/{_ALL_TOPICS}",
                                      _STATUS_TOPICS])

        self._requests.put(leave)
        deadline = time.monotonic() + timeout_s
        quiet_since, seen = time.monotonic(), -1
        while time.monotonic() - quiet_since < quiet_s:
            if time.monotonic() > deadline:
                self.stop()
                return False
            if self._delivered != seen or self._settled != self._delivered:
                seen, quiet_since = self._delivered, time.monotonic()
            time.sleep(0.1)
        self._expire_session = True
        self.stop()
        self.state.detail = "retired: session deleted on the broker"
        return True

    def problem(self, now: datetime) -> str | None:
        """Why this worker is unhealthy (``/healthz``), or None: it gave up, a message it
        read has waited longer than ``stall_after_s`` to be stored, or it has had no broker
        connection for that long."""
        state, limit = self.state, timedelta(seconds=self.settings.stall_after_s)
        if state.failed:
            return state.failed
        if state.waiting_since is not None and now - state.waiting_since > limit:
            waited = (now - state.waiting_since).total_seconds()
            return (f"ingest stalled: a message has waited {waited:.0f} s to be stored "
                    f"(last error: {state.last_error or 'none'})")
        if state.disconnected_since is not None and now - state.disconnected_since > limit:
            gone = (now - state.disconnected_since).total_seconds()
            return f"no connection to the broker for {gone:.0f} s ({state.detail})"
        return None

    def wait_for(self, predicate: Callable[[IngestState], bool], timeout_s: float) -> bool:
        """Block until ``predicate(state)`` holds (tests, benchmark); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(self.state):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        delay = self.settings.reconnect_min_s
        while not self._stopping.is_set():
            try:
                if self._client.socket() is not None or self._reconnect():
                    if self._serve():
                        delay = self.settings.reconnect_min_s  # it was connected
                        continue
            except Exception:  # a bug must not end the worker silently; nothing unstored is acked
                log.exception("the ingest loop failed")
                self._set_detail("the ingest loop failed (see the log); reconnecting",
                                 error=True)
                self._client.disconnect()
            self._stopping.wait(delay)
            delay = min(delay * 2, self.settings.reconnect_max_s)
        self._disconnect()

    def _reconnect(self) -> bool:
        try:
            self._client.reconnect()
        except OSError as exc:
            self._set_detail(f"cannot reach the broker at {self.settings.broker.url} "
                             f"({exc}); retrying", error=True)
            return False
        return True

    def _serve(self) -> bool:
        """Read, store and acknowledge until the connection ends or the worker stops;
        True if the broker accepted the connection meanwhile."""
        client = self._client
        misc_at = time.monotonic()
        while not self._stopping.is_set() and (sock := client.socket()) is not None:
            pending = getattr(sock, "pending", None)  # TLS may hold decrypted bytes
            if not (pending and pending()):
                select.select([sock], [sock] if client.want_write() else [], [], 0.1)
            self._read()
            if self._inbox:
                self._settle()
            while not self._requests.empty():
                self._requests.get()()
            if client.want_write():
                client.loop_write()
            if time.monotonic() - misc_at >= 1.0:
                misc_at = time.monotonic()
                client.loop_misc()  # keepalive: pings, and notices a silent broker
        if self._inbox:  # read before the connection ended: store; the ack goes nowhere
            self._settle()
        return self._connection.subscribed.is_set()

    def _read(self) -> None:
        """Everything the socket holds, up to ``max_batch`` messages. paho reads one packet
        per ``loop_read``; stop at the first call that brings no message."""
        for _ in range(self.settings.max_batch):
            before = len(self._inbox)
            if self._client.loop_read() != mqtt.MQTT_ERR_SUCCESS or len(self._inbox) == before:
                return

    def _disconnect(self) -> None:
        if self._client.socket() is None:
            return
        properties = None
        if self._expire_session:
            properties = Properties(PacketTypes.DISCONNECT)
            properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        deadline = time.monotonic() + 5
        while self._client.want_write() and time.monotonic() < deadline:
            self._client.loop_write()

    # ------------------------------------------------------------------ MQTT side

    def _new_client(self) -> mqtt.Client:
        client = make_client(self.settings.broker, f"sarco-dashboard-{self.settings.worker}",
                             protocol="5", manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:  # noqa: ANN001
        if reason.is_failure:
            hint = (" check --username and --password-file" if reason.value in (134, 135)
                    else "")
            self._set_detail(f"broker {self.settings.broker.url} refused: {reason}.{hint}",
                             error=True)
            return
        connection = _Connection(number=self._connection.number + 1)
        shared = f"$share/{self.settings.share_group}/{_ALL_TOPICS}"
        wanted = [] if self._retiring else [(shared, _SHARED_ID), (_STATUS_TOPICS, _STATUS_ID)]
        if not wanted:
            connection.subscribed.set()
        # one SUBSCRIBE each: a subscription identifier belongs to the whole packet
        for topic, identifier in wanted:
            subscribe_properties = Properties(PacketTypes.SUBSCRIBE)
            subscribe_properties.SubscriptionIdentifier = identifier
            _, mid = client.subscribe(topic, qos=1, properties=subscribe_properties)
            connection.pending_subscriptions.add(mid)
        self._connection = connection
        self.state.connected = True
        self.state.disconnected_since = None
        self._set_detail(f"connected to {self.settings.broker.url} as worker "
                         f"{self.settings.worker} (group {self.settings.share_group})")

    def _on_subscribe(self, client, userdata, mid, reasons, properties) -> None:  # noqa: ANN001
        failed = [str(r) for r in reasons if r.is_failure]
        if failed and not any(r.value in _PERMANENT_REFUSALS for r in reasons):
            # e.g. 0x80 unspecified error, 0x97 quota exceeded: a new connection may succeed
            self._set_detail(f"the broker {self.settings.broker.url} declined the subscription "
                             f"for now ({', '.join(failed)}); reconnecting", error=True)
            client.disconnect()
            return
        if failed:
            user = self.settings.broker.username or "(anonymous)"
            message = (f"the broker {self.settings.broker.url} refused the subscription "
                       f"({', '.join(failed)}): it must speak MQTT 5 and its ACL must let "
                       f"user {user} subscribe to sarco/v1/#")
            self._set_detail(message, error=True)
            with self._changed:
                self.state.failed = message
                self._changed.notify_all()
            self._stopping.set()  # waiting does not fix a refusal: give up, loudly
            return
        connection = self._connection
        connection.pending_subscriptions.discard(mid)
        if not connection.pending_subscriptions:
            connection.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:  # noqa: ANN001
        self.state.connected = False
        self.state.disconnected_since = self.state.disconnected_since or utc_now()
        if not self._stopping.is_set():
            self._set_detail(f"disconnected from {self.settings.broker.url} ({reason}); "
                             "reconnecting", error=True)

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        identifiers = getattr(message.properties, "SubscriptionIdentifier", None) or ()
        self._delivered += 1
        self._inbox.append(_Delivery(
            connection=self._connection.number, mid=message.mid, qos=message.qos,
            topic=message.topic, payload=message.payload,
            subscription_ids=tuple(identifiers), received_at=utc_now()))

    # ------------------------------------------------------------------ storing

    def _settle(self) -> None:
        deliveries, self._inbox = self._inbox, []
        oldest = min(delivery.received_at for delivery in deliveries)
        self.state.waiting_since = min(oldest, self.state.waiting_since or oldest)
        batch = self._sort(deliveries)
        if self._write(batch):
            self._acknowledge(deliveries)
        self._settled += len(deliveries)

    def _sort(self, deliveries: list[_Delivery]) -> Batch:
        batch = Batch()
        for delivery in deliveries:
            admitted = admit(delivery.topic, delivery.payload, delivery.received_at)
            if isinstance(admitted, Rejection):
                batch.rejections.append(admitted)
                continue
            kind, item = admitted
            if kind == "result":
                batch.results.append(item)
            elif kind == "live":
                batch.live.append(item)
            elif kind == "status" and (_STATUS_ID in delivery.subscription_ids
                                       or not delivery.subscription_ids):
                batch.statuses.append(item)
            # a status through the shared subscription is the duplicate of the one above;
            # commands are the dashboard's own traffic to devices: valid, nothing to store
        return batch

    def _write(self, batch: Batch) -> bool:
        """Store the batch, retrying while the database is unavailable (the store sets
        aside what the database refuses, so only an unavailable database or a bug gets
        here). Meanwhile nothing is read or acknowledged, so the broker holds back new
        messages (back-pressure); if that lasts beyond the keepalive the broker drops the
        connection and delivers the unacknowledged messages again after the reconnection.
        ``/healthz`` reports the stall. False if the worker was stopped first (the
        messages stay unacknowledged and come again)."""
        delay = 0.5
        while True:
            try:
                outcome = self._store.write(batch, utc_now())
                break
            except SQLAlchemyError as exc:
                self._set_detail(f"database write failed, retrying: {exc.__class__.__name__}: "
                                 f"{str(exc).splitlines()[0]}", error=True)
            except Exception:  # a bug must not kill the thread silently; nothing is acked
                log.exception("storing a batch failed")
                self._set_detail("storing a batch failed (see the log); retrying", error=True)
            if self._stopping.wait(delay):
                return False
            delay = min(delay * 2, 10.0)
        with self._changed:
            self.state.stored += outcome.stored
            self.state.duplicates += outcome.duplicates
            self.state.rejected += outcome.rejected
            self.state.messages += len(batch)
            self.state.last_message_at = utc_now()
            self.state.waiting_since = None  # stored: nothing read is waiting any more
            self._changed.notify_all()
        for rejection in batch.rejections:
            log.warning("rejected a message on %s: %s", rejection.topic, rejection.reason)
        return True

    def _acknowledge(self, deliveries: list[_Delivery]) -> None:
        current = self._connection.number
        for delivery in deliveries:
            # an ack for an earlier connection is skipped: the broker redelivers that message
            if delivery.qos > 0 and delivery.connection == current:
                self._client.ack(delivery.mid, delivery.qos)

    def _set_detail(self, detail: str, error: bool = False) -> None:
        with self._changed:
            self.state.detail = detail
            if error:
                self.state.last_error = detail
            self._changed.notify_all()
        (log.error if error else log.info)(detail)
