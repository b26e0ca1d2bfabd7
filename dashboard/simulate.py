"""A simulated fleet: many devices publishing results, live readings and statuses.

For demos, the tests and the load benchmark. Payloads go through ``sarco_core.wire.schema``
(``encode`` validates them), the module the real devices use, so a schema change breaks the
simulator loudly instead of letting it publish what the dashboard would reject.

Each device is its own MQTT client (its own client id, retained status with health telemetry,
last will), as in the field. All of them are driven from one thread through paho's
external-loop API (``loop_read``/``loop_write``/``loop_misc`` on a selector): a network thread
per device would spend the simulator's time fighting over the GIL. The loop is kept lean
because the load target (a thousand results a second on two cores shared with the broker and
the ingest) leaves the simulator well under one core: random figures are drawn a block at a
time per device (a numpy call per figure costs microseconds), everything due is published
before the selector is polled once, and broker acknowledgements are counted, not tracked one
by one.

The fleet is realistic in the ways the dashboard cares about and deterministic given the
seed (its plan and every figure; result, session and screening ids are new each run, so a
second run adds results instead of re-sending the first run's): several devices per site, most on the current model and some on the previous one (a few
after a rolled-back update), a few with low frame rates, many rejected frames, a backlog of
unsent results or a hot module, and positive screens at a site-dependent rate. Every device
draws from its own random stream (``SeedSequence(seed, spawn_key=(index,))``), so a device's
results are the same however the fleet is split. Results are spread evenly over time at
``rate`` per device; with ``duplicate_share`` some are sent a second time after the device's
next result, as a device does when it re-sends after a lost acknowledgement (a duplicate, out
of order). ``offline_after`` makes devices drop off mid-run as a power cut does: the broker
publishes their last will, and they send nothing more (no goodbye at the end).

Devices on the current app (``MEASURING_APP``) also send muscle measurements (``measurements``
in docs/mqtt.md, built with ``MuscleMeasurements``): thinner muscle, a smaller pennation angle
and a brighter (higher) echo intensity with sarcopenia; each device's echo intensity is offset
by its scanner's gain, and a quarter of them know no pixel size (thickness in pixels only),
so the site page shows what it must not pool. Those scanner traits come from a stream of their
own, so the rest of a seed's plan is what it was before them.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import selectors
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from sarco_core.errors import SarcoError
from sarco_core.wire import schema
from sarco_core.wire.broker import BrokerSettings, make_client
from sarco_core.wire.payloads import (
    LivePayload,
    MuscleMeasurements,
    ResultPayload,
    StatusPayload,
    Uncertainty,
)

DEVICES_PER_SITE = 6
MODELS = (  # (name, version, app version, share of the fleet, bundle version that brought it)
    ("sarco-effnet-lite0", "v3", "0.3.1", 0.8, "2025.06-1"),
    ("sarco-effnet-lite0", "v2", "0.2.4", 0.2, "2025.03-2"),
)
MEASURING_APP = MODELS[0][2]  # the app that sends measurements (the older one sends none)
MEASURE_MODEL = "aponeurosis"  # its SHA-256 is the name's, as for the screening models
MEASURE_MODEL_SHA256 = hashlib.sha256(MEASURE_MODEL.encode()).hexdigest()
PIXELS_ONLY_SHARE = 0.25  # of the measuring devices: no pixel size, thickness in px only
THRESHOLD = 0.5
MIN_USABLE_FRAMES = 20
STATUS_EVERY_S = 30.0
SKIP_SPLIT = (0.4, 0.2, 0.3, 0.1)  # how the quality gate's refusals divide among the reasons
RAM_TOTAL_MB = 7620  # an 8 GB Jetson Orin module as tegrastats reports it
# share of devices with each kind of trouble the health view should catch
TROUBLE_SHARES = {"slow": 0.08, "noisy": 0.08, "backlog": 0.05, "hot": 0.05,
                  "rolled_back": 0.04}
DRAW_BLOCK = 128  # results (or live readings) drawn per numpy call and device


class SimulationError(SarcoError, RuntimeError):
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
    temp_c: float  # usual hottest-sensor temperature
    update_version: str  # the model package of its last update
    update_outcome: str  # installed, or rolled_back (it runs the previous model)
    uptime_s: float  # how long the app has been running when the simulation starts
    measures: bool  # sends muscle measurements (runs MEASURING_APP)
    mm_per_px: float | None  # its scanner's pixel size; None: unknown (thickness in px)
    echo_gain: float  # what its scanner's gain and preset add to the echo intensity


def plan_fleet(devices: int, seed: int) -> list[DeviceProfile]:
    """``devices`` devices over ``ceil(devices / 6)`` sites, drawn from ``seed``."""
    if devices < 1:
        raise ValueError(f"--devices must be at least 1, got {devices}")
    rng = np.random.default_rng(seed)
    sites = math.ceil(devices / DEVICES_PER_SITE)
    site_prevalence = rng.uniform(0.12, 0.35, size=sites)
    shares = np.array([model[3] for model in MODELS])
    # fixed shares of troubled devices (rounded), placed at random
    order = iter(rng.permutation(devices).tolist())
    troubled = {kind: {next(order) for _ in range(round(share * devices))}
                for kind, share in TROUBLE_SHARES.items()}
    scanners = np.random.default_rng([seed, 23])  # their own stream: see the docstring
    pixel_sizes = np.where(scanners.random(devices) < PIXELS_ONLY_SHARE, np.nan,
                           scanners.uniform(0.07, 0.15, devices))
    gains = scanners.normal(0.0, 8.0, devices)
    fleet = []
    for index in range(devices):
        site = index % sites
        drawn = int(rng.choice(len(MODELS), p=shares))
        rolled_back = index in troubled["rolled_back"]
        # a rolled-back device tried the current package and went back to the previous model
        name, version, app_version, _, _ = MODELS[len(MODELS) - 1 if rolled_back else drawn]
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
            temp_c=float(rng.uniform(88, 95) if index in troubled["hot"]
                         else rng.uniform(45, 68)),
            update_version=MODELS[0][4] if rolled_back else MODELS[drawn][4],
            update_outcome="rolled_back" if rolled_back else "installed",
            uptime_s=float(rng.uniform(600, 8 * 3600)),
            measures=app_version == MEASURING_APP,
            mm_per_px=None if np.isnan(pixel_sizes[index]) else float(pixel_sizes[index]),
            echo_gain=float(gains[index]),
        ))
    return fleet


# ----------------------------------------------------------------------------- random figures


class _ResultDraws:
    """A device's random figures for its next ``DRAW_BLOCK`` results, drawn in one go and
    handed out one result at a time (as Python numbers: no numpy scalars in the payload)."""

    def __init__(self, rng: np.random.Generator, profile: DeviceProfile,
                 duplicate_share: float, id_rng: np.random.Generator) -> None:
        n = DRAW_BLOCK
        processed = rng.integers(30, 200, size=n)
        skipped_total = rng.binomial(processed, profile.skip_share)
        has_sarcopenia = rng.random(n) < profile.prevalence
        probability = np.clip(np.where(has_sarcopenia, rng.beta(6, 2, n), rng.beta(2, 6, n)),
                              0.001, 0.999)
        self.processed = processed.tolist()
        self.skipped_total = skipped_total.tolist()
        self.skipped = rng.multinomial(skipped_total, SKIP_SPLIT).tolist()
        self.probability = probability.tolist()
        self.logit_sd = rng.gamma(2.0, 0.3, n).tolist()
        self.agreement = rng.uniform(0.6, 1.0, n).tolist()
        self.duration_s = rng.uniform(30, 150, n).tolist()
        self.resend = (rng.random(n) < duplicate_share).tolist()
        self.ids = id_rng.bytes(32 * n)  # result and session UUIDs: new every run
        # muscle measurements (sent by measuring devices only): session medians, their IQR
        # and the share of usable frames measured
        self.thickness_mm = np.clip(np.where(has_sarcopenia, rng.normal(14, 2.5, n),
                                             rng.normal(19.5, 3, n)), 4, 60).tolist()
        self.pennation_deg = np.clip(np.where(has_sarcopenia, rng.normal(13, 2.5, n),
                                              rng.normal(18, 3, n)), 2, 45).tolist()
        self.echo = np.clip(np.where(has_sarcopenia, rng.normal(75, 9, n), rng.normal(60, 9, n))
                            + profile.echo_gain, 5, 250).tolist()
        self.spread = rng.gamma(2.0, (0.4, 0.8, 1.5), (n, 3)).tolist()  # mm, degrees, grey
        self.measured_share = rng.uniform(0.6, 1.0, n).tolist()
        self.pennation_found = (rng.random(n) >= 0.05).tolist()  # no fascicles: none
        self.next = 0

    def measurements(self, k: int, usable: int, profile: DeviceProfile) -> MuscleMeasurements:
        """Result ``k``'s measurements from its ``usable`` frames: every value null when no
        frame was measured, thickness in pixels only where the pixel size is unknown."""
        frames = int(usable * self.measured_share[k])
        mm_per_px = profile.mm_per_px or 0.11  # what a pixel is, whether the device knows it
        thickness = self.thickness_mm[k]
        thickness_iqr, pennation_iqr, echo_iqr = self.spread[k]
        drawn = {  # (median, IQR)
            "muscle_thickness_mm": (thickness, thickness_iqr) if profile.mm_per_px else None,
            "muscle_thickness_px": (thickness / mm_per_px, thickness_iqr / mm_per_px),
            "pennation_deg": ((self.pennation_deg[k], pennation_iqr)
                              if self.pennation_found[k] else None),
            "echo_intensity": (self.echo[k], echo_iqr)}
        found = {name: pair if frames else None for name, pair in drawn.items()}
        return MuscleMeasurements(
            {name: None if pair is None else pair[0] for name, pair in found.items()},
            {name: None if pair is None else pair[1] for name, pair in found.items()},
            frames, MEASURE_MODEL, MEASURE_MODEL_SHA256)


class _LiveDraws:
    """The same for live readings."""

    def __init__(self, rng: np.random.Generator, profile: DeviceProfile) -> None:
        n = DRAW_BLOCK
        self.passed = (rng.random(n) >= profile.skip_share).tolist()
        self.reason = rng.integers(0, len(schema.SKIP_REASONS), n).tolist()
        self.probability = rng.uniform(0.05, 0.95, n).tolist()
        self.usable_frames = rng.integers(0, 200, n).tolist()
        self.fps = np.maximum(rng.normal(profile.fps, 0.8, n), 0.0).tolist()
        self.next = 0


# ----------------------------------------------------------------------------- network


class _Network:
    """Every device connection, served from the calling thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._clients: list[mqtt.Client] = []
        self._unsent: set[mqtt.Client] = set()  # a publish that did not fit the socket
        self._misc_at = time.monotonic()

    def add(self, client: mqtt.Client) -> None:
        self._clients.append(client)
        self._selector.register(client.socket(), selectors.EVENT_READ, client)

    def remove(self, client: mqtt.Client) -> None:
        """Serve this client no more (before it drops its connection)."""
        self._selector.unregister(client.socket())
        self._clients.remove(client)
        self._unsent.discard(client)

    def written(self, client: mqtt.Client) -> None:
        """After a publish: paho wrote it at once unless the socket buffer was full."""
        if client.want_write():
            self._unsent.add(client)

    def poll(self, timeout_s: float) -> None:
        """Read what arrived (CONNACKs, PUBACKs) for up to ``timeout_s``, finish partial
        writes, and keep the connections alive."""
        for key, _ in self._selector.select(max(timeout_s, 0.0)):
            self._check(key.data, key.data.loop_read())
        for client in list(self._unsent):
            self._check(client, client.loop_write())
            if not client.want_write():
                self._unsent.discard(client)
        if time.monotonic() - self._misc_at >= 1.0:
            self._misc_at = time.monotonic()
            for client in self._clients:
                self._check(client, client.loop_misc())
                if client.want_write():
                    self._unsent.add(client)

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
    publishing_s: float = 0.0  # from the first result to the last one sent
    elapsed_s: float = 0.0  # including the last acknowledgements and the goodbyes
    devices: int = 0
    went_offline: int = 0  # devices made to drop their connection (offline_after)


