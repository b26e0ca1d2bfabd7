"""The real edge app into the real dashboard ingest: `sarco-edge replay` publishes a session
through Mosquitto with its own device credentials, and the dashboard stores that result
(same id), its muscle measurements (against the synthetic recording's own geometry), the
device's live frame rate and its status with its health telemetry, shows the measurements on
the device's page, and rejects nothing. This is the check that the two sides agree on the
schema beyond the simulator."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard import queries
from dashboard.db import utc_now
from dashboard.models import Device, Result
from testkit.mosquitto import requires_mosquitto
from tests.support.dashboard import (
    PASSWORD,
    REPO,
    fleet_broker,
    running_ingest,
    sqlite_engine,
)
from tests.support.dashboard_web import staff_page
from tests.support.edge import make_bundle, one_muscle_video


@requires_mosquitto
def test_an_edge_replay_arrives_in_the_dashboard(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    video, truth = one_muscle_video(tmp_path / "video")
    password_file = tmp_path / "device-password"
    password_file.write_text(PASSWORD + "\n")
    engine = sqlite_engine(tmp_path)
    with fleet_broker(tmp_path / "broker", devices=("edge-01",)) as broker, \
            running_ingest(engine, broker) as ingest:
        replay = subprocess.run(
            [sys.executable, "-m", "edge_app.cli", "replay", str(video), "--model", str(bundle),
             "--headless", "--every-frame", "--broker", broker.url, "--username", "edge-01",
             "--password-file", str(password_file), "--site", "clinic-a", "--device",
             "edge-01", "--data-dir", str(tmp_path / "edge-data"),
             "--mm-per-pixel", str(truth["mm_per_pixel"])],
            cwd=REPO, capture_output=True, text=True, timeout=120)
        assert replay.returncode == 0, replay.stderr[-2000:]
        result_id = re.search(r"result id ([0-9a-f-]{36})", replay.stdout).group(1)
        assert ingest.wait_for(lambda s: s.stored >= 1, 20), ingest.state
        assert ingest.state.rejected == 0
    with Session(engine) as session:
        [result] = session.scalars(select(Result)).all()
        assert result.result_id == result_id
        device = session.get(Device, ("clinic-a", "edge-01"))
        [health] = queries.device_health(session, utc_now())
    assert device.fps is not None and device.fps > 0  # its live readings came through
    assert device.model_name is not None  # from its status
    # the app's own figures, from its goodbye status after the session; tegrastats ones are
    # null off a Jetson
    telemetry = health.telemetry
    assert telemetry is not None and telemetry.frames_processed >= result.processed_frames
    assert telemetry.queue_length == 0  # the result was delivered
    if shutil.which("tegrastats") is None:
        assert telemetry.temp_max_c is None and telemetry.gpu_load_pct is None
    # the muscle the generator drew, measured on the device, stored and shown
    assert result.frames_measured == result.usable_frames > 5
    assert abs(result.muscle_thickness_mm / truth["muscle_thickness_mm"] - 1) <= 0.05
    assert abs(result.pennation_deg - truth["pennation_deg"]) <= 3.0
    status, page = staff_page(engine, "/devices/clinic-a/edge-01")
    assert status == 200 and f"{result.muscle_thickness_mm:.1f} mm" in page
