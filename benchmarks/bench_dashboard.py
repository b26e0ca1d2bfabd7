"""Dashboard ingest under a fleet's load: is every result stored exactly once, and how late?

Starts a real Mosquitto, K ingest workers (`sarco-dashboard ingest`, one shared-subscription
group, one SQLite file) and the fleet simulator (`sarco-dashboard simulate`), each as its own
process, then checks the database against what the broker acknowledged:

* lost = published - distinct results stored; double-counted = rows - distinct result ids
  (and rows - distinct (device, seq), which would catch a re-sent result under a new id);
* ingest lag = stored_at - ended_at (the simulator stamps ended_at as it publishes, the worker
  stored_at as the batch's transaction starts; same clock; the commit follows within tens of
  milliseconds): p50 / p95 / max;
* the rate the simulator reached while publishing, each worker's share, and CPU: seconds per
  1000 results of the ingest workers, and the share of one core the simulator, the broker and
  the workers used;
* the machine's load while it ran: the 1-minute load average (sampled every 5 s: mean and
  max) and how busy both cores were, including other jobs (the machine is shared).

Target (issue 7): 100 devices x 10 results/s x 300 s, 1 and 2 workers, on the 2-core machine:

    .venv/bin/python benchmarks/bench_dashboard.py --devices 100 --rate 10 --duration 300

Mosquitto is configured as docs/dashboard.md recommends for a dashboard (a deep per-client
queue); with Mosquitto's default of 1000 queued messages a lagging subscriber loses messages.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dashboard.db import make_engine, migrate  # noqa: E402
from dashboard.models import Result  # noqa: E402
from testkit.mosquitto import MosquittoBroker  # noqa: E402

PASSWORD = "bench-password-1"
ACL = "user dashboard\ntopic read sarco/v1/#\nuser simulator\ntopic write sarco/v1/#\n"
BROKER_TUNING = ["max_queued_messages 1000000", "max_inflight_messages 0"]
console = Console(width=200)  # one row per scenario, never wrapped


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / _TICK


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


class LoadSampler:
    """The 1-minute load average every few seconds while a scenario runs, and the machine's
    busy CPU over the same time: the box is shared, and figures mean little without it."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> LoadSampler:
        self._busy_before = _machine_busy()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        busy, total = _machine_busy()
        self.busy_s = busy - self._busy_before[0]
        self.wall_cpu_s = total - self._busy_before[1]  # wall time x cores


def run_scenario(workdir: Path, workers: int, devices: int, rate: float, duration: float,
                 duplicates: float, seed: int) -> dict:
    workdir.mkdir(parents=True)
    password_file = workdir / "password"
    password_file.write_text(PASSWORD + "\n")
    broker = MosquittoBroker(workdir / "broker", users={"dashboard": PASSWORD,
                                                        "simulator": PASSWORD}, acl=ACL)
    with broker.config_path.open("a") as config:
        config.write("\n".join(BROKER_TUNING) + "\n")
    db_url = f"sqlite:///{workdir / 'dashboard.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    common = ["--broker", broker.url, "--username", "dashboard", "--password-file",
              str(password_file), "--db", db_url, "--share-group", "bench"]
    processes: list[subprocess.Popen] = []
    logs = [workdir / f"worker-{i + 1}.log" for i in range(workers)]
    with broker:
        try:
            for i, log in enumerate(logs):
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "dashboard.cli", "ingest", "--worker",
                     f"w{i + 1}", *common], cwd=REPO, stdout=log.open("w"),
                    stderr=subprocess.STDOUT, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}))
            deadline = time.monotonic() + 60
            while not all("connected to" in log.read_text() for log in logs):
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    raise RuntimeError("an ingest worker did not start: "
                                       + " / ".join(log.read_text() for log in logs))
                time.sleep(0.2)
            time.sleep(1.0)  # the SUBACKs follow the connection
            broker_pid = broker._process.pid  # noqa: SLF001 - CPU accounting only
            cpu_before = sum(_cpu_seconds(p.pid) for p in processes)
            broker_before = _cpu_seconds(broker_pid)
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            with LoadSampler() as load:
                simulation = subprocess.run(
                    [sys.executable, "-m", "dashboard.cli", "simulate", "--broker",
                     broker.url, "--devices", str(devices), "--rate", str(rate),
                     "--duration", str(duration), "--duplicates", str(duplicates), "--seed",
                     str(seed), "--username", "simulator", "--password-file",
                     str(password_file)],
                    cwd=REPO, capture_output=True, text=True, check=False)
                children = resource.getrusage(resource.RUSAGE_CHILDREN)
                if simulation.returncode != 0:
                    raise RuntimeError(f"simulate failed: {simulation.stderr}")
                published = int(re.search(r"published (\d+) results",
                                          simulation.stdout).group(1))
                stored = _wait_for_drain(engine, published)
                drained_s = time.monotonic() - started
                cpu = sum(_cpu_seconds(p.pid) for p in processes) - cpu_before
                broker_cpu = _cpu_seconds(broker_pid) - broker_before
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
    with Session(engine) as session:
        distinct = session.scalar(select(func.count(func.distinct(Result.result_id))))
        distinct_seq = session.scalar(select(func.count()).select_from(
            select(Result.device, Result.seq).distinct().subquery()))
        by_worker = dict(session.execute(select(Result.stored_by, func.count())
                                         .group_by(Result.stored_by)).all())
        lags = np.array([(stored_at - ended_at).total_seconds() for stored_at, ended_at in
                         session.execute(select(Result.stored_at, Result.ended_at))])
    sim_cpu = (children.ru_utime + children.ru_stime
               - children_before.ru_utime - children_before.ru_stime)
    publishing = re.search(r"([\d.]+)\s+s\s+publishing", simulation.stderr)
    return {
        "workers": workers, "published": published, "rows": stored, "distinct": distinct,
        "lost": published - distinct, "double": stored - min(distinct, distinct_seq),
        "lag": np.percentile(lags, [50, 95]) if lags.size else [np.nan, np.nan],
        "lag_max": lags.max() if lags.size else np.nan,
        "sim_rate": published / float(publishing.group(1)),
        "drained_s": drained_s,
        "split": " / ".join(f"{by_worker.get(f'w{i + 1}', 0)}" for i in range(workers)),
        "cpu_per_1000": 1000 * cpu / max(stored, 1),
        "cores": {"simulator": sim_cpu / drained_s, "broker": broker_cpu / drained_s,
                  "workers": cpu / drained_s},
        "load_mean": float(np.mean(load.samples)), "load_max": float(np.max(load.samples)),
        "busy": load.busy_s / load.wall_cpu_s,
        "others": (load.busy_s - sim_cpu - broker_cpu - cpu) / drained_s,
        "duplicates_sent": re.search(r"(\d+)\s+duplicates", simulation.stderr).group(1),
    }


