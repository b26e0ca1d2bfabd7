"""The study report printed to PDF by a real headless Chromium (Playwright, Debian's
/usr/bin/chromium), as a reader filing it or taking it to a meeting would: a quick run's caution
is the first thing on the first page, and no table is cut off at the page edge (on screen a wide
table scrolls in its box; on paper the columns past the edge would simply be lost).

The run folder is the one tests/model_build/study/test_report.py builds (three cohorts, six models, centers),
marked as a --quick run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, sync_playwright_or_skip
from tests.support.study_runs import build_run, quick_copy, study_cohort

PRINTABLE_WIDTH_PX = round((210 - 2 * 12) / 25.4 * 96)  # A4 less the @page side margins of the report's style

TABLES = """() => [...document.querySelectorAll('table')].map(table => ({
    section: table.closest('section').id,
    last_header: [...table.querySelectorAll('th')].pop().innerText.replace(/\\s+/g, ' ').trim(),
    cut: table.scrollWidth > table.parentElement.clientWidth
         || table.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5}))"""


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("print")
    cohort = study_cohort(root / "cohort")
    build_run(root / "run", cohort)
    return quick_copy(root / "run", root / "quick", cohort)


@pytest.mark.slow
def test_the_printed_report_opens_with_the_quick_banner_and_cuts_no_table(quick_report: Path) -> None:
    sync_playwright = sync_playwright_or_skip()
    pdf = quick_report.with_name("report.pdf")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": PRINTABLE_WIDTH_PX, "height": 1000})
        page.goto(quick_report.as_uri())
        on_screen = page.evaluate(TABLES)
        page.emulate_media(media="print")
        printed = page.evaluate(TABLES)
        first = page.evaluate("() => [document.querySelector('main').firstElementChild.className, "
                              "document.body.innerText.trimStart().slice(0, 30)]")
        page.pdf(path=str(pdf), prefer_css_page_size=True, print_background=True)
        browser.close()
    assert any(table["cut"] for table in on_screen)  # at this width the wide tables do scroll on screen
    assert [table for table in printed if table["cut"]] == []
    assert {table["section"] for table in printed} >= {"participants", "discrimination", "calibration", "subgroups"}
    assert first == ["banner quick", "Quick run (--quick): a smoke t"]
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext"):  # what reached the paper: each table's last column is on it
        text = " ".join(subprocess.run(["pdftotext", "-raw", str(pdf), "-"], capture_output=True, text=True,
                                       check=True).stdout.split())
        assert text.startswith("Quick run (--quick)")
        missing = [table["last_header"] for table in printed if table["last_header"] not in text]
        assert missing == []
        assert "Fewer than 100 events or non-events" in text
