"""Shared by several test modules (moved from test_edge_schema.py)."""

from __future__ import annotations

import uuid


def result_payload(**changes: object) -> dict:
    payload = {
        "schema_version": 1, "kind": "result", "result_id": str(uuid.uuid4()), "seq": 3,
        "session_id": str(uuid.uuid4()), "site": "clinic-a", "device": "edge-01",
        "screening_id": "SCR-0042", "started_at": "2025-01-31T09:30:00.000Z",
        "ended_at": "2025-01-31T09:31:02.250Z", "decision": "sarcopenia", "probability": 0.71,
        "score_logit": 0.895, "threshold": 0.5, "aggregation": "mean_logit",
        "uncertainty": {"logit_sd": 0.4, "agreement": 0.9, "dirichlet_u": None},
        "usable_frames": 120, "processed_frames": 300, "min_usable_frames": 20,
        "skipped": {"no_tissue": 100, "frozen": 30, "transition": 50, "no_region": 0},
        "model": {"name": "tiny", "sha256": "a" * 64}, "app_version": "0.1.0",
    }
    payload.update(changes)
    return payload


def measurements_entry(**changes: object) -> dict:
    """A result's ``measurements`` as a device with the aponeurosis model sends it."""
    entry = {
        "muscle_thickness_mm": 18.4, "muscle_thickness_px": 142.0, "pennation_deg": 17.2,
        "echo_intensity": 61.5, "frames_measured": 96,
        "spread": {"muscle_thickness_mm": 0.9, "muscle_thickness_px": 7.0, "pennation_deg": 1.8,
                   "echo_intensity": 3.2},
        "model": {"name": "aponeurosis-effnetlite0-unet", "sha256": "b" * 64},
    }
    entry.update(changes)
    return entry