def _wait_for_drain(engine, published: int, quiet_s: float = 10.0) -> int:  # noqa: ANN001
    """Wait until every published result is stored, or nothing new arrives for quiet_s."""
    last, last_change = -1, time.monotonic()
    while True:
        with Session(engine) as session:
            count = session.scalar(select(func.count()).select_from(Result)) or 0
        if count >= published:
            return count
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > quiet_s:
            return count
        time.sleep(0.5)


def main(
    devices: Annotated[int, typer.Option(help="Simulated devices.")] = 100,
    rate: Annotated[float, typer.Option(help="Results per second per device.")] = 10.0,
    duration: Annotated[float, typer.Option(help="Seconds of publishing.")] = 300.0,
    workers: Annotated[str, typer.Option(help="Worker counts to run, comma-separated.")] = "1,2",
    duplicates: Annotated[float, typer.Option(help="Share of results re-sent.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 0,
) -> None:
    """Run the ingest benchmark and print one row per worker count."""
    outcome = Table(title=f"dashboard ingest: {devices} devices x {rate:g}/s x {duration:g} s "
                          f"into SQLite ({duplicates:.0%} re-sent), {os.cpu_count()} cores")
    for column in ("workers", "published", "stored", "lost", "double-counted", "dups sent",
                   "sim rate/s", "lag p50 s", "lag p95 s", "lag max s", "done after s",
                   "split"):
        outcome.add_column(column, justify="right")
    load = Table(title="CPU while it ran (cores busy on average; the machine is shared)")
    for column in ("workers", "ingest CPU s/1000", "simulator", "broker", "ingest",
                   "other jobs", "machine busy", "load avg 1 min"):
        load.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="sarco-bench-") as tmp:
        for count in (int(w) for w in workers.split(",")):
            console.print(f"running {count} worker(s)... (load average now "
                          f"{os.getloadavg()[0]:.2f})")
            row = run_scenario(Path(tmp) / f"workers-{count}", count, devices, rate, duration,
                               duplicates, seed)
            cores = row["cores"]
            outcome.add_row(str(row["workers"]), str(row["published"]), str(row["rows"]),
                            str(row["lost"]), str(row["double"]), row["duplicates_sent"],
                            f"{row['sim_rate']:.0f}", f"{row['lag'][0]:.3f}",
                            f"{row['lag'][1]:.3f}", f"{row['lag_max']:.3f}",
                            f"{row['drained_s']:.1f}", row["split"])
            load.add_row(str(row["workers"]), f"{row['cpu_per_1000']:.2f}",
                         f"{cores['simulator']:.2f}", f"{cores['broker']:.2f}",
                         f"{cores['workers']:.2f}", f"{row['others']:.2f}",
                         f"{row['busy']:.0%}",
                         f"{row['load_mean']:.2f} (max {row['load_max']:.2f})")
    console.print(outcome)
    console.print(load)


if __name__ == "__main__":
    typer.run(main)
