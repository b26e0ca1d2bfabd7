"""A real Mosquitto broker for tests: free loopback port, password file, ACL, optional TLS.

Reusable by any test that needs a broker (edge app, dashboard)::

    broker = MosquittoBroker(tmp_path, users={"edge-01": "pw"}, acl=DEVICE_ACL)
    with broker:            # started; stopped (and its files kept) on exit
        broker.kill()       # SIGKILL mid-test, like a crashed broker
        broker.start()      # same port, same users

Tests that use it should be marked with ``requires_mosquitto`` so they skip, with the install
hint, where Debian's ``mosquitto`` package is missing.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")

requires_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None or MOSQUITTO_PASSWD is None,
    reason="needs the Mosquitto broker: apt-get install mosquitto (.ci/run does it)",
)

# Devices write only under their own name (username = device id) and read their commands;
# "dashboard" reads everything and may send commands.
DEVICE_ACL = """\
user dashboard
topic read sarco/v1/#
topic write sarco/v1/+/+/cmd

pattern write sarco/v1/+/%u/result
pattern write sarco/v1/+/%u/live
pattern write sarco/v1/+/%u/status
pattern read sarco/v1/+/%u/cmd
"""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MosquittoBroker:
    """One mosquitto process with its own config, password file and ACL under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str],
        acl: str = DEVICE_ACL,
        port: int | None = None,
        tls_files: tuple[Path, Path, Path] | None = None,
        persistent: bool = False,
    ) -> None:
        """``persistent``: sessions and queued messages survive a restart, even a SIGKILL
        (saved after every change), so a subscriber with a persistent session misses nothing
        while the broker is away."""
        if MOSQUITTO is None or MOSQUITTO_PASSWD is None:
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = self.workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config(users, acl, tls_files, persistent)

    @property
    def url(self) -> str:
        scheme = "mqtts" if self._tls else "mqtt"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _write_config(self, users: dict[str, str], acl: str,
                      tls_files: tuple[Path, Path, Path] | None, persistent: bool) -> None:
        password_file = self.workdir / "passwords"
        password_file.unlink(missing_ok=True)
        password_file.touch(mode=0o600)
        for user, password in users.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(password_file), user, password],
                           check=True, capture_output=True)
        acl_file = self.workdir / "acl"
        acl_file.write_text(acl)
        acl_file.chmod(0o600)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {password_file}",
            f"acl_file {acl_file}",
            *(["persistence true", f"persistence_location {self.workdir}/",
               "autosave_on_changes true", "autosave_interval 1"] if persistent else ["persistence false"]),
            f"user {getpass.getuser()}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        self._tls = tls_files is not None
        if tls_files is not None:
            ca, cert, key = tls_files
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        self.config_path = self.workdir / "mosquitto.conf"
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 15.0) -> None:
        """Start (or restart, on the same port) and wait until it accepts connections."""
        if self._process is not None and self._process.poll() is None:
            return
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start:\n{self.log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without a goodbye, as in a crash or power cut."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(sig)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._process = None

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_tls_files(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for ``host`` (openssl CLI): (ca, cert, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command for a test certificate")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "san.ext"
    ext.write_text(f"subjectAltName=IP:{host}\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(ca_key), "-out", str(ca_crt))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
        "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))
    for path in (key, crt, ca_crt):
        path.chmod(0o644)
    return ca_crt, crt, key


class Collector:
    """A subscriber that records (topic, payload bytes) and lets a test wait for a condition
    (an event wait, not a sleep)."""

    def __init__(self, broker: MosquittoBroker, username: str, password: str,
                 topic: str = "sarco/v1/#", tls_ca: Path | None = None,
                 persistent_session: bool = False) -> None:
        """``persistent_session`` (with a persistent broker): the broker keeps this
        subscription and queues messages for it while either side is away."""
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                   client_id=f"test-collector-{username}")
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(1, 1)
        if tls_ca is not None:
            self._client.tls_set(ca_certs=str(tls_ca))
        self._topic = topic
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_message = self._on_message
        if persistent_session:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
            self._client.connect("127.0.0.1", broker.port, clean_start=False,
                                 properties=properties)
        else:
            self._client.connect("127.0.0.1", broker.port)
        self._client.loop_start()
        if not self._subscribed.wait(15):
            raise RuntimeError("test subscriber could not subscribe")

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:  # noqa: ANN001
        client.subscribe(self._topic, qos=1)

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        with self._changed:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))
            self._changed.notify_all()

    def wait_for(self, predicate, timeout_s: float = 30.0) -> bool:  # noqa: ANN001
        """Wait until ``predicate(messages)`` is true; False when the time is up."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        """Publish (e.g. a command, as the dashboard would) and wait for the broker's ack."""
        self._client.publish(topic, payload, qos=qos).wait_for_publish(15)

    def of_kind(self, kind: str) -> list[bytes]:
        with self._changed:
            return [data for topic, data, _ in self.messages if topic.endswith("/" + kind)]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
