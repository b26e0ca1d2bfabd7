"""A screening program's month in the dashboard database, for the page tests and their
screenshots: three sites, eight devices (one offline with a stale backlog, one hot, one whose
update rolled back), results over 30 days with positives to refer, a referral marked, and
each device's statuses of the last hours (one with a silence in them). Results carry muscle
measurements, thinner muscle with the positives, but for one device without the measurement
model (``UNMEASURED``) and one that knows no pixel size (``PIXELS_ONLY``: thickness in px).

Written straight through the store (no broker), from payloads the edge's schema module
checks; seeded, so the figures are the same on every run.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from dashboard import referrals
from dashboard.db import utc_now
from dashboard.store import Batch, FleetStore, Received
from sarco_core.wire.payloads import MuscleMeasurements
from sarco_core.wire.schema import parse_time
from tests.support.dashboard import (
    health_figures,
    result_payload,
    status_payload,
    update_outcome,
)

SITES = {"clinic-north": ("us-001", "us-002", "us-003"),
         "clinic-south": ("us-004", "us-005", "us-006"),
         "mobile-van": ("us-007", "us-008")}
OFFLINE, HOT, ROLLED_BACK = "us-006", "us-002", "us-005"
UNMEASURED, PIXELS_ONLY = "us-005", "us-008"
MEASURE_MODEL = ("aponeurosis", "cd" * 32)
DAYS = 30
STATUS_EVERY_S = 120
STATUS_HOURS = 6


@dataclass
class Program:
    """What was written: every result payload, and the positives by screening id."""

    results: list[dict] = field(default_factory=list)
    positives: dict[str, dict] = field(default_factory=dict)
    referred: str = ""  # the screening id marked referred


def seed_program(engine: Engine, seed: int = 7) -> Program:
    rng = random.Random(seed)
    now = time.time()
    program = Program()
    store = FleetStore(engine, "seed")
    seq = 0
    for site, devices in SITES.items():
        positive_rate = rng.uniform(0.15, 0.3)
        for device in devices:
            for day in range(DAYS):
                for _ in range(rng.randint(1, 6)):
                    seq += 1
                    ended = now - day * 86400 - rng.uniform(0, 9 * 3600)
                    if device == OFFLINE:  # gone for the last hour
                        ended = min(ended, now - 3600 - rng.uniform(0, 3600))
                    program.results.append(_result(rng, site, device, seq, ended,
                                                   positive_rate))
    for payload in program.results:
        if payload["decision"] == "sarcopenia":
            program.positives[payload["screening_id"]] = payload
    # each result as received when the session ended: what "last seen" is made of
    store.write(Batch(results=[Received(p, parse_time(p["ended_at"]))
                               for p in program.results]), utc_now())
    store.write(Batch(statuses=_statuses(now)), utc_now())
    referred = min(program.positives.values(), key=lambda p: p["ended_at"])
    with Session(engine) as session:
        referrals.mark_referred(session, referred["result_id"], "nurse", utc_now())
        session.commit()
    program.referred = referred["screening_id"]
    return program


def _result(rng: random.Random, site: str, device: str, seq: int, ended: float,
            positive_rate: float) -> dict:
    draw = rng.random()
    positive = 0.06 <= draw < 0.06 + positive_rate
    usable = 5 if draw < 0.06 else result_payload()["usable_frames"]
    extra = {} if device == UNMEASURED else {"measurements": _measured(rng, device, positive,
                                                                       usable)}
    if draw < 0.06:
        return result_payload(site=site, device=device, seq=seq, ended_at=ended,
                              screening_id=f"SCR-{seq:05d}", decision="rescan",
                              probability=None, score_logit=None, uncertainty=None,
                              usable_frames=usable, **extra)
    probability = round(rng.uniform(0.55, 0.97) if positive else rng.uniform(0.02, 0.45), 3)
    return result_payload(site=site, device=device, seq=seq, ended_at=ended,
                          screening_id=f"SCR-{seq:05d}",
                          decision="sarcopenia" if positive else "no_sarcopenia",
                          probability=probability, score_logit=0.0, **extra)


def _measured(rng: random.Random, device: str, thin: bool, usable: int) -> dict:
    """Session medians and IQRs from 60-100 % of the ``usable`` frames; each device's echo
    intensity off by its own gain."""
    mm = rng.gauss(14.0, 2.0) if thin else rng.gauss(19.0, 2.5)
    gain = 8.0 * (int(device[-1]) % 3 - 1)
    values = {"muscle_thickness_mm": None if device == PIXELS_ONLY else mm,
              "muscle_thickness_px": mm / 0.12,
              "pennation_deg": rng.gauss(13.0 if thin else 18.0, 2.0),
              "echo_intensity": rng.gauss(72.0 if thin else 60.0, 6.0) + gain}
    spread = {"muscle_thickness_mm": None if device == PIXELS_ONLY else rng.uniform(0.3, 1.5),
              "muscle_thickness_px": rng.uniform(3.0, 12.0),
              "pennation_deg": rng.uniform(0.8, 2.5), "echo_intensity": rng.uniform(2.0, 6.0)}
    measured = rng.randint(max(1, usable * 6 // 10), usable)
    return MuscleMeasurements(values, spread, measured, *MEASURE_MODEL).to_dict()


def _statuses(now: float) -> list[Received]:
    """Every ``STATUS_EVERY_S`` for the last hours; the offline device stopped an hour ago
    (leaving a backlog in its last status) and ``us-003`` was silent for 40 minutes."""
    received = []
    for site, devices in SITES.items():
        for index, device in enumerate(devices):
            for step in range(STATUS_HOURS * 3600 // STATUS_EVERY_S, -1, -1):
                age = step * STATUS_EVERY_S
                if device == OFFLINE and age < 3600:
                    continue
                if device == "us-003" and 7200 <= age < 9600:
                    continue
                wave = math.sin(step / 12 + index)
                temp = round((90.0 if device == HOT else 55.0 + index * 3) + 3 * wave, 1)
                # results held during the silence go out in the minutes after it
                backlog = (35 if device == OFFLINE
                           else max(0, 12 - 3 * (7200 - age) // STATUS_EVERY_S)
                           if device == "us-003" and age < 7200 else 0)
                health = health_figures(temp_max_c=temp, fps=round(23.0 + 1.5 * wave, 1),
                                        queue_length=backlog)
                update = update_outcome("rolled_back" if device == ROLLED_BACK
                                        else "installed")
                received.append(Received(status_payload(
                    site, device, "online", at=now - age,
                    queued=35 if device == OFFLINE else 0, health=health, update=update),
                    utc_now() - timedelta(seconds=age)))
    # its last will, published by the broker when the connection dropped
    received.append(Received(status_payload("clinic-south", OFFLINE, "offline", at=None),
                             utc_now() - timedelta(hours=1)))
    return received
