"""Commands from the device page to a device (docs/mqtt.md, ``cmd``): built and checked with
the edge's own schema module, published with QoS 1 on the device's cmd topic, and recorded
with who sent them, whether they went out or not.

Why these choices:

* A device connects with a clean start, so the broker keeps no command for a device that is
  away, and a "start session" from an hour ago must not start one now. A command to a device
  the dashboard sees offline is therefore not published (it would be lost), only recorded
  as refused, and the page says why.
* The broker's PUBACK cannot say whether the device got it: the dashboard's own ingest
  subscribes to ``sarco/v1/#`` and so always counts as a subscriber. The device's answer is
  what it does next (a session's live readings and result, an ``update`` in its status).
* Commands are rare (a few a day), so each is published by a short-lived MQTT client that
  connects, publishes, waits for the PUBACK and disconnects: nothing to keep alive, and the
  ingest's connection stays the ingest's.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import Device, DeviceCommand
from sarco_core.wire import schema
from sarco_core.wire.broker import BrokerSettings, make_client

HISTORY_ON_PAGE = 20


class CommandRecord(BaseModel):
    command: str
    screening_id: str | None
    url: str | None
    sha256: str | None
    by_user: str
    sent_at: datetime
    accepted: bool
    detail: str


@dataclass(frozen=True)
class Command:
    """What staff asked for; ``payload`` raises schema.PayloadError naming a bad field (a
    screening id that looks like a name, a URL that is not http(s), ...)."""

    command: str
    screening_id: str | None = None
    url: str | None = None
    sha256: str | None = None

    def arguments(self) -> dict[str, str | None]:
        """The fields this command takes (a form sends every field, most of them empty)."""
        if self.command == "start_session":
            return {"screening_id": self.screening_id}
        if self.command == "update_model":
            return {"url": self.url, "sha256": self.sha256 or None}
        return {}

    def payload(self) -> bytes:
        return schema.encode("cmd", {"schema_version": schema.SCHEMA_VERSION, "kind": "cmd",
                                     "command": self.command, **self.arguments()})


class CommandPublisher:
    """Publishes one message at QoS 1 and waits for the broker's acknowledgement."""

    def __init__(self, broker: BrokerSettings, timeout_s: float = 5.0) -> None:
        self.broker = broker
        self.timeout_s = timeout_s

    def publish(self, topic: str, data: bytes) -> str | None:
        """None once the broker acknowledged the message, else what went wrong."""
        client = make_client(self.broker, f"sarco-dashboard-cmd-{uuid.uuid4().hex[:12]}",
                             protocol="5")
        connected, acknowledged = threading.Event(), threading.Event()
        outcome: dict[str, str] = {}

        def on_connect(client, userdata, flags, reason, properties) -> None:  # noqa: ANN001
            if reason.is_failure:
                outcome["problem"] = f"the broker refused the connection: {reason}"
            connected.set()

        def on_publish(client, userdata, mid, reason, properties) -> None:  # noqa: ANN001
            if reason.is_failure:
                outcome["problem"] = f"the broker refused the command: {reason}"
            acknowledged.set()

        client.on_connect, client.on_publish = on_connect, on_publish
        try:
            client.connect(self.broker.host, self.broker.port)
        except OSError as exc:
            return f"broker {self.broker.url} unreachable: {exc}"
        client.loop_start()
        try:
            if not connected.wait(self.timeout_s):
                return f"broker {self.broker.url} did not answer"
            if "problem" in outcome:
                return outcome["problem"]
            client.publish(topic, data, qos=1)
            if not acknowledged.wait(self.timeout_s):
                return "the broker did not acknowledge the command"
            return outcome.get("problem")
        finally:
            client.disconnect()
            client.loop_stop()


def send(session: Session, publisher: CommandPublisher | None, site: str, device: str,
         command: Command, user: str, now: datetime) -> CommandRecord:
    """Publish ``command`` to the device if it can be delivered and record the attempt.
    Raises schema.PayloadError (nothing recorded) for a command that breaks the schema, and
    LookupError for a device the dashboard does not know."""
    data = command.payload()
    state = session.scalar(select(Device.state).where(Device.site == site,
                                                      Device.device == device))
    if state is None:
        raise LookupError(f"no device {device!r} at site {site!r}")
    if publisher is None:
        problem = "not sent: this dashboard process has no broker connection (serve has one)"
    elif state != "online":
        problem = (f"not sent: the device is {state}, and a command is not kept for a device "
                   "that is away")
    else:
        failure = publisher.publish(schema.topic_for(site, device, "cmd"), data)
        problem = f"not sent: {failure}" if failure else None
    row = DeviceCommand(site=site, device=device, command=command.command,
                        **command.arguments(), by_user=user, sent_at=now,
                        accepted=problem is None,
                        detail=(problem or "sent (QoS 1, acknowledged by the broker)")[:300])
    session.add(row)
    session.flush()
    return CommandRecord.model_validate(row, from_attributes=True)


def recent(session: Session, site: str, device: str,
           limit: int = HISTORY_ON_PAGE) -> list[CommandRecord]:
    rows = session.scalars(select(DeviceCommand)
                           .where(DeviceCommand.site == site, DeviceCommand.device == device)
                           .order_by(DeviceCommand.sent_at.desc(), DeviceCommand.id.desc())
                           .limit(limit))
    return [CommandRecord.model_validate(row, from_attributes=True) for row in rows]
