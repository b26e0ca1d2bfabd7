"""The device's MQTT link against a real Mosquitto (password file, ACL, optionally TLS)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from edge_app.deploy.telemetry import AppMetrics, health_fields
from edge_app.mqtt.link import MqttLink
from edge_app.mqtt.outbox import Outbox
from sarco_core.wire import schema
from sarco_core.wire.broker import BrokerSettings
from testkit.mosquitto import Collector, MosquittoBroker, make_tls_files, requires_mosquitto
from tests.support.paths import REPO
from tests.support.wire import result_payload

pytestmark = requires_mosquitto

USERS = {"edge-01": "device-secret", "edge-02": "other-secret", "dashboard": "dash-secret"}
SITE, DEVICE = "clinic-a", "edge-01"
TOPIC = schema.topic_for(SITE, DEVICE, "result")


def status_fields() -> dict:
    return {"app_version": "test", "model": {"name": "tiny", "sha256": "b" * 64}}


def make_link(broker: MosquittoBroker, outbox: Outbox, user: str = DEVICE,
              password: str | None = None, **options) -> MqttLink:
    settings = BrokerSettings.from_url(
        broker.url, username=user, password=password or USERS[user],
        backoff_min_s=options.pop("backoff_min_s", 0.3), backoff_max_s=1.0, **options)
    return MqttLink(settings, SITE, DEVICE, outbox, status_fields)


def add_results(outbox: Outbox, link: MqttLink, count: int, pause_s: float = 0.0) -> list[str]:
    ids = []
    for number in range(count):
        payload = outbox.add(TOPIC, result_payload(
            result_id=str(uuid.uuid4()), site=SITE, device=DEVICE,
            screening_id=f"SCR-{number:04d}"))
        ids.append(payload["result_id"])
        link.notify()
        if pause_s:
            time.sleep(pause_s)  # a producer's pace, not a wait for a condition
    return ids


def results_of(collector: Collector) -> list[dict]:
    return [schema.decode(TOPIC, data)[1] for data in collector.of_kind("result")]


def unique_in_order(results: list[dict]) -> list[dict]:
    seen: set[str] = set()
    first = []
    for result in results:
        if result["result_id"] not in seen:
            seen.add(result["result_id"])
            first.append(result)
    return first


def wait_until(condition, timeout_s: float = 30.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def broker(tmp_path: Path):
    with MosquittoBroker(tmp_path / "broker", USERS, persistent=True) as running:
        yield running


def test_results_are_delivered_in_order_and_removed_on_puback(broker, tmp_path) -> None:
    collector = Collector(broker, "dashboard", USERS["dashboard"])
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    link = make_link(broker, outbox)
    link.start()
    try:
        ids = add_results(outbox, link, 12)
        assert link.wait_until_drained(30), link.state
        assert collector.wait_for(lambda m: len(results_of(collector)) >= 12)
        results = results_of(collector)
        assert [r["result_id"] for r in results] == ids
        assert [r["seq"] for r in results] == sorted(r["seq"] for r in results)
        statuses = [schema.decode(schema.topic_for(SITE, DEVICE, "status"), d)[1]
                    for d in collector.of_kind("status")]
        assert statuses[-1]["state"] == "online"
    finally:
        link.stop()
        outbox.close()
    # a clean stop leaves a retained "offline" for whoever subscribes later
    late = Collector(broker, "dashboard", USERS["dashboard"])
    assert late.wait_for(lambda m: any(json.loads(d)["state"] == "offline"
                                       for d in late.of_kind("status")), 15)
    late.close()
    collector.close()


def test_broker_killed_and_restarted_every_result_once_in_order(broker, tmp_path) -> None:
    collector = Collector(broker, "dashboard", USERS["dashboard"], persistent_session=True)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    link = make_link(broker, outbox)
    link.start()
    try:
        before = add_results(outbox, link, 10, pause_s=0.01)
        assert collector.wait_for(lambda m: len(results_of(collector)) >= 3)
        broker.kill()  # SIGKILL, mid-stream
        during = add_results(outbox, link, 10, pause_s=0.01)
        assert wait_until(lambda: not link.state.connected)
        broker.start()  # same port
        after = add_results(outbox, link, 5)
        expected = before + during + after
        assert collector.wait_for(
            lambda m: len({r["result_id"] for r in results_of(collector)}) >= len(expected), 60)
        assert link.wait_until_drained(30)
        first_arrivals = unique_in_order(results_of(collector))
        assert [r["result_id"] for r in first_arrivals] == expected  # exactly once, in order
        assert len(outbox) == 0
    finally:
        link.stop()
        outbox.close()
        collector.close()


def test_results_wait_for_a_subscriber_instead_of_vanishing(broker, tmp_path) -> None:
    """Mosquitto answers PUBACK 0x10 "No matching subscribers" while no dashboard worker is
    subscribed (as after a broker restart, which drops $share subscriptions) and then drops
    the message: the result must stay in the outbox and go again once someone listens."""
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    link = make_link(broker, outbox)
    link.start()
    watcher = None
    try:
        ids = add_results(outbox, link, 3)
        assert wait_until(lambda: "no dashboard is subscribed" in link.state.backlog_reason)
        assert len(outbox) == 3 and not link.wait_until_drained(0.5)
        status_topic = schema.topic_for(SITE, DEVICE, "status")
        watcher = Collector(broker, "dashboard", USERS["dashboard"], topic=status_topic)
        link._conn.status_at = 0.0  # ask for a status refresh now  # noqa: SLF001
        link.notify()
        assert watcher.wait_for(lambda m: any(
            "no dashboard" in (schema.decode(status_topic, d)[1].get("backlog_reason") or "")
            for d in watcher.of_kind("status")))
        collector = Collector(broker, "dashboard", USERS["dashboard"], topic=TOPIC)
        assert link.wait_until_drained(30), link.state
        assert collector.wait_for(lambda m: len(results_of(collector)) >= 3)
        assert [r["result_id"] for r in unique_in_order(results_of(collector))] == ids
        assert link.state.backlog_reason == ""
        collector.close()
    finally:
        link.stop()
        outbox.close()
        if watcher is not None:
            watcher.close()


def test_broker_down_at_start_then_up_results_drain(tmp_path) -> None:
    broker = MosquittoBroker(tmp_path / "broker", USERS)  # not started
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    link = make_link(broker, outbox)
    link.start()
    try:
        ids = add_results(outbox, link, 3)
        assert wait_until(lambda: "cannot reach" in link.state.detail)
        assert len(outbox) == 3  # nothing lost, nothing sent
        with broker:
            collector = Collector(broker, "dashboard", USERS["dashboard"])
            assert link.wait_until_drained(30), link.state
            assert collector.wait_for(lambda m: len(results_of(collector)) >= 3)
            assert [r["result_id"] for r in results_of(collector)] == ids
            collector.close()
    finally:
        link.stop()
        outbox.close()


def test_a_rejected_login_is_explained_and_results_stay_queued(broker, tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    link = make_link(broker, outbox, password="wrong")
    link.start()
    try:
        add_results(outbox, link, 1)
        assert wait_until(lambda: "refused the login" in link.state.detail), link.state
        assert len(outbox) == 1
    finally:
        link.stop()
        outbox.close()


def test_the_acl_rejection_of_a_result_keeps_it_on_disk(broker, tmp_path) -> None:
    # edge-02's credentials may not write under edge-01: the broker answers "Not authorized"
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    link = make_link(broker, outbox, user="edge-02")
    link.start()
    try:
        ids = add_results(outbox, link, 2)
        assert wait_until(lambda: link.state.rejected == set(ids)), link.state
        assert len(outbox) == 2
        # what `sarco-edge replay` prints: the refusal and its fix, not "did not acknowledge"
        assert "Not authorized" in link.waiting_reason() and "ACL" in link.waiting_reason()
        # a later result the broker takes does not hide the refusal of those still waiting
        collector = Collector(broker, "dashboard", USERS["dashboard"])
        allowed = outbox.add(schema.topic_for(SITE, "edge-02", "result"), result_payload(
            result_id=str(uuid.uuid4()), site=SITE, device="edge-02"))
        link.notify()
        assert collector.wait_for(lambda m: any(
            json.loads(d)["result_id"] == allowed["result_id"]
            for d in collector.of_kind("result")))
        assert wait_until(lambda: len(outbox) == 2)
        assert "Not authorized" in link.waiting_reason()
        collector.close()
        assert link.wait_until_drained(1)  # rejected rows do not block a replay's exit
    finally:
        link.stop()
        outbox.close()


def test_mqtt_311_and_commands_from_the_dashboard(broker, tmp_path) -> None:
    received: list[dict] = []
    got_command = threading.Event()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    link = make_link(broker, outbox, protocol="3.1.1")
    link.on_command = lambda command: (received.append(command), got_command.set())
    link.start()
    dashboard = Collector(broker, "dashboard", USERS["dashboard"])
    try:
        # "online" is published once the command subscription is in place
        assert dashboard.wait_for(lambda m: any(json.loads(d)["state"] == "online"
                                                for d in dashboard.of_kind("status")), 30)
        assert link.state.protocol == "3.1.1"
        command = {"schema_version": 1, "kind": "cmd", "command": "start_session",
                   "screening_id": "SCR-0077"}
        cmd_topic = schema.topic_for(SITE, DEVICE, "cmd")
        # a malformed command is ignored, the next one still arrives
        dashboard.publish(cmd_topic, b"{not json")
        dashboard.publish(cmd_topic, json.dumps(command))
        assert got_command.wait(15)
        assert received == [command]
    finally:
        dashboard.close()
        link.stop()
        outbox.close()


def test_tls_with_a_private_ca(tmp_path) -> None:
    ca, cert, key = make_tls_files(tmp_path / "tls")
    with MosquittoBroker(tmp_path / "broker", USERS, tls_files=(ca, cert, key)) as broker:
        outbox = Outbox(tmp_path / "outbox.sqlite3")
        link = make_link(broker, outbox, ca_file=ca)
        assert link.settings.tls
        # a result counts as delivered only once a subscriber takes it (PUBACK 0x00)
        collector = Collector(broker, "dashboard", USERS["dashboard"], tls_ca=ca)
        link.start()
        try:
            ids = add_results(outbox, link, 1)
            assert link.wait_until_drained(30), link.state
            assert collector.wait_for(lambda m: [r["result_id"]
                                                 for r in results_of(collector)] == ids)
        finally:
            link.stop()
            outbox.close()
            collector.close()


def test_a_device_that_dies_is_announced_offline_by_its_last_will(broker, tmp_path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from edge_app.mqtt.link import MqttLink
        from edge_app.mqtt.outbox import Outbox
        from sarco_core.wire.broker import BrokerSettings
        settings = BrokerSettings.from_url({broker.url!r}, username={DEVICE!r},
                                           password={USERS[DEVICE]!r}, keepalive_s=2)
        from edge_app.deploy.telemetry import AppMetrics, health_fields
        health = health_fields(None, AppMetrics(9.5, 100, 20, 0, 0))
        link = MqttLink(settings, {SITE!r}, {DEVICE!r}, Outbox(Path({str(tmp_path)!r}) / "o.db"),
                        lambda: {{"app_version": "test", "model": None, "health": health}})
        link.start()
        while not link.state.connected:
            time.sleep(0.05)
        print("connected", flush=True)
        time.sleep(120)
    """)
    device = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              cwd=REPO, text=True)
    collector = Collector(broker, "dashboard", USERS["dashboard"])
    try:
        assert device.stdout.readline().strip() == "connected"
        assert collector.wait_for(lambda m: any(json.loads(d)["state"] == "online"
                                                for d in collector.of_kind("status")), 15)
        device.kill()  # no DISCONNECT: the broker publishes the will
        assert collector.wait_for(lambda m: json.loads(collector.of_kind("status")[-1])["state"]
                                  == "offline", 30)
        online, will = (schema.decode(schema.topic_for(SITE, DEVICE, "status"), data)[1]
                        for data in collector.of_kind("status")[-2:])
        assert online["health"]["fps"] == 9.5
        # fixed at connect time: no time, backlog or health of unknown age
        assert will["at"] is None and will["queued_results"] is None and will["health"] is None
    finally:
        device.kill()
        device.wait()
        collector.close()


def test_the_retained_status_is_refreshed_so_its_health_stays_current(broker, tmp_path) -> None:
    frames = itertools.count(1)

    def fields() -> dict:
        return {**status_fields(),
                "health": health_fields(None, AppMetrics(30.0, next(frames), 0, 0, 0))}

    outbox = Outbox(tmp_path / "outbox.sqlite3")
    settings = BrokerSettings.from_url(broker.url, username=DEVICE, password=USERS[DEVICE])
    link = MqttLink(settings, SITE, DEVICE, outbox, fields, status_interval_s=0.3)
    collector = Collector(broker, "dashboard", USERS["dashboard"])
    link.start()
    try:
        assert collector.wait_for(lambda m: len(collector.of_kind("status")) >= 4, 20)
    finally:
        link.stop()
        outbox.close()
        collector.close()
    statuses = [schema.decode(schema.topic_for(SITE, DEVICE, "status"), data)[1]
                for data in collector.of_kind("status")]
    online = [s for s in statuses if s["state"] == "online"]
    assert len(online) >= 3
    counts = [s["health"]["frames_processed"] for s in online]
    assert counts == sorted(set(counts))  # every refresh computed anew
    times = [s["at"] for s in online]
    assert times == sorted(times) and len(set(times)) == len(times)
