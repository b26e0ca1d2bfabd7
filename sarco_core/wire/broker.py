"""Where and how to reach the MQTT broker, and the one paho client builder.

The device's link (edge_app.mqtt.link), its self-test, the dashboard's ingest worker, its
command publisher and the fleet simulator all connect through :func:`make_client`, so a broker
setting (TLS with a client certificate, credentials, protocol, timeout) works the same for each.
This is the one sarco_core module that imports paho-mqtt.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sarco_core.files import read_secret

PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect. ``protocol`` "auto" tries MQTT 5 and falls back to 3.1.1."""

    host: str
    port: int
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    protocol: str = "auto"
    keepalive_s: int = 30
    connect_timeout_s: float = 5.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0
    window: int = 10  # results in flight at once

    @classmethod
    def from_url(cls, url: str, **options: Any) -> BrokerSettings:
        """``mqtt://HOST[:PORT]`` (1883) or ``mqtts://HOST[:PORT]`` (TLS, 8883)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"broker {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        if parts.username or parts.password:
            # the URL is not repeated: it holds a secret
            raise ValueError("broker URL with credentials: put the username in the config and "
                             "the password in a password file, not in the URL (URLs end up in "
                             "logs)")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ValueError(f"broker {url!r}: the port is not a number in 1-65535") from None
        return cls(host=parts.hostname, port=port, tls=tls, **options)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def make_client(settings: BrokerSettings, client_id: str, *, protocol: str | None = None,
                **options: Any) -> mqtt.Client:
    """A paho client (callback API version 2) for ``settings``: protocol (``protocol``, else the
    settings' own; "auto" starts with MQTT 5), connect timeout, username and password, and TLS
    with the CA and the client certificate when the settings have them. ``options`` go to paho's
    constructor (``manual_ack``, ``reconnect_on_failure``); the caller sets the callbacks."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=PROTOCOLS.get(protocol or settings.protocol, mqtt.MQTTv5),
                         **options)
    client.connect_timeout = settings.connect_timeout_s
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    return client


def read_password_file(path: Path) -> str:
    """The broker password: first line of a file readable only by the service user."""
    return read_secret(path, "password file")

