"""Chaos: is every result stored exactly once while brokers, workers and devices die?

Real processes on 127.0.0.1: one Mosquitto with persistence (configured as docs/dashboard.md
recommends), K dashboard ingest workers (`sarco-dashboard ingest`, one shared subscription,
one SQLite file) and N devices, each a process running the edge's own outbox and MQTT link
(edge_app.mqtt) and producing results at a set rate. A schedule, spread evenly over the run:

* broker restarts, alternately SIGTERM and SIGKILL, each down for ``--broker-down`` seconds;
* ingest worker kills (SIGKILL, restarted two seconds later);
* device kills (SIGKILL mid-session: power loss; restarted a second later on the same outbox);
* hostile payloads injected by a device credential (every case of issue #17).

Then the devices stop producing, drain their outboxes, and the database is compared with
what the devices wrote down (each device appends a result id to its log once the outbox holds
it): published, stored, lost, duplicated (one device seq stored under two ids), rejected by
reason, and the longest ingest stall (no new result stored while results wait, counted from
when the broker is back).

Target (issue #17): 20 devices x 5 results/s for 10 min, 6 broker restarts (half SIGKILL),
4 worker kills, 4 device kills: 0 lost, 0 duplicated, every hostile payload rejected with a
reason, longest stall <= 30 s.

    .venv/bin/python benchmarks/bench_chaos.py run --devices 20 --rate 5 --duration 600
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import func, select
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dashboard.db import make_engine, migrate  # noqa: E402
from dashboard.models import RejectedMessage, Result  # noqa: E402
from sarco_core.wire import schema  # noqa: E402
from sarco_core.wire.payloads import ResultPayload, Uncertainty  # noqa: E402
from testkit.mosquitto import DEVICE_ACL, MosquittoBroker  # noqa: E402

PASSWORD = "chaos-password-1"
SITE = "chaos"
HOSTILE_DEVICE = "edge-hostile"
BROKER_TUNING = ["max_queued_messages 1000000", "max_inflight_messages 0"]
console = Console(width=160)
app = typer.Typer(add_completion=False, rich_markup_mode=None)


# --------------------------------------------------------------------------- one device


def result_payload(device: str) -> dict:
    """A plausible result ending now (the dashboard checks times against its own clock)."""
    now = time.time()
    return ResultPayload(
        result_id=str(uuid.uuid4()), seq=0, session_id=str(uuid.uuid4()),
        site=SITE, device=device, screening_id=f"SCR-{uuid.uuid4().int % 10**6:06d}",
        started_at=now - 60, ended_at=now,
        decision="no_sarcopenia", probability=0.2, score_logit=-1.386,
        threshold=0.5, aggregation="mean_logit", uncertainty=Uncertainty(0.4, 0.9),
        usable_frames=40, processed_frames=60, min_usable_frames=20,
        skipped={"no_tissue": 10, "frozen": 5, "transition": 5, "no_region": 0},
        model_name="chaos", model_sha256="c" * 64, app_version="chaos",
    ).to_dict()


@app.command("device", hidden=True)
def device_process(name: str, broker_url: str, workdir: Path, rate: float) -> None:
    """One device: produce results at ``rate`` until ``workdir/stop`` exists, then drain."""
    from edge_app.mqtt.link import MqttLink
    from edge_app.mqtt.outbox import Outbox
    from sarco_core.wire.broker import BrokerSettings

    outbox = Outbox(workdir / "outbox.sqlite3", capacity=1_000_000)
    settings = BrokerSettings.from_url(broker_url, username=name, password=PASSWORD,
                                       backoff_min_s=0.5, backoff_max_s=5.0)
    link = MqttLink(settings, SITE, name, outbox,
                    lambda: {"app_version": "chaos", "model": None})
    link.start()
    topic = schema.topic_for(SITE, name, "result")
    started, count = time.monotonic(), 0
    with (workdir / "published.log").open("a") as log:
        while not (workdir / "stop").exists():
            queued = outbox.add(topic, result_payload(name))
            log.write(queued["result_id"] + "\n")
            log.flush()  # in the kernel: survives the process's SIGKILL
            link.notify()
            count += 1
            time.sleep(max(0.0, started + count / rate - time.monotonic()))
    link.wait_until_drained(600)
    link.stop()
    outbox.close()


# --------------------------------------------------------------------------- the hostile cases


def hostile_payloads() -> dict[str, bytes]:
    """Each case of issue #17 that must be rejected with a reason, never stored or stalling."""
    def result(**changes: object) -> bytes:
        payload = {**result_payload(HOSTILE_DEVICE), **changes}
        return json.dumps(payload, allow_nan=True).encode()

    good = result_payload(HOSTILE_DEVICE)
    return {
        "impossible date": result(ended_at="2026-13-45T25:61:61.000Z"),
        "full-width digits": result(ended_at="２０２６-01-01T00:00:00.000Z"),
        "huge count": result(usable_frames=10**30),
        "overflowing number": result(probability=7).replace(b'"probability": 7',
                                                            b'"probability": 1e400'),
        "NaN": result(probability=float("nan")),
        "Infinity": result(uncertainty={"logit_sd": float("inf"), "agreement": 0.9,
                                        "dirichlet_u": None}),
        "year 2099": result(ended_at="2099-01-01T00:00:00.000Z"),
        "year 1970": result(started_at="1970-01-01T00:00:00.000Z"),
        "end before start": result(started_at=good["ended_at"], ended_at=good["started_at"]),
        "usable > processed": result(usable_frames=500, processed_frames=60),
        "newline in screening id": result(screening_id="SCR-000042\n"),
        "not JSON": b"{this is not json",
        "wrong type": result(probability="high"),
    }


