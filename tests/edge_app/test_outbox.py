"""The on-disk outbox: order, durability across restarts, acknowledgement, capacity policy."""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest

from edge_app.mqtt.outbox import Outbox
from tests.support.wire import result_payload

TOPIC = "sarco/v1/clinic-a/edge-01/result"


def queue(outbox: Outbox, count: int) -> list[dict]:
    return [outbox.add(TOPIC, result_payload(result_id=str(uuid.uuid4()), seq=0))
            for _ in range(count)]


def test_results_come_back_oldest_first_with_increasing_seq(tmp_path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        queued = queue(outbox, 5)
        items = outbox.pending()
    assert [item.result_id for item in items] == [p["result_id"] for p in queued]
    assert [item.seq for item in items] == sorted(item.seq for item in items)
    # the stored payload carries the seq it was given
    assert [json.loads(item.payload)["seq"] for item in items] == [item.seq for item in items]


def test_seq_never_goes_back_after_deletions_or_a_restart(tmp_path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as outbox:
        first = queue(outbox, 3)
        for payload in first:
            assert outbox.remove(payload["result_id"])
        assert len(outbox) == 0
    with Outbox(path) as outbox:  # a reboot
        later = queue(outbox, 1)[0]
    assert later["seq"] > max(p["seq"] for p in first)


def test_unacknowledged_results_survive_a_restart(tmp_path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as outbox:
        queued = queue(outbox, 3)
        outbox.remove(queued[1]["result_id"])
    with Outbox(path) as outbox:
        assert [i.result_id for i in outbox.pending()] == [queued[0]["result_id"],
                                                            queued[2]["result_id"]]
        assert outbox.pending(after_seq=queued[0]["seq"])[0].result_id == queued[2]["result_id"]
        assert not outbox.remove(queued[1]["result_id"])  # a duplicate PUBACK is harmless


def test_full_outbox_refuses_nothing_but_reports_full(tmp_path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3", capacity=2) as outbox:
        queue(outbox, 2)
        assert outbox.is_full
        queue(outbox, 1)  # the session in progress still gets its result stored
        assert len(outbox) == 3


def test_an_invalid_result_is_not_stored(tmp_path) -> None:
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        with pytest.raises(ValueError, match="screening_id"):
            outbox.add(TOPIC, result_payload(screening_id="Jane Doe"))
        assert len(outbox) == 0


def test_a_damaged_file_gives_a_clear_message(tmp_path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OSError, match="move the file aside"):
        Outbox(path)


def test_the_file_uses_write_ahead_logging(tmp_path) -> None:
    path = tmp_path / "outbox.sqlite3"
    Outbox(path).close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
