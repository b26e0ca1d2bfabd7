"""`sarco synth`: counts, schema, labels, oracle, media, determinism and atomic output.

Most tests share one `small` cohort written without videos (videos cost about a second of CPU
each); one slow test writes the full small cohort with videos and runs `sarco validate` on it
(the validator reads every file, which is slow too).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from scipy.special import logit
from sklearn.metrics import roc_auc_score
from model_build.cohort import load_cohort
from model_build.cohort.schema import load_schema
from sarco_core.criteria import Measurements, diagnose
from model_build.synth.cohorts import MISSING_FRACTION, SIZES, WHOLE_LAB_MISSING_SHARE
from model_build.synth.generate import SynthError, SynthOptions, build_tables, synthesize
from model_build.synth.latent import LATENT_COLUMNS, ORACLE_MODALITIES, LatentModel, OracleTargets
from model_build.synth.media import MediaJob, participant_muscle, render_participant
from model_build.synth.tabular import TABULAR_SCHEMA
from tests.support.synth import run_cli

SEED = 7


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "small"
    result = run_cli("synth", str(out), "--size", "small", "--seed", str(SEED), "--no-videos", "--workers", "2")
    assert result.exit_code == 0, result.stdout
    return out


def read(cohort: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(cohort / name, dtype=str, keep_default_na=False)


# --- the latent model and its oracle --------------------------------------------------------

def test_calibration_reaches_the_default_and_other_targets():
    for targets in (OracleTargets(), OracleTargets(image=0.80, clinical=0.70, lab=0.66, all=0.85)):
        aucs = LatentModel.calibrated(targets).population_aucs()
        for modality, wanted in targets.as_dict().items():
            assert aucs[modality] == pytest.approx(wanted, abs=1e-4)


def test_impossible_targets_are_refused():
    with pytest.raises(ValueError, match="combined target"):
        LatentModel.calibrated(OracleTargets(image=0.87, clinical=0.78, lab=0.75, all=0.85))


def test_sampled_latents_give_the_population_auc_and_calibrated_posteriors():
    """Monte Carlo check of the closed forms: AUC of the likelihood ratio, and E[p] = prior."""
    model = LatentModel.calibrated()
    rng = np.random.default_rng(0)
    labels = (rng.random(40_000) < 0.3).astype(int)
    latents = model.sample(labels, rng)
    population = model.population_aucs()
    for modality in ORACLE_MODALITIES:
        auc = roc_auc_score(labels, model.log_likelihood_ratio(latents.z, modality))
        assert auc == pytest.approx(population[modality], abs=0.01)
        posterior = model.posterior(latents.z, modality, prior=0.3)
        assert posterior.mean() == pytest.approx(labels.mean(), abs=0.01)
        for low, high in ((0.0, 0.2), (0.4, 0.6), (0.8, 1.0)):  # reliability: P(y=1 | p) = p
            chosen = (posterior >= low) & (posterior < high)
            assert labels[chosen].mean() == pytest.approx(posterior[chosen].mean(), abs=0.03)


def test_image_latents_map_monotonically_onto_the_muscle():
    """Same nuisance draw (same seed): more atrophy thins, more echo brightens, more blur blurs."""
    def muscle(z):
        return participant_muscle("rectus_femoris", "F", z, np.random.default_rng(3))

    base, atrophied = muscle((0.0, 0.0, 0.0)), muscle((1.0, 0.0, 0.0))
    assert atrophied.thickness_mm < base.thickness_mm and atrophied.pennation_deg < base.pennation_deg
    assert muscle((0.0, 1.0, 0.0)).echo_logit > base.echo_logit
    assert muscle((0.0, 0.0, 1.0)).contrast_logit < base.contrast_logit


# --- the paper size, tables only ------------------------------------------------------------

def test_paper_size_matches_the_study(tmp_path):
    tables = build_tables(SynthOptions(size="paper", seed=1), tmp_path)
    participants = tables.participants
    counts = participants.groupby("cohort")["label"].agg(["size", "sum"])
    assert counts.loc["development"].tolist() == [357, 101]
    assert counts.loc["external"].tolist() == [145, 68]
    assert counts.loc["poc"].tolist() == [82, 19]
    assert participants.groupby("cohort")["center"].nunique().eq(1).all()
    assert participants["center"].nunique() == 3
    development = participants[participants["cohort"] == "development"]
    inputs = [c for c in development.columns if c not in ("participant_id", "cohort", "center", "label")
              and not c.startswith(("grip", "gait", "chair", "sppb", "asmi"))]
    assert int(development[inputs].isna().any(axis=1).sum()) == 86  # as in the study


def tabular(role: str) -> list[str]:
    return [name for name, spec in TABULAR_SCHEMA.items() if spec.role == role]


def test_some_participants_lack_the_whole_lab_table_at_the_documented_share(tmp_path):
    for size in ("small", "paper"):
        participants = build_tables(SynthOptions(size=size, seed=1), tmp_path).participants
        for spec in SIZES[size]:
            rows = participants[participants["cohort"] == spec.name]
            with_gaps = round(MISSING_FRACTION * spec.n_participants)
            assert int(rows[tabular("clinical") + tabular("lab")].isna().any(axis=1).sum()) == with_gaps
            no_lab = rows[tabular("lab")].isna().all(axis=1)
            assert int(no_lab.sum()) == round(WHOLE_LAB_MISSING_SHARE * with_gaps) >= 1
            assert not rows[tabular("clinical")].isna().all(axis=1).any()
            assert rows[["age", "sex"]].notna().all().all()
    paper = build_tables(SynthOptions(size="paper", seed=1), tmp_path).participants
    assert int(paper.loc[paper["cohort"] == "development", tabular("lab")].isna().all(axis=1).sum()) == 17


def test_participants_without_labs_are_scored_by_a_vacuous_lab_opinion(cohort, tmp_path):
    from model_build.models.train import Trainer, TrainOptions

    loaded = load_cohort(cohort)
    participants = loaded.participants
    trainer = Trainer(TrainOptions.quick(modalities=["clinical", "lab"], epochs=2, threads=1))
    trainer.fit(loaded, tmp_path / "model", rows=participants[participants["cohort"] == "development"])
    predictions = trainer.predict(participants).set_index("participant_id")
    no_lab = participants.set_index("participant_id")[tabular("lab")].isna().all(axis=1)
    assert no_lab.sum() == sum(round(WHOLE_LAB_MISSING_SHARE * round(MISSING_FRACTION * spec.n_participants))
                               for spec in SIZES["small"])
    without = predictions[no_lab.reindex(predictions.index)]
    assert (without[["evidence_lab_sarcopenia", "evidence_lab_non_sarcopenia", "contribution_lab"]] == 0).all().all()
    assert without["probability"].between(0, 1).all() and (without["contribution_clinical"] == 1).all()
    assert (predictions.loc[~no_lab, "evidence_lab_sarcopenia"] > 0).all()


def test_large_development_cohort_is_the_paper_one(tmp_path):
    paper = build_tables(SynthOptions(size="paper", seed=2), tmp_path).participants
    large = build_tables(SynthOptions(size="large", seed=2), tmp_path).participants
    pd.testing.assert_frame_equal(paper[paper["cohort"] == "development"],
                                  large[large["cohort"] == "development"])
    assert (large["cohort"] == "external").sum() == 2000 and (large["cohort"] == "poc").sum() == 500


# --- the small cohort, end to end ------------------------------------------------------------

def test_counts_ids_and_centers(cohort):
    participants = read(cohort, "participants.csv")
    for spec in SIZES["small"]:
        rows = participants[participants["cohort"] == spec.name]
        assert len(rows) == spec.n_participants
        assert (rows["label"] == "1").sum() == spec.n_positive
        assert set(rows["center"]) == {spec.center}
        assert all(re.fullmatch(rf"{spec.id_prefix}\d{{4}}", pid) for pid in rows["participant_id"])
    assert participants["participant_id"].is_unique


def test_every_column_is_declared_and_within_its_range(cohort):
    schema = load_schema(cohort / "schema.yaml")
    assert schema.label_definition == "awgs2019"
    participants = read(cohort, "participants.csv")
    builtin = {"participant_id", "cohort", "center", "label"}
    assert set(participants.columns) - builtin == set(schema.columns)
    for name, spec in schema.columns.items():
        present = participants[name][participants[name] != ""]
        if spec.role == "reference" or name in ("sex", "age"):
            assert len(present) == len(participants), f"{name} has missing values"
        if spec.levels is not None:
            assert set(present) <= set(spec.levels), name
        if spec.range is not None:
            values = present.astype(float)
            assert values.between(*spec.range).all(), f"{name} outside {spec.range}"
            if spec.type in ("integer", "binary"):
                assert (values == values.round()).all(), name
    assert set(schema.measure_columns()) == {"grip", "gait_speed", "chair_stand", "sppb", "asmi", "asmi_method"}
    assert participants.groupby("center")["asmi_method"].nunique().eq(1).all()
    assert participants["asmi_method"].nunique() == 2
    inputs = schema.columns_with_role("clinical") + schema.columns_with_role("lab")
    incomplete = (participants[inputs] == "").any(axis=1).groupby(participants["cohort"]).sum()
    for spec in SIZES["small"]:
        assert incomplete[spec.name] == round(spec.n_participants * MISSING_FRACTION)


def test_awgs2019_reproduces_every_label_from_the_csv(cohort):
    """Independent of the generator's own check: parse the CSV text and apply the criteria."""
    schema = load_schema(cohort / "schema.yaml")
    columns = schema.measure_columns()
    categories = set()
    for _, row in read(cohort, "participants.csv").iterrows():
        values = {measure: row[column] if measure == "asmi_method" else float(row[column])
                  for measure, column in columns.items()}
        diagnosis = diagnose(Measurements.from_measures(row["sex"], values), "awgs2019")
        assert diagnosis.label == int(row["label"]), row["participant_id"]
        categories.add(diagnosis.category)
    assert {"sarcopenia", "severe_sarcopenia", "no_sarcopenia"} <= categories


