"""Shared by several test modules (moved from test_dashboard_web.py)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from dashboard import auth
from dashboard.db import utc_now
from dashboard.store import Batch, FleetStore, Received
from tests.support.dashboard import result_payload, sqlite_engine
from tests.support.dashboard_web import STAFF_PASSWORD


@pytest.fixture
def stored(tmp_path):
    """A database with three results and two accounts: (engine, payloads)."""
    engine = sqlite_engine(tmp_path)
    payloads = [result_payload(site=site, device=device, seq=seq, decision=decision,
                               probability=probability, score_logit=0.0)
                for seq, (site, device, decision, probability) in enumerate([
                    ("site-01", "us-001", "sarcopenia", 0.9),
                    ("site-01", "us-001", "no_sarcopenia", 0.1),
                    ("site-02", "us-002", "sarcopenia", 0.7),
                ], 1)]
    FleetStore(engine, "w1").write(Batch(results=[Received(p, utc_now()) for p in payloads]),
                                   utc_now())
    with Session(engine) as session:
        auth.add_user(session, "nurse", "staff", STAFF_PASSWORD)
        auth.add_user(session, "viewer", "readonly", STAFF_PASSWORD)
        session.commit()
    return engine, payloads