@dataclass
class _Device:
    profile: DeviceProfile
    client: mqtt.Client
    topics: dict[str, str]
    rng: np.random.Generator
    results: _ResultDraws | None = None
    live: _LiveDraws | None = None
    results_made: int = 0
    frames_processed: int = 0  # since its app started, for the status's health
    session_id: str = ""
    screening_id: str = ""
    resend: bytes | None = None
    connected: bool = False
    gone: bool = False  # dropped its connection (offline_after): sends nothing more
    sent: int = 0
    done: int = 0
    refusals: list[str] = field(default_factory=list)


class FleetSimulator:
    """``run()`` connects every device, publishes for ``duration_s`` and waits until the
    broker has acknowledged every result."""

    def __init__(self, broker: BrokerSettings, fleet: list[DeviceProfile], rate: float,
                 duration_s: float, seed: int = 0, duplicate_share: float = 0.0,
                 live_rate: float = 1.0, offline_after: dict[str, float] | None = None,
                 ) -> None:
        if rate <= 0 or duration_s <= 0:
            raise ValueError("--rate and --duration must be positive")
        if not 0 <= duplicate_share <= 1:
            raise ValueError(f"--duplicates must be within [0, 1], got {duplicate_share}")
        self.offline_after = dict(offline_after or {})
        unknown = sorted(set(self.offline_after) - {profile.device for profile in fleet})
        if unknown:
            raise ValueError(f"--offline-after: no device {unknown[0]} in this fleet (devices "
                             f"are {fleet[0].device} to {fleet[-1].device})")
        late = [name for name, at in self.offline_after.items() if not 0 <= at < duration_s]
        if late:
            raise ValueError(f"--offline-after {late[0]}: the time must be within the run "
                             f"(0 to {duration_s:g} s)")
        self.broker = broker
        self.fleet = fleet
        self.rate = rate
        self.duration_s = duration_s
        self.seed = seed
        self.duplicate_share = duplicate_share
        self.live_rate = live_rate
        self._network = _Network()
        self._sent = 0  # messages handed to paho ...
        self._done = 0  # ... and acknowledged (QoS 1) or written out (QoS 0)
        self._started = time.monotonic()
        self._ids = np.random.default_rng()  # seeded by the OS: ids differ every run
        self._run_tag = f"{int(self._ids.integers(16 ** 4)):04x}"  # in screening ids

    def run(self, on_progress: Callable[[float], None] | None = None) -> SimulationReport:
        report = SimulationReport(devices=len(self.fleet))
        devices: list[_Device] = []
        try:
            devices = self._connect_all()
            self._started = time.monotonic()
            for device in devices:
                report.statuses += self._publish_status(device, "online")
            self._publish_until_done(devices, report, on_progress)
            report.publishing_s = time.monotonic() - self._started
            self._wait_for_acks()
            for device in devices:
                if not device.gone:
                    report.statuses += self._publish_status(device, "offline")
            self._wait_for_acks()
        finally:
            self._network.close()
        refusals = [f"{d.profile.device}: {r}" for d in devices for r in d.refusals]
        if refusals:
            raise SimulationError(
                f"the broker refused {len(refusals)} message(s) ({refusals[0]}, ...): its ACL "
                "must let the simulator's user write sarco/v1/#")
        report.elapsed_s = time.monotonic() - self._started
        return report

    # ------------------------------------------------------------------ schedule

    def _publish_until_done(self, devices: list[_Device], report: SimulationReport,
                            on_progress: Callable[[float], None] | None) -> None:
        """One event heap for the whole fleet: results evenly staggered across devices,
        live readings and periodic statuses. Everything due is published, then the
        selector is polled until the next event is due."""
        count = len(devices)
        periods = {"result": 1 / self.rate, "status": STATUS_EVERY_S}
        if self.live_rate > 0:
            periods["live"] = 1 / self.live_rate
        # (time, kind, device, tick): times come from whole ticks so no rounding drifts in
        events = [((k + i / count) * period, kind, i, k) for kind, period in periods.items()
                  for i in range(count) for k in ([1] if kind == "status" else [0])]
        events = [event for event in events if event[0] < self.duration_s]
        index = {device.profile.device: i for i, device in enumerate(devices)}
        events += [(at, "vanish", index[name], 0) for name, at in self.offline_after.items()]
        heapq.heapify(events)
        progress_at = 0.0
        while events:
            now = time.monotonic() - self._started
            while events and events[0][0] <= now:
                _, kind, i, tick = heapq.heappop(events)
                device = devices[i]
                if device.gone:
                    continue
                if kind == "vanish":
                    self._vanish(device)
                    report.went_offline += 1
                    continue
                if kind == "result":
                    self._publish_result(device, report)
                elif kind == "live":
                    self._publish_live(device)
                    report.live += 1
                else:
                    report.statuses += self._publish_status(device, "online")
                at = (tick + 1 + i / count) * periods[kind]
                if at < self.duration_s:
                    heapq.heappush(events, (at, kind, i, tick + 1))
            self._network.poll(events[0][0] - (time.monotonic() - self._started)
                               if events else 0.0)
            if on_progress is not None and now - progress_at >= 0.5:
                progress_at = now
                on_progress(min(now / self.duration_s, 1.0))
        if on_progress is not None:
            on_progress(1.0)

    def _vanish(self, device: _Device, timeout_s: float = 30.0) -> None:
        """Drop the connection as a power cut would, once the broker has what the device
        sent: DISCONNECT with reason 0x04 makes the broker publish the last will at once
        (a dead connection would do the same after the keepalive)."""
        deadline = time.monotonic() + timeout_s
        while device.done < device.sent and time.monotonic() < deadline:
            self._network.poll(0.05)
        self._network.remove(device.client)
        device.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT,
                                                       "Disconnect with will message"))
        device.gone = True

    def _wait_for_acks(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._done < self._sent:
            if time.monotonic() > deadline:
                raise SimulationError(
                    f"the broker did not acknowledge {self._sent - self._done} message(s) "
                    f"within {timeout_s:.0f} s")
            self._network.poll(0.05)

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
        client = make_client(broker, f"sarco-sim-{profile.site}-{profile.device}", protocol="5")
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(100)
        topics = {kind: schema.topic_for(profile.site, profile.device, kind)
                  for kind in ("result", "live", "status")}
        rng = np.random.default_rng(np.random.SeedSequence(self.seed,
                                                           spawn_key=(profile.index,)))
        device = _Device(profile=profile, client=client, topics=topics, rng=rng,
                         frames_processed=int(profile.uptime_s * profile.fps))
        client.will_set(topics["status"], self._status_payload(device, "offline", will=True),
                        qos=1, retain=True)

        def on_connect(client, userdata, flags, reason, properties) -> None:  # noqa: ANN001
            if reason.is_failure:
                device.refusals.append(str(reason))
            device.connected = True

        def on_publish(client, userdata, mid, reason, properties) -> None:  # noqa: ANN001
            # a PUBACK for QoS 1; for QoS 0 paho reports the message written out
            self._done += 1
            device.done += 1
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
        self._sent += 1
        device.sent += 1
        info = device.client.publish(device.topics[kind], data, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SimulationError(f"{device.profile.device}: publish failed "
                                  f"({mqtt.error_string(info.rc)})")
        self._network.written(device.client)

    def _publish_status(self, device: _Device, state: str) -> int:
        self._publish(device, "status", self._status_payload(device, state), qos=1,
                      retain=True)
        return 1

    def _status_payload(self, device: _Device, state: str, will: bool = False) -> bytes:
        """As the edge app sends it: health figures (none in the last will, whose figures
        would be of unknown age) and the outcome of the last model update."""
        profile = device.profile
        now = time.time()
        status = StatusPayload(profile.site, profile.device, state, now, profile.backlog, details={
            "app_version": profile.app_version,
            "model": {"name": profile.model_name, "sha256": profile.model_sha256},
            "health": None if will else self._health(device),
            "update": {
                "version": profile.update_version, "outcome": profile.update_outcome,
                "reason": ("self-test failed: outputs differ from the reference; previous "
                           "model restored") if profile.update_outcome == "rolled_back"
                else "self-test passed, engine int8",
                "at": schema.utc_timestamp(now - profile.uptime_s - 86400),
                "model_sha256": profile.model_sha256,
            },
        })
        return schema.encode("status", status.last_will() if will else status.to_dict())

    def _health(self, device: _Device) -> dict[str, Any]:
        profile, rng = device.profile, device.rng
        elapsed = time.monotonic() - self._started
        processed = device.frames_processed + int(elapsed * profile.fps)
        fps = max(profile.fps + float(rng.normal(0, 0.5)), 0.0)
        return {
            "gpu_load_pct": round(min(fps / 30 * 85 + float(rng.uniform(0, 8)), 100.0), 1),
            "cpu_load_pct": round(float(rng.uniform(20, 45)), 1),
            "temp_max_c": round(profile.temp_c + float(rng.normal(0, 0.8)), 1),
            "power_mw": int(7000 + fps * 150 + rng.integers(0, 600)),
            "ram_used_mb": int(2600 + rng.integers(0, 500)), "ram_total_mb": RAM_TOTAL_MB,
            "swap_used_mb": 0,
            "fps": round(fps, 2),
            "frames_processed": processed,
            # frames between sessions (probe in the air) are rejected too
            "frames_rejected": int(processed * min(profile.skip_share + 0.1, 0.95)),
            "frame_errors": 0,
            "queue_length": profile.backlog,
        }

    def _publish_result(self, device: _Device, report: SimulationReport) -> None:
        data, resend = self._result_payload(device)
        self._publish(device, "result", data, qos=1)
        report.results += 1
        if device.resend is not None:  # the copy of an earlier result, after a newer one
            self._publish(device, "result", device.resend, qos=1)
            report.duplicates += 1
            device.resend = None
        if resend:
            device.resend = data

    def _result_payload(self, device: _Device) -> tuple[bytes, bool]:
        """The next result and whether to send it again later."""
        profile = device.profile
        if device.results is None or device.results.next == DRAW_BLOCK:
            device.results = _ResultDraws(device.rng, profile, self.duplicate_share,
                                          self._ids)
        draws, k = device.results, device.results.next
        draws.next += 1
        device.results_made += 1
        ids = draws.ids[32 * k:32 * k + 32]
        device.session_id = str(uuid.UUID(bytes=ids[16:], version=4))
        device.screening_id = (f"SCR-{self._run_tag}-{profile.index + 1:03d}-"
                               f"{device.results_made:06d}")
        now = time.time()
        processed = draws.processed[k]
        usable = processed - draws.skipped_total[k]
        if usable < MIN_USABLE_FRAMES:
            decision, probability, logit, uncertainty = "rescan", None, None, None
        else:
            probability = draws.probability[k]
            logit = math.log(probability / (1 - probability))
            decision = "sarcopenia" if probability >= THRESHOLD else "no_sarcopenia"
            uncertainty = Uncertainty(draws.logit_sd[k], draws.agreement[k])
        payload = schema.encode("result", ResultPayload(
            result_id=str(uuid.UUID(bytes=ids[:16], version=4)),
            session_id=device.session_id, site=profile.site, device=profile.device,
            screening_id=device.screening_id,
            started_at=now - draws.duration_s[k], ended_at=now,
            decision=decision, probability=probability, score_logit=logit,
            threshold=THRESHOLD, aggregation="mean_logit", uncertainty=uncertainty,
            usable_frames=usable, processed_frames=processed,
            min_usable_frames=MIN_USABLE_FRAMES,
            skipped=dict(zip(schema.SKIP_REASONS, draws.skipped[k], strict=True)),
            model_name=profile.model_name, model_sha256=profile.model_sha256,
            app_version=profile.app_version, seq=device.results_made,
            measurements=draws.measurements(k, usable, profile) if profile.measures else None,
        ).to_dict())
        return payload, draws.resend[k]

    def _publish_live(self, device: _Device) -> None:
        profile = device.profile
        if device.live is None or device.live.next == DRAW_BLOCK:
            device.live = _LiveDraws(device.rng, profile)
        draws, k = device.live, device.live.next
        draws.next += 1
        passed = draws.passed[k]
        probability = draws.probability[k] if passed else None
        elapsed = time.monotonic() - self._started
        self._publish(device, "live", schema.encode("live", LivePayload(
            site=profile.site, device=profile.device,
            session_id=device.session_id or str(uuid.UUID(int=profile.index, version=4)),
            screening_id=device.screening_id
            or f"SCR-{self._run_tag}-{profile.index + 1:03d}-000000",
            frame=device.frames_processed + int(elapsed * profile.fps),
            captured_at=time.time(),
            quality="ok" if passed else schema.SKIP_REASONS[draws.reason[k]],
            probability=probability, smoothed_probability=probability,
            usable_frames=draws.usable_frames[k],
            fps=draws.fps[k],
        ).to_dict()), qos=0)
