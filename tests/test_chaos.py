"""The short chaos run (benchmarks/bench_chaos.py) as a test: real Mosquitto with persistence,
two ingest worker processes, three device processes with the edge's own outbox and link; two
broker restarts (SIGTERM, SIGKILL), a worker and a device SIGKILLed, the hostile payloads of
issue #17 injected twice. Nothing may be lost, stored twice, or let a hostile payload in."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from testkit.mosquitto import requires_mosquitto
from tests.support.paths import REPO

BENCH = REPO / "benchmarks" / "bench_chaos.py"


def load_bench():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("bench_chaos", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_chaos"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@requires_mosquitto
def test_nothing_lost_nothing_doubled_no_hostile_payload_stored(tmp_path) -> None:
    bench = load_bench()
    figures = bench.run_chaos(tmp_path, devices=3, rate=2.0, duration=36.0, broker_restarts=2,
                              worker_kills=1, device_kills=1, broker_down_s=3.0)
    assert figures["broker_restarts"] == {"SIGTERM": 1, "SIGKILL": 1}
    assert figures["published"] > 150, figures
    assert figures["lost"] == 0 and figures["duplicated"] == 0, figures
    assert figures["hostile_sent"] == 2 * len(bench.hostile_payloads())
    assert figures["hostile_stored"] == 0, figures
    assert figures["rejected"] == figures["hostile_sent"], figures
    assert figures["longest_stall_s"] <= 30, figures
