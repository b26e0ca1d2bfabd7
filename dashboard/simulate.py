"""A simulated fleet: many devices publishing results, live readings and statuses.

For demos, the tests and the load benchmark. Payloads go through ``edge_app.mqtt.schema``
(``encode`` validates them), the module the real devices use, so a schema change breaks the
simulator loudly instead of letting it publish what the dashboard would reject.

Each device is its own MQTT client (its own client id, retained status and last will), as in
the field. All of them are driven from one thread through paho's external-loop API
(``loop_read``/``loop_write``/``loop_misc`` on a selector): a network thread per device would
spend the simulator's time fighting over the GIL and cap the rate far below a fleet's.

The fleet is realistic in the ways the dashboard cares about and deterministic given the
seed: several devices per site, most on the current model and some on the previous one, a few
with low frame rates, many rejected frames or a backlog of unsent results, and positive
screens at a site-dependent rate. Results are spread evenly over time at ``rate``
per device; with ``duplicate_share`` some are sent a second time after the device's next
result, as a device does when it re-sends after a lost acknowledgement (a duplicate, out of
order).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import selectors
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_app.mqtt import schema
from edge_app.mqtt.link import BrokerSettings

DEVICES_PER_SITE = 6
MODELS = (  # (name, version, app version, share of the fleet)
    ("sarco-effnet-lite0", "v3", "0.3.1", 0.8),
    ("sarco-effnet-lite0", "v2", "0.2.4", 0.2),
)
THRESHOLD = 0.5
MIN_USABLE_FRAMES = 20
STATUS_EVERY_S = 30.0
SKIP_REASONS = ("no_tissue", "frozen", "transition", "no_region")
# share of devices with each kind of trouble the health view should catch
TROUBLE_SHARES = {"slow": 0.08, "noisy": 0.08, "backlog": 0.05}


class SimulationError(RuntimeError):
    """The simulator could not deliver its messages; the message says why."""


@dataclass(frozen=True)
class DeviceProfile:
    """One simulated device and the habits that show up on the dashboard."""

    index: int
    site: str
    device: str
    model_name: str
    model_sha256: str
    app_version: str
    fps: float
    skip_share: float  # share of frames the quality gate rejects
    backlog: int  # results the device reports as still queued
    prevalence: float  # share of people screened here who have sarcopenia


def plan_fleet(devices: int, seed: int) -> list[DeviceProfile]:
    """``devices`` devices over ``ceil(devices / 6)`` sites, drawn from ``seed``."""
    if devices < 1:
        raise ValueError(f"--devices must be at least 1, got {devices}")
    rng = np.random.default_rng(seed)
    sites = math.ceil(devices / DEVICES_PER_SITE)
    site_prevalence = rng.uniform(0.12, 0.35, size=sites)
    shares = np.array([share for *_, share in MODELS])
    # fixed shares of troubled devices (rounded), placed at random
    order = iter(rng.permutation(devices).tolist())
    troubled = {kind: {next(order) for _ in range(round(share * devices))}
                for kind, share in TROUBLE_SHARES.items()}
    fleet = []
    for index in range(devices):
        site = index % sites
        name, version, app_version, _ = MODELS[rng.choice(len(MODELS), p=shares)]
        fleet.append(DeviceProfile(
            index=index,
            site=f"site-{site + 1:02d}",
            device=f"us-{index + 1:03d}",
            model_name=f"{name}-{version}",
            model_sha256=hashlib.sha256(f"{name}-{version}".encode()).hexdigest(),
            app_version=app_version,
            fps=float(rng.uniform(4, 7) if index in troubled["slow"] else rng.uniform(18, 30)),
            skip_share=float(rng.uniform(0.55, 0.7) if index in troubled["noisy"]
                             else rng.uniform(0.05, 0.25)),
            backlog=int(rng.integers(25, 80)) if index in troubled["backlog"] else 0,
            prevalence=float(site_prevalence[site]),
        ))
    return fleet


class _Network:
    """Every device connection, served from the calling thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._clients: list[mqtt.Client] = []
        self._misc_at = time.monotonic()

    def add(self, client: mqtt.Client) -> None:
        self._clients.append(client)
        self._selector.register(client.socket(), selectors.EVENT_READ, client)

    def poll(self, timeout_s: float) -> None:
        """Read what arrived (CONNACKs, PUBACKs) for up to ``timeout_s``, flush writes, and
        keep the connections alive."""
        for key, _ in self._selector.select(max(timeout_s, 0.0)):
            self._check(key.data, key.data.loop_read())
        for client in self._clients:
            if client.want_write():
                self._check(client, client.loop_write())
        if time.monotonic() - self._misc_at >= 1.0:
            self._misc_at = time.monotonic()
            for client in self._clients:
                self._check(client, client.loop_misc())

    @staticmethod
    def _check(client: mqtt.Client, rc: mqtt.MQTTErrorCode) -> None:
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise SimulationError(f"{client._client_id.decode()}: lost the connection to the "  # noqa: SLF001
                                  f"broker ({mqtt.error_string(rc)})")

    def close(self) -> None:
        for client in self._clients:
            client.disconnect()
        self._selector.close()


