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