def inject_hostile(broker: MosquittoBroker, timeout_s: float = 60.0) -> int:
    """Publish every hostile case once, each until the broker hands it to a subscriber: a
    PUBACK 0x10 (no worker subscribed yet, e.g. just after a broker restart) means it was
    dropped, so it is sent again, as a device would."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    reasons: dict[int, int] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"chaos-hostile-{uuid.uuid4().hex[:6]}")
    client.username_pw_set(HOSTILE_DEVICE, PASSWORD)
    client.on_publish = lambda c, u, mid, reason, p: reasons.__setitem__(mid, reason.value)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    topic = schema.topic_for(SITE, HOSTILE_DEVICE, "result")
    sent, deadline = 0, time.monotonic() + timeout_s
    try:
        for data in hostile_payloads().values():
            while time.monotonic() < deadline:
                info = client.publish(topic, data, qos=1)
                info.wait_for_publish(10)
                if reasons.get(info.mid) == 0:
                    sent += 1
                    break
                time.sleep(0.5)
    finally:
        client.disconnect()
        client.loop_stop()
    return sent


# --------------------------------------------------------------------------- the run


@dataclass
class Fleet:
    workdir: Path
    broker: MosquittoBroker
    rate: float
    db_url: str
    devices: dict[str, subprocess.Popen] = field(default_factory=dict)
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_device(self, name: str) -> None:
        folder = self.workdir / "devices" / name
        folder.mkdir(parents=True, exist_ok=True)
        self.devices[name] = subprocess.Popen(
            [sys.executable, __file__, "device", name, self.broker.url, str(folder),
             str(self.rate)], cwd=REPO, stdout=subprocess.DEVNULL,
            stderr=(folder / "stderr.log").open("a"))

    def start_worker(self, name: str) -> None:
        password = self.workdir / "password"
        log = (self.workdir / f"worker-{name}.log").open("a")
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "dashboard.cli", "ingest", "--worker", name, "--broker",
             self.broker.url, "--username", "dashboard", "--password-file", str(password),
             "--db", self.db_url, "--share-group", "chaos"], cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})

    def published(self) -> list[str]:
        ids = []
        for log in (self.workdir / "devices").glob("*/published.log"):
            ids += [line for line in log.read_text().split("\n") if len(line) == 36]
        return ids


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def _stored(engine) -> int:  # noqa: ANN001
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Result)
                              .where(Result.device != HOSTILE_DEVICE)) or 0


def run_chaos(workdir: Path, devices: int, rate: float, duration: float, broker_restarts: int,
              worker_kills: int, device_kills: int, broker_down_s: float,
              workers: int = 2) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "password").write_text(PASSWORD + "\n")
    names = [f"edge-{i + 1:02d}" for i in range(devices)]
    broker = MosquittoBroker(workdir / "broker",
                             {n: PASSWORD for n in [*names, HOSTILE_DEVICE, "dashboard"]},
                             acl=DEVICE_ACL, persistent=True)
    with broker.config_path.open("a") as config:
        config.write("\n".join(BROKER_TUNING) + "\n")
    db_url = f"sqlite:///{workdir / 'dashboard.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    fleet = Fleet(workdir, broker, rate, db_url)
    events = _schedule(duration, broker_restarts, worker_kills, device_kills)
    hostile_sent, stall, restarts = 0, 0.0, {"SIGTERM": 0, "SIGKILL": 0}
    broker.start()
    try:
        for i in range(workers):
            fleet.start_worker(f"w{i + 1}")
        time.sleep(3.0)  # the workers subscribe before the first result
        for name in names:
            fleet.start_device(name)
        started = time.monotonic()
        last_count, last_progress, broker_up = 0, started, True
        while True:
            now = time.monotonic() - started
            while events and events[0][0] <= now:
                _, what, number = events.pop(0)
                if what == "broker":
                    kind = "SIGKILL" if number % 2 else "SIGTERM"
                    (broker.kill if kind == "SIGKILL" else broker.stop)()
                    restarts[kind] += 1
                    broker_up = False
                    time.sleep(broker_down_s)
                    broker.start()
                    broker_up, last_progress = True, time.monotonic()
                elif what == "worker":
                    name = f"w{number % workers + 1}"
                    _kill(fleet.workers[name])
                    time.sleep(2.0)
                    fleet.start_worker(name)
                elif what == "device":
                    name = names[number % len(names)]
                    _kill(fleet.devices[name])
                    time.sleep(1.0)
                    fleet.start_device(name)
                elif what == "hostile":
                    hostile_sent += inject_hostile(broker)
            count = _stored(engine)
            backlog = len(fleet.published()) - count
            if count > last_count or backlog <= 0 or not broker_up:
                last_count, last_progress = count, time.monotonic()
            stall = max(stall, time.monotonic() - last_progress)
            if now >= duration:
                break
            time.sleep(0.5)
        (workdir / "devices").mkdir(exist_ok=True)
        for name in names:
            (workdir / "devices" / name / "stop").touch()
        for process in fleet.devices.values():
            process.wait(660)
        published = fleet.published()
        deadline = time.monotonic() + 120
        while _stored(engine) < len(set(published)) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for process in [*fleet.devices.values(), *fleet.workers.values()]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    _kill(process)
        broker.stop()
    return _tally(engine, published, hostile_sent, stall, restarts, duration, devices, rate)


def _schedule(duration: float, broker_restarts: int, worker_kills: int,
              device_kills: int) -> list[tuple[float, str, int]]:
    """Events spread evenly over the middle of the run, never two at one moment."""
    events = []
    for what, count in (("broker", broker_restarts), ("worker", worker_kills),
                        ("device", device_kills), ("hostile", 2)):
        offset = {"broker": 0.0, "worker": 0.3, "device": 0.6, "hostile": 0.45}[what]
        events += [(duration * (i + offset + 0.5) / (count + 1), what, i) for i in range(count)]
    return sorted(events)


def _tally(engine, published: list[str], hostile_sent: int, stall: float,  # noqa: ANN001
           restarts: dict, duration: float, devices: int, rate: float) -> dict:
    with Session(engine) as session:
        stored = set(session.scalars(select(Result.result_id)
                                     .where(Result.device != HOSTILE_DEVICE)))
        seqs = session.execute(select(Result.device, Result.seq, func.count())
                               .where(Result.device != HOSTILE_DEVICE)
                               .group_by(Result.device, Result.seq)).all()
        hostile_stored = session.scalar(select(func.count()).select_from(Result)
                                        .where(Result.device == HOSTILE_DEVICE))
        reasons = session.execute(select(RejectedMessage.reason, RejectedMessage.times_seen)
                                  ).all()
    published_set = set(published)
    return {
        "devices": devices, "rate": rate, "duration_s": duration, "broker_restarts": restarts,
        "published": len(published_set), "stored": len(stored & published_set),
        "lost": len(published_set - stored),
        "unlogged_stored": len(stored - published_set),  # killed between outbox and log
        "duplicated": sum(count - 1 for *_, count in seqs if count > 1),
        "hostile_sent": hostile_sent, "hostile_stored": hostile_stored,
        "rejected": sum(times for _, times in reasons),
        "rejected_reasons": sorted({r for r, _ in reasons}),
        "longest_stall_s": round(stall, 1),
    }


@app.command("run")
def main(
    devices: Annotated[int, typer.Option(help="Devices, each its own process.")] = 20,
    rate: Annotated[float, typer.Option(help="Results per second per device.")] = 5.0,
    duration: Annotated[float, typer.Option(help="Seconds of producing.")] = 600.0,
    broker_restarts: Annotated[int, typer.Option(help="Alternately SIGTERM, SIGKILL.")] = 6,
    worker_kills: Annotated[int, typer.Option(help="Ingest workers SIGKILLed.")] = 4,
    device_kills: Annotated[int, typer.Option(help="Devices SIGKILLed mid-session.")] = 4,
    broker_down: Annotated[float, typer.Option(help="Seconds each restart keeps the "
                                                    "broker down.")] = 10.0,
) -> None:
    """Run the chaos schedule and print what survived."""
    with tempfile.TemporaryDirectory(prefix="sarco-chaos-") as folder:
        figures = run_chaos(Path(folder), devices, rate, duration, broker_restarts,
                            worker_kills, device_kills, broker_down)
    console.print_json(json.dumps(figures))


if __name__ == "__main__":
    app()
