"""Where things are, for tests at any depth of ``tests/``."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
TEST_DATA = TESTS / "data"
FIXTURES = TESTS / "fixtures"