@dataclass
class SimulationReport:
    results: int = 0  # distinct results the broker acknowledged
    duplicates: int = 0  # extra copies sent on purpose
    live: int = 0
    statuses: int = 0
    elapsed_s: float = 0.0
    devices: int = 0


@dataclass
class _Device:
    profile: DeviceProfile
    client: mqtt.Client
    topics: dict[str, str]
    results_made: int = 0
    session_id: str = ""
    screening_id: str = ""
    resend: bytes | None = None
    connected: bool = False
    refusals: list[str] = field(default_factory=list)


class FleetSimulator:
    """``run()`` connects every device, publishes for ``duration_s`` and waits until the
    broker has acknowledged every result."""

    def __init__(self, broker: BrokerSettings, fleet: list[DeviceProfile], rate: float,
                 duration_s: float, seed: int = 0, duplicate_share: float = 0.0,
                 live_rate: float = 1.0) -> None:
        if rate <= 0 or duration_s <= 0:
            raise ValueError("--rate and --duration must be positive")
        if not 0 <= duplicate_share <= 1:
            raise ValueError(f"--duplicates must be within [0, 1], got {duplicate_share}")
        self.broker = broker
        self.fleet = fleet
        self.rate = rate
        self.duration_s = duration_s
        self.duplicate_share = duplicate_share
        self.live_rate = live_rate
        self._rng = np.random.default_rng(seed)
        self._pending: deque[mqtt.MQTTMessageInfo] = deque()
        self._network = _Network()

    def run(self, on_progress: Callable[[float], None] | None = None) -> SimulationReport:
        report = SimulationReport(devices=len(self.fleet))
        try:
            devices = self._connect_all()
            started = time.monotonic()
            for device in devices:
                report.statuses += self._publish_status(device, "online")
            self._publish_until_done(devices, report, started, on_progress)
            self._wait_for_acks()
            for device in devices:
                report.statuses += self._publish_status(device, "offline")
            self._wait_for_acks()
        finally:
            self._network.close()
        refusals = [f"{d.profile.device}: {r}" for d in devices for r in d.refusals]
        if refusals:
            raise SimulationError(
                f"the broker refused {len(refusals)} message(s) ({refusals[0]}, ...): its ACL "
                "must let the simulator's user write sarco/v1/#")
        report.elapsed_s = time.monotonic() - started
        return report

    # ------------------------------------------------------------------ schedule

    def _publish_until_done(self, devices: list[_Device], report: SimulationReport,
                            started: float,
                            on_progress: Callable[[float], None] | None) -> None:
        """One event heap for the whole fleet: results evenly staggered across devices,
        live readings and periodic statuses."""
        count = len(devices)
        periods = {"result": 1 / self.rate, "status": STATUS_EVERY_S}
        if self.live_rate > 0:
            periods["live"] = 1 / self.live_rate
        # (time, kind, device, tick): times come from whole ticks so no rounding drifts in
        events = [((k + i / count) * period, kind, i, k) for kind, period in periods.items()
                  for i in range(count) for k in ([1] if kind == "status" else [0])]
        heapq.heapify(events)
        last_progress = 0.0
        while events:
            at, kind, i, tick = heapq.heappop(events)
            if at >= self.duration_s:
                continue
            while (delay := started + at - time.monotonic()) > 0:
                self._network.poll(delay)
            device = devices[i]
            if kind == "result":
                self._publish_result(device, report)
            elif kind == "live":
                self._publish_live(device, at)
                report.live += 1
            else:
                report.statuses += self._publish_status(device, "online")
            heapq.heappush(events, ((tick + 1 + i / count) * periods[kind], kind, i, tick + 1))
            self._network.poll(0)
            self._prune()
            if on_progress is not None and at - last_progress >= 0.5:
                last_progress = at
                on_progress(min(at / self.duration_s, 1.0))
        if on_progress is not None:
            on_progress(1.0)

    def _prune(self) -> None:
        while self._pending and self._pending[0].is_published():
            self._pending.popleft()

    def _wait_for_acks(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._pending:
            if time.monotonic() > deadline:
                raise SimulationError(
                    f"the broker did not acknowledge every message within {timeout_s:.0f} s")
            self._network.poll(0.05)
            self._prune()

    # ------------------------------------------------------------------ devices

    def _connect_all(self) -> list[_Device]:
        devices = [self._connect(profile) for profile in self.fleet]
        deadline = time.monotonic() + self.broker.connect_timeout_s + 5
        try:
            while not all(device.connected for device in devices):
                if time.monotonic() > deadline:
                    waiting = next(d for d in devices if not d.connected)
                    raise SimulationError(f"no answer from the broker at {self.broker.url} "
                                          f"for {waiting.profile.device}")
                self._network.poll(0.05)
        except SimulationError:
            self._explain_refusal(devices)  # a refused login also drops the connection
            raise
        self._explain_refusal(devices)
        return devices

    def _explain_refusal(self, devices: list[_Device]) -> None:
        refused = [d for d in devices if d.refusals]
        if refused:
            raise SimulationError(
                f"the broker at {self.broker.url} refused {refused[0].profile.device}: "
                f"{refused[0].refusals[0]}; check --username and --password-file")

    def _connect(self, profile: DeviceProfile) -> _Device:
        broker = self.broker
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"sarco-sim-{profile.site}-{profile.device}",
                             protocol=mqtt.MQTTv5)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(100)
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            client.tls_set(ca_certs=str(broker.ca_file) if broker.ca_file else None)
        topics = {kind: schema.topic_for(profile.site, profile.device, kind)
                  for kind in ("result", "live", "status")}
        device = _Device(profile=profile, client=client, topics=topics)
        client.will_set(topics["status"], self._status_payload(device, "offline", will=True),
                        qos=1, retain=True)

        def on_connect(client, userdata, flags, reason, properties) -> None:  # noqa: ANN001
            if reason.is_failure:
                device.refusals.append(str(reason))
            device.connected = True

        def on_publish(client, userdata, mid, reason, properties) -> None:  # noqa: ANN001
            if reason.is_failure:
                device.refusals.append(str(reason))

        client.on_connect = on_connect
        client.on_publish = on_publish
        try:
            client.connect(broker.host, broker.port, keepalive=broker.keepalive_s)
        except OSError as exc:
            raise SimulationError(f"cannot reach the broker at {broker.url}: {exc}") from None
        self._network.add(client)
        return device

    def _publish(self, device: _Device, kind: str, data: bytes, qos: int,
                 retain: bool = False) -> None:
        info = device.client.publish(device.topics[kind], data, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SimulationError(f"{device.profile.device}: publish failed "
                                  f"({mqtt.error_string(info.rc)})")
        if qos > 0:
            self._pending.append(info)

    def _publish_status(self, device: _Device, state: str) -> int:
        self._publish(device, "status", self._status_payload(device, state), qos=1,
                      retain=True)
        return 1

    def _status_payload(self, device: _Device, state: str, will: bool = False) -> bytes:
        profile = device.profile
        return schema.encode("status", {
            "schema_version": schema.SCHEMA_VERSION, "kind": "status",
            "site": profile.site, "device": profile.device, "state": state,
            "at": None if will else schema.utc_timestamp(time.time()),
            "app_version": profile.app_version,
            "model": {"name": profile.model_name, "sha256": profile.model_sha256},
            "queued_results": None if will else profile.backlog,
        })

    def _publish_result(self, device: _Device, report: SimulationReport) -> None:
        data = self._result_payload(device)
        self._publish(device, "result", data, qos=1)
        report.results += 1
        if device.resend is not None:  # the copy of an earlier result, after a newer one
            self._publish(device, "result", device.resend, qos=1)
            report.duplicates += 1
            device.resend = None
        if self.duplicate_share and self._rng.random() < self.duplicate_share:
            device.resend = data

    def _result_payload(self, device: _Device) -> bytes:
        rng, profile = self._rng, device.profile
        device.results_made += 1
        device.session_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        device.screening_id = f"SCR-{profile.index + 1:03d}-{device.results_made:06d}"
        now = time.time()
        processed = int(rng.integers(30, 200))
        skipped_total = int(rng.binomial(processed, profile.skip_share))
        skipped = dict(zip(SKIP_REASONS, (int(n) for n in rng.multinomial(
            skipped_total, [0.4, 0.2, 0.3, 0.1])), strict=True))
        usable = processed - skipped_total
        if usable < MIN_USABLE_FRAMES:
            decision, probability, logit, uncertainty = "rescan", None, None, None
        else:
            has_sarcopenia = rng.random() < profile.prevalence
            probability = float(np.clip(rng.beta(6, 2) if has_sarcopenia else rng.beta(2, 6),
                                        0.001, 0.999))
            logit = math.log(probability / (1 - probability))
            decision = "sarcopenia" if probability >= THRESHOLD else "no_sarcopenia"
            uncertainty = {"logit_sd": float(rng.gamma(2.0, 0.3)),
                           "agreement": float(rng.uniform(0.6, 1.0)), "dirichlet_u": None}
        return schema.encode("result", {
            "schema_version": schema.SCHEMA_VERSION, "kind": "result",
            "site": profile.site, "device": profile.device,
            "result_id": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
            "seq": device.results_made,
            "session_id": device.session_id, "screening_id": device.screening_id,
            "started_at": schema.utc_timestamp(now - float(rng.uniform(30, 150))),
            "ended_at": schema.utc_timestamp(now),
            "decision": decision, "probability": probability, "score_logit": logit,
            "threshold": THRESHOLD, "aggregation": "mean_logit", "uncertainty": uncertainty,
            "usable_frames": usable, "processed_frames": processed,
            "min_usable_frames": MIN_USABLE_FRAMES, "skipped": skipped,
            "model": {"name": profile.model_name, "sha256": profile.model_sha256},
            "app_version": profile.app_version,
        })

    def _publish_live(self, device: _Device, at: float) -> None:
        rng, profile = self._rng, device.profile
        quality = "ok" if rng.random() >= profile.skip_share else str(
            rng.choice(SKIP_REASONS))
        probability = float(rng.uniform(0.05, 0.95)) if quality == "ok" else None
        self._publish(device, "live", schema.encode("live", {
            "schema_version": schema.SCHEMA_VERSION, "kind": "live",
            "site": profile.site, "device": profile.device,
            "session_id": device.session_id or str(uuid.UUID(int=profile.index, version=4)),
            "screening_id": device.screening_id or f"SCR-{profile.index + 1:03d}-000000",
            "frame": int(at * profile.fps),
            "captured_at": schema.utc_timestamp(time.time()),
            "quality": quality, "probability": probability,
            "smoothed_probability": probability,
            "usable_frames": int(rng.integers(0, 200)),
            "fps": max(float(rng.normal(profile.fps, 0.8)), 0.0),
        }), qos=0)
