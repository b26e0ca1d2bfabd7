"""Fixtures every test gets."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _edge_logging_restored() -> Iterator[None]:
    """A CLI run in-process (CliRunner) routes the ``edge_app`` loggers to that run's captured
    stderr and stops them propagating (edge_app.logs.setup_logging); put them back after each
    test, so later tests' caplog sees their records and nothing writes to a closed buffer."""
    logger = logging.getLogger("edge_app")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Test files with a slow test first, each file's tests kept together and in order: `make
    test`'s two workers take a file at a time in this order (pytest-xdist, --dist loadfile
    --no-loadscope-reorder), so the long files start early instead of ending the run alone."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
