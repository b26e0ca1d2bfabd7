"""The device's MQTT connection: results from the outbox (QoS 1, in order, deleted on a PUBACK
that says "Success"),
live readings (QoS 0, dropped while offline), a retained status with a last will (refreshed
every ``status_interval_s`` so the health figures it carries stay current), and commands.

Each connection attempt uses a fresh paho client, run by its own network thread, and one
supervisor thread of ours does the reconnecting (exponential backoff with jitter). A fresh
client per connection means paho never re-sends stale messages of its own behind our back: the
outbox is the single source of what still has to go, a connection re-publishes every pending
result from the oldest, and PUBACKs are matched to results through a mid -> result_id map that
lives and dies with its connection (paho's mids are only meaningful within one).

Delivery means stored: only a PUBACK with reason 0x00 removes a result. Mosquitto answers 0x10
"No matching subscribers" while no dashboard worker is subscribed (after a broker restart it
does not restore ``$share`` subscriptions, docs/mqtt.md), and then drops the message; so 0x10,
like a transient failure (quota exceeded, unspecified error), keeps the result and pauses
publishing with a short backoff before everything not acknowledged is sent again from the
oldest. Refusals that a retry cannot fix (not authorized, bad topic or payload) set the result
aside for this run and say why. MQTT 3.1.1 has no reason codes: there a PUBACK is all we learn.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_app.mqtt.outbox import Outbox
from sarco_core.wire import schema
from sarco_core.wire.broker import BrokerSettings, make_client
from sarco_core.wire.payloads import StatusPayload

log = logging.getLogger("edge_app.mqtt")

# CONNACK refusals that mean "this broker does not speak MQTT 5" (v3 rc 1, v5 reason 0x84)
_UNSUPPORTED_PROTOCOL = {1, 132}
# PUBACK refusals a retry cannot fix: not authorized (ACL), topic name invalid, payload invalid
_REFUSED = {0x87: "the broker ACL must let this device's username publish on its result topic",
            0x90: "the result topic is not valid for this broker",
            0x99: "the broker refused the payload format"}
_NO_SUBSCRIBERS = 0x10


@dataclass
class LinkState:
    """What the display and the status line show about connectivity."""

    connected: bool = False
    detail: str = "not started"
    protocol: str = ""
    live_dropped: int = 0
    rejected: set[str] = field(default_factory=set)
    backlog_reason: str = ""  # why results wait although connected ("" when none do)


@dataclass
class _Connection:
    """Everything that belongs to one connection and is thrown away with it."""

    client: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    refusal: ReasonCode | None = None
    inflight: dict[int, str] = field(default_factory=dict)  # mid -> result_id
    acks: list[tuple[int, ReasonCode]] = field(default_factory=list)
    last_seq: int = 0
    status_at: float | None = None  # monotonic time of the last "online"; None before the first
    held_until: float = 0.0  # monotonic time before which no result is (re)published
    hold_s: float = 0.0  # the current hold; doubles while the broker keeps declining


class MqttLink:
    """Publishes for one device: ``start()``, ``notify()`` after adding to the outbox,
    ``publish_live()`` for readings, ``stop()``. Never raises on network trouble."""

    def __init__(
        self,
        settings: BrokerSettings,
        site: str,
        device: str,
        outbox: Outbox,
        status_fields: Callable[[], dict[str, Any]],
        on_command: Callable[[dict[str, Any]], None] | None = None,
        status_interval_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.status_interval_s = status_interval_s
        self.site, self.device = site, device
        self.topics = {kind: schema.topic_for(site, device, kind) for kind in schema.TOPIC_KINDS}
        self.outbox = outbox
        self.state = LinkState()
        self._status_fields = status_fields
        self.on_command = on_command  # called from paho's thread
        self._protocol = settings.protocol
        self._wake = threading.Condition()
        self._work = False  # set under _wake when there is something for the publisher to do
        self._stop = threading.Event()
        self._conn: _Connection | None = None
        self._thread: threading.Thread | None = None
        # jitter spreads a fleet's reconnects; seeded by the device so runs are reproducible
        self._jitter = random.Random(f"{site}/{device}")

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="mqtt-link", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Wake the publisher: a result was added to the outbox."""
        with self._wake:
            self._work = True
            self._wake.notify_all()

    def publish_live(self, payload: dict[str, Any]) -> bool:
        """Send a live reading now if connected (QoS 0); False when it was dropped."""
        conn = self._conn
        data = schema.encode("live", payload)
        if conn is None or not conn.connected.is_set() or conn.lost.is_set():
            self.state.live_dropped += 1
            return False
        info = conn.client.publish(self.topics["live"], data, qos=0)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.state.live_dropped += 1
            return False
        return True

    def wait_until_drained(self, timeout_s: float) -> bool:
        """Block until the outbox is empty (all results acknowledged) or the time is up."""
        deadline = time.monotonic() + timeout_s
        with self._wake:
            while len(self.outbox) - len(self.state.rejected) > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.wait(min(remaining, 0.5))
        return True

    def waiting_reason(self) -> str:
        """Why results are still in the outbox, for the person who ran the command."""
        if self.state.backlog_reason:
            return self.state.backlog_reason
        if not self.state.connected:
            return self.state.detail
        return "the broker did not acknowledge them in time"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say "offline" (retained) if connected, disconnect and end the thread."""
        self._stop.set()
        self.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # ------------------------------------------------------------------ supervisor

    def _supervise(self) -> None:
        delay = self.settings.backoff_min_s
        while not self._stop.is_set():
            started = time.monotonic()
            self._run_connection()
            if self._stop.is_set():
                break
            # a connection that lived a while resets the backoff
            if time.monotonic() - started > 2 * self.settings.backoff_max_s:
                delay = self.settings.backoff_min_s
            wait = delay * self._jitter.uniform(0.8, 1.2)
            self.state.detail = f"offline: {self.state.detail}; retry in {wait:.0f} s"
            self._stop.wait(wait)
            delay = min(delay * 2, self.settings.backoff_max_s)

    def _run_connection(self) -> None:
        conn = _Connection(client=self._new_client())
        conn.client.user_data_set(conn)
        self.state.protocol = self._protocol_name()
        self.state.detail = f"connecting to {self.settings.url}"
        try:
            self._connect(conn)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.state.detail = f"cannot reach {self.settings.url} ({exc})"
            log.warning("mqtt connect failed", extra={"event": "mqtt_connect_failed",
                                                      "broker": self.settings.url,
                                                      "error": str(exc)})
            return
        conn.client.loop_start()
        try:
            if conn.connected.wait(self.settings.connect_timeout_s + 1) and not conn.lost.is_set():
                self._conn = conn
                self._drain(conn)
            else:
                self._explain_refusal(conn)
        finally:
            self._conn = None
            self.state.connected = False
            self._close(conn)

    def _connect(self, conn: _Connection) -> None:
        options: dict[str, Any] = {"keepalive": self.settings.keepalive_s}
        if conn.client.protocol == mqtt.MQTTv5:
            # a clean start: commands queued while the device was away are stale by now
            options["clean_start"] = True
        conn.client.connect(self.settings.host, self.settings.port, **options)

    def _drain(self, conn: _Connection) -> None:
        """While connected: match PUBACKs to results and keep ``window`` results in flight."""
        self.state.connected = True
        self.state.detail = f"connected to {self.settings.url} (MQTT {self._protocol_name()})"
        log.info("mqtt connected", extra={"event": "mqtt_connected", "broker": self.settings.url,
                                           "protocol": self._protocol_name()})
        self.notify()  # results may be waiting from before
        while not self._stop.is_set() and not conn.lost.is_set():
            with self._wake:
                if not self._work:
                    timeout = min(1.0, self.status_interval_s)
                    held = conn.held_until - time.monotonic()
                    self._wake.wait(min(timeout, held) if held > 0 else timeout)
                self._work = False
                acks, conn.acks = conn.acks, []
            for mid, reason in acks:
                self._settle(conn, mid, reason)
            if not self._publish_pending(conn) or not self._refresh_status(conn):
                break
        if not self._stop.is_set():
            self.state.detail = "connection lost"
            log.warning("mqtt connection lost", extra={"event": "mqtt_lost",
                                                       "broker": self.settings.url})

    def _settle(self, conn: _Connection, mid: int, reason: ReasonCode) -> None:
        result_id = conn.inflight.pop(mid, None)
        if result_id is None:
            return  # the status message or a live reading
        if reason.value == 0:
            self.outbox.remove(result_id)
            conn.hold_s = 0.0
            if not self.state.rejected:  # a refusal's reason stays while its results wait
                self.state.backlog_reason = ""
            log.info("result delivered", extra={"event": "result_delivered",
                                                "result_id": result_id})
        elif reason.value in _REFUSED:
            # keep the row, stop retrying it in this run: only a fix on the broker helps
            self.state.rejected.add(result_id)
            self.state.backlog_reason = f"broker refused a result ({reason}): " \
                                        f"{_REFUSED[reason.value]}"
            log.error("broker rejected a result", extra={
                "event": "mqtt_rejected", "result_id": result_id, "reason": str(reason),
                "hint": _REFUSED[reason.value]})
        else:
            self._hold(conn, result_id, reason)
        with self._wake:
            self._wake.notify_all()  # wait_until_drained

    def _hold(self, conn: _Connection, result_id: str, reason: ReasonCode) -> None:
        """The broker took the result but will not deliver it (no subscriber) or cannot now:
        keep it, pause, then send everything unacknowledged again from the oldest."""
        now = time.monotonic()
        conn.last_seq = 0
        self.state.backlog_reason = (
            "no dashboard is subscribed: results are kept and sent again"
            if reason.value == _NO_SUBSCRIBERS else f"broker declined a result ({reason})")
        if now < conn.held_until:
            return  # one hold (and one log line) per wave of declined results
        conn.hold_s = min(max(conn.hold_s * 2, self.settings.backoff_min_s / 2),
                          self.settings.backoff_max_s / 3)
        conn.held_until = now + conn.hold_s
        log.warning("results kept", extra={"event": "results_kept", "result_id": result_id,
                                           "reason": str(reason),
                                           "retry_in_s": round(conn.hold_s, 2)})

    def _publish_pending(self, conn: _Connection) -> bool:
        room = self.settings.window - len(conn.inflight)
        if room <= 0 or time.monotonic() < conn.held_until:
            return True
        in_flight = set(conn.inflight.values())
        for item in self.outbox.pending(after_seq=conn.last_seq, limit=room + 50):
            if room <= 0:
                break
            conn.last_seq = item.seq
            if item.result_id in self.state.rejected or item.result_id in in_flight:
                continue
            info = conn.client.publish(item.topic, item.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return False
            conn.inflight[info.mid] = item.result_id
            room -= 1
        return True

    def _refresh_status(self, conn: _Connection) -> bool:
        """Publish the retained "online" status again once ``status_interval_s`` has passed
        (only after the first one, which waits for the command subscription)."""
        if conn.status_at is None or time.monotonic() - conn.status_at < self.status_interval_s:
            return True
        return self._publish_online(conn)

    def _publish_online(self, conn: _Connection) -> bool:
        conn.status_at = time.monotonic()
        info = conn.client.publish(self.topics["status"], self._status("online"), qos=1,
                                   retain=True)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _close(self, conn: _Connection) -> None:
        client = conn.client
        if self._stop.is_set() and conn.connected.is_set() and not conn.lost.is_set():
            info = client.publish(self.topics["status"], self._status("offline"), qos=1,
                                  retain=True)
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass  # the connection went in the meantime; the last will covers it
        client.disconnect()  # also ends the network thread of a connection that never opened
        client.loop_stop()

    # ------------------------------------------------------------------ paho client

    def _new_client(self) -> mqtt.Client:
        client = make_client(self.settings, f"sarco-edge-{self.site}-{self.device}",
                             protocol=self._protocol, reconnect_on_failure=False)
        client.will_set(self.topics["status"], self._status("offline", will=True), qos=1,
                        retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    # paho hands every callback the client's userdata: here, that client's _Connection

    def _on_connect(self, client, conn, flags, reason, properties) -> None:  # noqa: ANN001
        if reason.is_failure:
            conn.refusal = reason
            conn.lost.set()
        else:
            client.subscribe(self.topics["cmd"], qos=1)
        conn.connected.set()
        self.notify()

    def _on_subscribe(self, client, conn, mid, reasons, properties) -> None:  # noqa: ANN001
        # "online" once commands can reach us, so a dashboard may send one as soon as it sees it
        if any(reason.is_failure for reason in reasons):
            log.error("command topic refused", extra={
                "event": "mqtt_subscribe_refused", "topic": self.topics["cmd"],
                "hint": "the broker ACL must let this device read its cmd topic"})
        self._publish_online(conn)

    def _on_disconnect(self, client, conn, flags, reason, properties) -> None:  # noqa: ANN001
        conn.lost.set()
        self.notify()

    def _on_publish(self, client, conn, mid, reason, properties) -> None:  # noqa: ANN001
        # never block long here: paho holds its own lock while calling us
        with self._wake:
            conn.acks.append((mid, reason))
            self._work = True
            self._wake.notify_all()

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        try:
            kind, command = schema.decode(message.topic, message.payload)
        except schema.PayloadError as exc:
            log.warning("ignored a bad command", extra={"event": "bad_command",
                                                        "error": str(exc)})
            return
        if kind == "cmd" and self.on_command is not None:
            self.on_command(command)

    # ------------------------------------------------------------------ helpers

    def _explain_refusal(self, conn: _Connection) -> None:
        reason = conn.refusal
        if reason is None:
            self.state.detail = f"no answer from {self.settings.url}"
            return
        if self._protocol == "auto" and reason.value in _UNSUPPORTED_PROTOCOL:
            self._protocol = "3.1.1"
            self.state.detail = "broker does not speak MQTT 5; using 3.1.1"
        elif reason.value in (4, 5, 134, 135):
            self.state.detail = (f"broker refused the login ({reason}): check the username and "
                                 "the password file")
        else:
            self.state.detail = f"broker refused the connection ({reason})"
        log.error("mqtt connection refused", extra={"event": "mqtt_refused",
                                                    "reason": str(reason),
                                                    "detail": self.state.detail})

    def _protocol_name(self) -> str:
        return "3.1.1" if self._protocol == "3.1.1" else "5"

    def _status(self, state: str, will: bool = False) -> bytes:
        """The retained status; the last will is fixed at connect time, so it carries no
        time, no queue length and no health (figures of unknown age would mislead)."""
        status = StatusPayload(self.site, self.device, state, time.time(), len(self.outbox),
                               self.state.backlog_reason or None, self._status_fields())
        return schema.encode("status", status.last_will() if will else status.to_dict())
