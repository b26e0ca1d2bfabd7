"""Shared helpers for the dashboard tests: a broker set up for a fleet, payload builders
(through the edge's schema module), a raw publisher and a running ingest worker.

Builds on testkit/mosquitto.py (the real Mosquitto fixture) without changing it.
"""

from __future__ import annotations

import base64
import calendar
import getpass
import glob
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from dashboard import local_days, trends
from dashboard.db import make_engine, migrate
from dashboard.ingest import IngestSettings, IngestWorker
from dashboard.models import Result, ResultCount
from dashboard.store import Batch, FleetStore, Received
from sarco_core.wire import schema
from sarco_core.wire.broker import BrokerSettings
from testkit.mosquitto import DEVICE_ACL, MosquittoBroker, free_port
from tests.support.paths import REPO

PASSWORD = "test-password-1"
DASHBOARD_USER = "dashboard"
SIMULATOR_USER = "simulator"
# the devices' own rules plus a simulator that may write for any device
FLEET_ACL = DEVICE_ACL + f"\nuser {SIMULATOR_USER}\ntopic write sarco/v1/#\n"
MODEL = {"name": "sarco-effnet-lite0-v3", "sha256": "ab" * 32}


def fleet_broker(workdir: Path, devices: tuple[str, ...] = ("us-001",),
                 persistent: bool = False) -> MosquittoBroker:
    users = {DASHBOARD_USER: PASSWORD, SIMULATOR_USER: PASSWORD}
    users.update({device: PASSWORD for device in devices})
    return MosquittoBroker(workdir, users=users, acl=FLEET_ACL, persistent=persistent)