def test_sarco_label_reproduces_every_label(cohort):
    labelled = run_cli("label", str(cohort), "--standard", "awgs2019", "--check")
    assert labelled.exit_code == 0, labelled.stdout


def test_truth_has_the_oracle_and_latents_and_matches_synth_json(cohort):
    truth = pd.read_csv(cohort / "truth.csv")
    participants = pd.read_csv(cohort / "participants.csv")
    assert list(truth.columns[:5]) == ["participant_id", "p_image", "p_clinical", "p_lab", "p_all"]
    assert set(LATENT_COLUMNS) <= set(truth.columns)
    assert truth["participant_id"].tolist() == participants["participant_id"].tolist()
    facts = json.loads((cohort / "synth.json").read_text())
    assert facts["synthetic"] is True and facts["seed"] == SEED and facts["size"] == "small"
    merged = participants[["participant_id", "cohort", "label"]].merge(truth, on="participant_id")
    for name, rows in merged.groupby("cohort"):
        for modality in ORACLE_MODALITIES:
            probability = rows[f"p_{modality}"]
            assert probability.between(0, 1, inclusive="neither").all()
            auc = roc_auc_score(rows["label"], probability)
            assert facts["oracle_auc"][name][modality] == pytest.approx(auc, abs=1e-4)
    # Same likelihood ratio, two priors: the posteriors differ only through the cohort's prior.
    prevalence = merged.groupby("cohort")["label"].transform("mean")
    ratio = logit(merged["p_all"].clip(1e-9, 1 - 1e-9)) - logit(prevalence)
    assert roc_auc_score(merged["label"], ratio) == pytest.approx(facts["oracle_auc"]["pooled"]["all"], abs=1e-3)
    for modality in ORACLE_MODALITIES:  # 60 participants: wide bounds around the population values
        assert facts["oracle_auc"]["pooled"][modality] > 0.6
    assert "synthetic" in (cohort / "README.md").read_text().lower()
    # each file's muscle as rendered: what the study checks measurements against
    media = pd.read_csv(cohort / "truth_media.csv")
    assert media["path"].tolist() == read(cohort, "images.csv")["path"].tolist()
    assert media["muscle"].tolist() == read(cohort, "images.csv")["muscle"].tolist()
    assert media["muscle_thickness_mm"].between(8, 35).all() and media["pennation_deg"].between(8, 25).all()
    assert media["echo_intensity_latent"].between(0, 1).all()


