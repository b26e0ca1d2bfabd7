"""Fixtures every test gets."""

from __future__ import annotations

import faulthandler
import logging
import sys
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


EXIT_GRACE_S = 300


@pytest.hookimpl(trylast=True)
def pytest_unconfigure() -> None:
    """Every test has run (pytest-timeout bounds each one); what remains is this process's exit:
    fixtures' last cleanup, atexit handlers, threads left running. If that has not ended in
    EXIT_GRACE_S, print every thread's stack and exit 1, instead of stalling CI until it is killed
    (as stop 37's run did, its last lines lost in the output buffer). In a pytest-xdist worker the
    controller already holds every result, so the run's verdict stands and the printed stack names
    what held the worker; in a single process, or the controller, the run fails."""
    faulthandler.dump_traceback_later(EXIT_GRACE_S, exit=True, file=sys.__stderr__)
