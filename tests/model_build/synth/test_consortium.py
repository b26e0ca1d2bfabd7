"""`sarco synth --size consortium`: one cohort folder per development site, one for evaluation.

The real consortium (584 participants) is checked as tables only; the written layout uses the
same code on a consortium shrunk to a few participants per cohort (SIZES patched for the
module), without videos, so that rendering it takes seconds rather than minutes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from model_build.cohort import load_cohort
from model_build.synth.cohorts import CONSORTIUM_SITES, SIZES
from model_build.synth.generate import ASMI_METHOD_BY_CENTER, SynthOptions, build_tables, synthesize
from model_build.synth.latent import ORACLE_MODALITIES
from model_build.synth.profiles import PROFILES, scanner
from tests.support.synth import run_cli

SEED = 5
SITES = [f"sites/{spec.center}" for spec in CONSORTIUM_SITES]
TINY = tuple(spec.resized(n) for spec, n in zip(SIZES["consortium"], (9, 8, 7, 6, 6, 5, 8, 6)))


def test_the_sites_split_the_studys_development_cohort_and_evaluation_is_the_studys():
    participants = build_tables(SynthOptions(size="consortium", seed=1), Path("unused")).participants
    development = participants[participants["cohort"] == "development"]
    assert (len(development), int(development["label"].sum())) == (357, 101)
    per_center = development.groupby("center")["label"].agg(["size", "sum"])
    assert {center: tuple(row) for center, row in per_center.iterrows()} == \
        {spec.center: (spec.n_participants, spec.n_positive) for spec in CONSORTIUM_SITES}
    assert per_center["sum"].div(per_center["size"]).agg(["min", "max"]).round(2).tolist() == [0.19, 0.35]
    for name, center, counts in (("external", "B", [145, 68]), ("poc", "C", [82, 19])):
        rows = participants[participants["cohort"] == name]
        assert set(rows["center"]) == {center} and [len(rows), int(rows["label"].sum())] == counts
    assert participants["participant_id"].is_unique and participants["center"].nunique() == 8
    assert len({scanner(center).name for center in participants["center"].unique()}) == 8
    assert set(PROFILES) == {"A", "B", "C"}  # the measurement model's training scanners, unchanged
    assert set(ASMI_METHOD_BY_CENTER.values()) == {"dxa", "bia"}
    assert SynthOptions(size="consortium").with_videos


def test_the_other_sizes_are_written_as_before():
    """participants.csv of `small`, seed 5, as generator 1.2.0 wrote it before the consortium
    came (a deliberate change to the generator bumps GENERATOR_VERSION and this digest)."""
    participants = build_tables(SynthOptions(size="small", seed=5), Path("unused")).participants
    digest = hashlib.sha256(participants.to_csv(index=False, lineterminator="\n").encode()).hexdigest()
    assert digest == "700ab8d8627c8cc82f8daf7938e2ec7e0b6daf567754e8b9150ab4d41b3f56db"


@pytest.fixture(scope="module")
def consortium(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("synth") / "consortium"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SIZES, "consortium", TINY)
        result = run_cli("synth", str(out), "--size", "consortium", "--seed", str(SEED), "--no-videos")
    assert result.exit_code == 0, result.output
    return out, result.stdout


def read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name, dtype=str, keep_default_na=False)


def test_every_site_is_a_development_cohort_of_its_own_center(consortium):
    out, printed = consortium
    assert sorted(path.name for path in out.iterdir()) == ["README.md", "evaluation", "sites", "synth.json"]
    assert sorted(f"sites/{path.name}" for path in (out / "sites").iterdir()) == sorted(SITES)
    ids = []
    for folder, spec in zip(SITES, TINY):
        cohort = load_cohort(out / folder, check_media=True)
        participants = cohort.participants
        assert set(participants["cohort"]) == {"development"} and set(participants["center"]) == {spec.center}
        assert (len(participants), int(participants["label"].sum())) == (spec.n_participants, spec.n_positive)
        assert set(cohort.images["scanner"]) == {scanner(spec.center).name}
        assert read(out / folder, "truth.csv")["participant_id"].tolist() == participants["participant_id"].tolist()
        facts = json.loads((out / folder / "synth.json").read_text())
        assert facts["size"] == "consortium" and facts["consortium_folder"] == folder
        assert set(facts["oracle_auc"]) == {"development", "pooled"}
        ids += participants["participant_id"].tolist()
    assert len(ids) == len(set(ids))
    assert "7 cohort folders (sites/A, sites/D" in printed and "sites/H" in printed


def test_evaluation_holds_external_and_poc_and_their_oracle(consortium):
    out, _ = consortium
    evaluation = out / "evaluation"
    participants = load_cohort(evaluation, check_media=True).participants
    assert participants.groupby("cohort")["center"].agg(set).to_dict() == {"external": {"B"}, "poc": {"C"}}
    truth = pd.read_csv(evaluation / "truth.csv")
    facts = json.loads((evaluation / "synth.json").read_text())
    merged = participants[["participant_id", "cohort", "label"]].merge(truth, on="participant_id")
    assert len(merged) == len(participants)
    for name, rows in merged.groupby("cohort"):
        for modality in ORACLE_MODALITIES:
            assert facts["oracle_auc"][name][modality] == pytest.approx(
                roc_auc_score(rows["label"], rows[f"p_{modality}"]), abs=1e-4)
    assert run_cli("validate", str(evaluation)).exit_code == 0
    assert run_cli("validate", str(out / SITES[-1])).exit_code == 0


def test_the_top_folder_lists_the_sites_and_evaluation(consortium):
    out, _ = consortium
    facts = json.loads((out / "synth.json").read_text())
    assert facts["size"] == "consortium" and facts["seed"] == SEED
    assert facts["folders"] == [*SITES, "evaluation"]
    assert list(facts["cohorts"]) == [*SITES, "external", "poc"]
    assert set(facts["oracle_auc"]) == {*SITES, "external", "poc", "pooled"}
    for folder in SITES:  # one cohort per site: the same AUC at the top and in its folder
        site = json.loads((out / folder / "synth.json").read_text())
        assert facts["oracle_auc"][folder] == site["oracle_auc"]["development"]
    assert facts["images"] == sum(len(read(out / folder, "images.csv")) for folder in facts["folders"])
    readme = (out / "README.md").read_text()
    assert "consortium is synthetic" in readme and "`sites/A/`" in readme and "`evaluation/`" in readme


def test_a_cohorts_content_does_not_depend_on_its_folder_and_the_seed_fixes_every_byte(consortium, tmp_path):
    out, _ = consortium
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SIZES, "consortium", TINY)
        tables = build_tables(SynthOptions(size="consortium", seed=SEED), tmp_path)
        again = tmp_path / "again"
        synthesize(again, SynthOptions(size="consortium", seed=SEED, videos=False, workers=1))
    participants = tables.participants
    folders = {folder: participants["center"] == spec.center for folder, spec in zip(SITES, TINY)}
    folders["evaluation"] = participants["cohort"] != "development"
    for folder, rows in folders.items():
        expected = participants[rows].to_csv(index=False, lineterminator="\n")
        assert (out / folder / "participants.csv").read_text() == expected, folder
    files = sorted(path.relative_to(out) for path in out.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(again) for path in again.rglob("*") if path.is_file())
    for path in files:  # every table, still (PNG, JPEG, DICOM), synth.json and README
        assert (again / path).read_bytes() == (out / path).read_bytes(), path


def test_consortium_mistakes_are_refused_with_a_fix(consortium, tmp_path):
    out, _ = consortium
    result = run_cli("synth", str(out), "--size", "consortium")
    assert result.exit_code == 1 and "--force" in result.stderr
    site = out / "sites" / "A"
    result = run_cli("synth", str(site), "--size", "small", "--force")
    assert result.exit_code == 1 and "sites/A of a synthetic consortium" in result.stderr
    assert (site / "participants.csv").is_file()
    assert "consortium" in run_cli("synth", "--help").stdout
    refused = run_cli("validate", str(out))  # the top folder is no cohort: the hint names those it holds
    assert refused.exit_code == 1 and "cohort folders this folder holds: evaluation, sites/A" in refused.output
