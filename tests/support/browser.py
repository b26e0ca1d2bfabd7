"""Headless Chromium for the browser tests (no tests here): Debian's /usr/bin/chromium driven
by Playwright, with the flags this machine's closed network needs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def sync_playwright_or_skip():  # noqa: ANN201 - playwright's own factory
    """Playwright's sync_playwright; skips the test (fails it in CI, where the services are
    required) when Playwright or Chromium is missing."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "needs the playwright Python package (pip install playwright)"
    if problem is None and not CHROMIUM.exists():
        problem = "needs Chromium at /usr/bin/chromium (apt-get install chromium)"
    if problem is not None:
        if os.environ.get("SARCO_REQUIRE_SERVICES") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    return sync_playwright
