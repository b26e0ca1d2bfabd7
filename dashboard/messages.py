"""What travels from the broker to the database: every message is either admitted (decoded
by the schema module, with the dashboard's clock) or set aside as a rejection with its
reason. Nothing in between, so one bad message can never hold up the ones behind it.

A rejection keeps the payload only when the payload broke no rule of the schema (a device
clock outside the window, a duplicate id with other content, a row the database refused):
then it holds nothing the schema keeps out, and it is what someone needs to recover the
result. A payload that broke the schema is never kept, and neither is the value the schema
quotes in its reason: a rejected value may be exactly what the schema exists to keep out
(a name).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sarco_core.wire import schema

log = logging.getLogger("dashboard.messages")

TOPIC_CHARS = 300
REASON_CHARS = 500
_GOT_VALUE = re.compile(r" \(got .*\)$", re.DOTALL)


@dataclass(frozen=True)
class Received:
    """A validated payload and when it reached the ingest (our clock); ``topic`` and
    ``data`` (the bytes as sent) are what a rejection keeps if the store refuses it."""

    payload: dict[str, Any]
    received_at: datetime
    topic: str | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class Rejection:
    topic: str
    reason: str
    size_bytes: int
    digest: str  # SHA-256 of topic and payload: the same bad message is one row
    received_at: datetime
    payload: str | None = None  # see the module's docstring for when it is kept


def admit(topic: str, data: bytes, received_at: datetime) -> tuple[str, Received] | Rejection:
    """(kind, Received) for a message that passes ``schema.decode`` with ``received_at`` as
    the clock, else its Rejection. Never raises: a bug in the decoding sets the message
    aside (and is logged) instead of stopping the ingest."""
    try:
        kind, payload = schema.decode(topic, data, now=received_at)
    except schema.ClockError as exc:
        return rejection(topic, data, str(exc), received_at, keep_payload=True)
    except schema.PayloadError as exc:
        return rejection(topic, data, _GOT_VALUE.sub("", str(exc)), received_at,
                         keep_payload=False)
    except Exception as exc:  # noqa: BLE001 - whatever it is, this message must not block
        log.exception("decoding a message on %r failed", topic)
        return rejection(topic, data, f"could not be decoded ({exc.__class__.__name__})",
                         received_at, keep_payload=False)
    return kind, Received(payload, received_at, topic, data)


def set_aside(item: Received, reason: str) -> Rejection:
    """The rejection of a message that passed the schema but is not stored (its payload is
    kept: it breaks no rule)."""
    payload = item.payload
    topic = item.topic or schema.topic_for(payload["site"], payload["device"], payload["kind"])
    data = item.data if item.data is not None else json.dumps(payload, sort_keys=True).encode()
    return rejection(topic, data, reason, item.received_at, keep_payload=True)


def rejection(topic: str, data: bytes, reason: str, received_at: datetime,
              keep_payload: bool) -> Rejection:
    """A Rejection whose text any database can store (control characters escaped, lengths
    bounded)."""
    digest = hashlib.sha256(topic.encode("utf-8", "surrogatepass") + b"\0" + data).hexdigest()
    payload = None
    if keep_payload and len(data) <= schema.MAX_PAYLOAD_BYTES:
        # JSON that passed the schema: no NUL, no control character inside a string
        payload = data.decode("utf-8", "replace")
    return Rejection(topic=_storable(topic)[:TOPIC_CHARS],
                     reason=_storable(reason)[:REASON_CHARS], size_bytes=len(data),
                     digest=digest, received_at=received_at, payload=payload)


def _storable(text: str) -> str:
    """Escape what a database column or a log line should not hold (NUL, control
    characters, lone surrogates)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)