class SubscriptionRefusingBroker(MosquittoBroker):
    """Mosquitto whose dynamic-security plugin lets the dashboard log in but refuses each of
    its subscriptions (SUBACK 0x87 "Not authorized"), like a broker whose ACL was written
    without the dashboard. (Mosquitto's acl_file never refuses a subscription: it filters
    what it delivers.)"""

    PLUGIN = next(iter(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")), None)

    def __init__(self, workdir: Path) -> None:
        if self.PLUGIN is None:
            pytest.skip("needs Mosquitto's dynamic security plugin (Debian's mosquitto)")
        super().__init__(workdir, users={DASHBOARD_USER: PASSWORD})

    def _write_config(self, users: dict[str, str], acl: str, tls_files: object,
                      persistent: bool) -> None:
        salt = os.urandom(12)
        clients = [{"username": user, "salt": base64.b64encode(salt).decode(),
                    "password": base64.b64encode(hashlib.pbkdf2_hmac(
                        "sha512", password.encode(), salt, 101)).decode(),
                    "iterations": 101, "roles": []} for user, password in users.items()]
        state = self.workdir / "dynamic-security.json"
        state.write_text(json.dumps({
            "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                                 "subscribe": False, "unsubscribe": True},
            "clients": clients, "groups": [], "roles": []}))
        self._tls = False
        self.config_path = self.workdir / "mosquitto.conf"
        self.config_path.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\n"
            f"plugin {self.PLUGIN}\nplugin_opt_config_file {state}\n"
            f"user {getpass.getuser()}\n")


def settings_for(broker: MosquittoBroker, user: str) -> BrokerSettings:
    return BrokerSettings.from_url(broker.url, username=user, password=PASSWORD,
                                   backoff_min_s=1, backoff_max_s=2)


def sqlite_engine(folder: Path) -> Engine:
    engine = make_engine(f"sqlite:///{folder / 'dashboard.db'}")
    migrate(engine)
    return engine


def result_payload(site: str = "site-01", device: str = "us-001", seq: int = 1,
                   ended_at: float | None = None, **changes: Any) -> dict[str, Any]:
    """A valid result (checked by the schema module), changed by keyword."""
    ended = time.time() if ended_at is None else ended_at
    payload = {
        "schema_version": schema.SCHEMA_VERSION, "kind": "result", "site": site,
        "device": device, "result_id": str(uuid.uuid4()), "seq": seq,
        "session_id": str(uuid.uuid4()), "screening_id": f"SCR-{seq:04d}",
        "started_at": schema.utc_timestamp(ended - 60), "ended_at": schema.utc_timestamp(ended),
        "decision": "no_sarcopenia", "probability": 0.2, "score_logit": -1.386,
        "threshold": 0.5, "aggregation": "mean_logit",
        "uncertainty": {"logit_sd": 0.4, "agreement": 0.9, "dirichlet_u": None},
        "usable_frames": 80, "processed_frames": 100, "min_usable_frames": 20,
        "skipped": {"no_tissue": 10, "frozen": 0, "transition": 10, "no_region": 0},
        "model": MODEL, "app_version": "0.3.1",
    }
    payload.update(changes)
    schema.validate("result", payload)
    return payload


def status_payload(site: str, device: str, state: str, at: float | None,
                   queued: int | None = 0, model: dict | None = MODEL,
                   **extras: Any) -> dict[str, Any]:
    """A valid status; ``extras`` adds the optional ``health`` and ``update``."""
    payload = {"schema_version": schema.SCHEMA_VERSION, "kind": "status", "site": site,
               "device": device, "state": state,
               "at": None if at is None else schema.utc_timestamp(at),
               "app_version": "0.3.1", "model": model,
               "queued_results": None if at is None else queued, **extras}
    schema.validate("status", payload)
    return payload


def health_figures(**changes: Any) -> dict[str, Any]:
    """A status's ``health`` object as a Jetson sends it, changed by keyword."""
    health = {"gpu_load_pct": 71.0, "cpu_load_pct": 30.5, "temp_max_c": 56.2,
              "power_mw": 11240, "ram_used_mb": 2890, "ram_total_mb": 7620,
              "swap_used_mb": 0, "fps": 24.5, "frames_processed": 120000,
              "frames_rejected": 31000, "frame_errors": 0, "queue_length": 0}
    health.update(changes)
    return health


def update_outcome(outcome: str = "installed", at: float | None = None,
                   version: str = "2025.06-1") -> dict[str, Any]:
    """A status's ``update`` object."""
    return {"version": version, "outcome": outcome, "reason": f"test: {outcome}",
            "at": schema.utc_timestamp(time.time() - 3600 if at is None else at),
            "model_sha256": MODEL["sha256"]}


def live_payload(site: str, device: str, fps: float, at: float) -> dict[str, Any]:
    payload = {"schema_version": schema.SCHEMA_VERSION, "kind": "live", "site": site,
               "device": device, "session_id": str(uuid.uuid4()), "screening_id": "SCR-0001",
               "frame": 10, "captured_at": schema.utc_timestamp(at), "quality": "ok",
               "probability": 0.3, "smoothed_probability": 0.3, "usable_frames": 5, "fps": fps}
    schema.validate("live", payload)
    return payload


def encode(kind: str, payload: dict[str, Any]) -> bytes:
    return schema.encode(kind, payload)


class RawPublisher:
    """Publishes exact bytes at QoS 1 and waits for the broker's acknowledgement."""

    def __init__(self, broker: MosquittoBroker, user: str = SIMULATOR_USER,
                 client_id: str | None = None,
                 will: tuple[str, bytes] | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=client_id or f"test-pub-{uuid.uuid4().hex[:8]}")
        self.client.username_pw_set(user, PASSWORD)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError("test publisher could not connect")

    def publish(self, topic: str, data: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, data, qos=1, retain=retain)
        info.wait_for_publish(10)
        if not info.is_published():
            raise RuntimeError(f"no PUBACK for {topic}")

    def vanish(self) -> None:
        """Disconnect with reason 0x04: the broker publishes the last will, as when a
        device loses power."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.reasoncodes import ReasonCode

        self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT,
                                                     "Disconnect with will message"))
        self.client.loop_stop()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def running_ingest(engine: Engine, broker: MosquittoBroker, worker: str = "w1",
                   **options: Any) -> Iterator[IngestWorker]:
    runner = IngestWorker(engine, IngestSettings(settings_for(broker, DASHBOARD_USER),
                                                 worker=worker, **options))
    runner.start()
    try:
        if not runner.wait_subscribed(15):
            raise RuntimeError(f"ingest did not subscribe: {runner.state.detail}")
        yield runner
    finally:
        runner.stop()


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``predicate`` (for conditions spread over several workers or processes)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class DashboardProcess:
    """``sarco-dashboard serve`` as a real process on a free port; its log is kept."""

    def __init__(self, workdir: Path, broker: MosquittoBroker, db_url: str,
                 *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "serve.log"
        password_file = workdir / "broker-password"
        password_file.write_text(PASSWORD + "\n")
        self._command = [
            sys.executable, "-m", "dashboard.cli", "serve", "--broker", broker.url,
            "--db", db_url, "--port", str(self.port), "--username", DASHBOARD_USER,
            "--password-file", str(password_file), "--worker", "web-1", *extra]
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> DashboardProcess:
        log = self.log_path.open("w")
        env = {**os.environ, "COLUMNS": "200"}
        self._process = subprocess.Popen(self._command, cwd=REPO, stdout=log,
                                         stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"serve exited:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if b'"ingest_connected":true' in response.read():
                        return self
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"serve did not come up:\n{self.log_path.read_text()}")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)

    @property
    def log(self) -> str:
        return self.log_path.read_text()


def running_totals_match_the_results(session: Session) -> bool:
    """The page reads result_counts; recount everything from the results table."""
    direct = {tuple(row[:5]): tuple(row[5:]) for row in session.execute(
        select(Result.site, Result.device, Result.day, Result.model_name, Result.model_sha256,
               func.count(), func.count().filter(Result.decision == "sarcopenia"),
               func.count().filter(Result.decision == "no_sarcopenia"),
               func.count().filter(Result.decision == "rescan"),
               func.sum(Result.skipped_frames), func.sum(Result.processed_frames))
        .group_by(Result.site, Result.device, Result.day, Result.model_name,
                  Result.model_sha256))}
    kept = {(r.site, r.device, r.day, r.model_name, r.model_sha256):
            (r.results, r.positive, r.negative, r.rescans, r.skipped_frames,
             r.processed_frames) for r in session.scalars(select(ResultCount))}
    return bool(direct) and direct == kept


def epoch(utc: str) -> float:
    return calendar.timegm(datetime.fromisoformat(utc).timetuple())


def store_results(engine, *ended: tuple[str, str]) -> list[dict]:  # noqa: ANN001
    """(UTC end time, decision) per result, stored; returns the payloads."""
    payloads = [result_payload(seq=seq, ended_at=epoch(at), decision=decision,
                               probability=0.9 if decision == "sarcopenia" else 0.1,
                               score_logit=0.0)
                for seq, (at, decision) in enumerate(ended, 1)]
    received = datetime.fromisoformat("2025-03-20T00:00:00")
    FleetStore(engine, "w1").write(Batch(results=[Received(p, received) for p in payloads]),
                                   received)
    return payloads


def screened_by_day(session: Session, zone: str, first: date, last: date) -> dict:
    found = trends.trends(session, local_days.parse_zone(zone), first, last)
    return {day.day: day.screened for site in found.sites for day in site.days}
