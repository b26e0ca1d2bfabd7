"""Fixtures the device tests share: a synthetic scanner recording and a tiny bundle, made once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.edge import make_bundle, synthetic_scanner_video


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, tuple[str, ...], tuple[int, ...]]:
    return synthetic_scanner_video(tmp_path_factory.getbasetemp() / "edge-videos", "A",
                                   seconds=4.0)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "tiny")
