"""`sarco demo-readme`: the README's demo results are written from results.json, never typed in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_build.cli import app
from model_build.study.formatting import format_estimate, format_number, p_phrase
from model_build.study.narrative import find_comparison
from model_build.study.readme import END, START, regenerate, section
from tests.support.study_runs import build_run, study_cohort


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("readme")
    results = build_run(root / "run", study_cohort(root / "cohort"), seed=2)
    return root / "run" / "results.json", results


def test_every_figure_of_the_section_is_read_from_results_json(run: tuple[Path, dict]) -> None:
    results = run[1]
    text = section(results, "results.json")
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in text.splitlines() if line.startswith("| ")}
    for name, model in results["models"].items():
        label = f"{name} (selected)" if name == results["selected_model"] else name
        for cohort in results["cohorts"]:
            assert format_estimate(model[cohort]["auc"], model[cohort]["auc_ci"]) in rows[label]
    _, p = find_comparison(results["comparisons"], "image+clinical+lab", "image", "development")
    assert f"paired DeLong {p_phrase(p)}" in text
    for cohort, check in results["int8"]["cohorts"].items():
        assert f"{cohort} {format_number(check['auc_float'], 4)} float -> {format_number(check['auc_int8'], 4)}" in text
    assert format_number(results["contributions"]["sarcopenia"]["image"], 2) in text
    assert f"The study took {results['timings']['total_seconds'] / 60:.1f} min" in text


def test_the_command_rewrites_only_the_marked_section_and_check_finds_a_stale_readme(
        run: tuple[Path, dict], tmp_path: Path) -> None:
    readme, kept = tmp_path / "README.md", tmp_path / "docs" / "demo-results.json"
    readme.write_text(f"# Title\n\nbefore\n\n{START}\nhand-typed 0.838\n{END}\n\nafter\n", encoding="utf-8")
    runner = CliRunner()
    written = runner.invoke(app, ["demo-readme", str(run[0]), "--readme", str(readme), "--keep", str(kept)])
    assert written.exit_code == 0, written.output
    text = readme.read_text(encoding="utf-8")
    assert text.startswith(f"# Title\n\nbefore\n\n{START}\n") and text.endswith(f"\n{END}\n\nafter\n")
    assert "hand-typed" not in text and "[docs/demo-results.json](docs/demo-results.json)" in text
    assert json.loads(kept.read_text(encoding="utf-8"))["cohort"]["path"] == Path(run[1]["cohort"]["path"]).name
    current = runner.invoke(app, ["demo-readme", str(kept), "--readme", str(readme), "--check"])
    assert current.exit_code == 0 and "already current" in current.output
    readme.write_text(text.replace("(selected)", "(chosen)"), encoding="utf-8")
    stale = runner.invoke(app, ["demo-readme", str(kept), "--readme", str(readme), "--check"])
    assert stale.exit_code == 1 and "differ" in stale.output
    readme.write_text("# no markers\n", encoding="utf-8")
    unmarked = runner.invoke(app, ["demo-readme", str(kept), "--readme", str(readme)])
    assert unmarked.exit_code == 1 and "demo-results:start" in unmarked.output


ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "docs" / "results" / "demo-results.json"


def test_the_readme_says_what_the_committed_demo_results_say() -> None:
    assert regenerate(COMMITTED, ROOT / "README.md", check=True), (
        "README.md's demo results differ from docs/results/demo-results.json; fix: "
        "sarco demo-readme docs/results/demo-results.json")
    assert '": "/' not in COMMITTED.read_text(encoding="utf-8")  # no absolute path of the machine that ran it