def test_images_are_real_files_one_to_three_per_participant(cohort):
    images = read(cohort, "images.csv")
    participants = read(cohort, "participants.csv")
    per_participant = images.groupby("participant_id").size()
    assert set(per_participant.index) == set(participants["participant_id"])
    assert per_participant.between(1, 3).all()
    assert set(images["muscle"]) == {"rectus_femoris", "gastrocnemius"}
    assert images["scanner"].nunique() == 3
    suffixes = images["path"].str.rsplit(".", n=1).str[1]
    assert "dcm" in set(suffixes) and len(set(suffixes)) >= 3
    for row in images.itertuples():
        path = cohort / row.path
        if path.suffix == ".dcm":
            dataset = pydicom.dcmread(path)
            assert dataset.Modality == "US" and dataset.PatientID == row.participant_id
            assert dataset.pixel_array.size > 0
        else:
            assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None, row.path
    assert not (cohort / "videos.csv").exists()


def test_same_seed_same_bytes_whatever_the_workers_and_force_replaces(cohort, tmp_path):
    again = tmp_path / "again"
    again.mkdir()
    (again / "stale.txt").write_text("from an older run")
    with pytest.raises(SynthError, match="not a synthetic cohort"):  # --force deletes only a cohort
        synthesize(again, SynthOptions(size="small", seed=SEED, videos=False, workers=1), force=True)
    (again / "synth.json").write_text("{}")
    with pytest.raises(SynthError, match="--force"):
        synthesize(again, SynthOptions(size="small", seed=SEED, videos=False, workers=1))
    synthesize(again, SynthOptions(size="small", seed=SEED, videos=False, workers=1), force=True)
    assert not (again / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no .partial- or .old- leftovers
    for name in ("participants.csv", "truth.csv", "truth_media.csv", "images.csv", "schema.yaml", "synth.json"):
        assert (again / name).read_bytes() == (cohort / name).read_bytes(), name
    for path in read(cohort, "images.csv")["path"]:
        if path.endswith(".png"):
            assert hashlib.sha256((again / path).read_bytes()).digest() == \
                hashlib.sha256((cohort / path).read_bytes()).digest(), path
    other = build_tables(SynthOptions(size="small", seed=SEED + 1), tmp_path).participants
    assert not other.equals(pd.read_csv(cohort / "participants.csv"))


def test_existing_folder_is_refused_with_a_hint(cohort):
    before = (cohort / "participants.csv").read_bytes()
    result = run_cli("synth", str(cohort), "--size", "small")
    assert result.exit_code == 1
    assert "--force" in result.stderr and "Traceback" not in result.output
    assert (cohort / "participants.csv").read_bytes() == before


def test_a_failed_run_leaves_nothing_behind(tmp_path):
    with pytest.raises(SynthError, match="unknown size"):
        synthesize(tmp_path / "out", SynthOptions(size="huge"))
    assert list(tmp_path.iterdir()) == []


def test_one_participants_video_reads_back_in_opencv(tmp_path):
    job = MediaJob(participant_id="P0001", cohort="poc", center="C", sex="F", z_image=(0.5, 0.5, 0.5),
                   seed=np.random.SeedSequence(11), with_video=True, root=tmp_path)
    images, videos, truth = render_participant(job)
    assert len(videos) == 1 and 1 <= len(images) <= 3
    assert [row["path"] for row in truth] == [row["path"] for row in images + videos]
    capture = cv2.VideoCapture(str(tmp_path / videos[0]["path"]))
    try:
        ok, frame = capture.read()
        assert ok and frame.shape[:2] == (720, 1280)
        assert 20 <= capture.get(cv2.CAP_PROP_FPS) <= 30
        assert capture.get(cv2.CAP_PROP_FRAME_COUNT) >= 2 * 20
    finally:
        capture.release()


@pytest.mark.slow  # about 70 s of CPU for the videos and 20 s for `sarco validate`
def test_small_cohort_with_videos_validates(tmp_path):
    out = tmp_path / "small"
    result = run_cli("synth", str(out), "--size", "small", "--seed", "1")
    assert result.exit_code == 0, result.stdout
    videos = read(out, "videos.csv")
    assert len(videos) == len(read(out, "participants.csv"))
    assert all((out / path).stat().st_size > 0 for path in videos["path"])
    assert run_cli("validate", str(out)).exit_code == 0
