"""The study's INT8 check reads recordings as the bundle does (one sampled frame per recording for
the study's image model), so its float AUC is the model's, not that of the device's gated frames."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from model_build.calibration.cohorts import Group
from model_build.calibration.verify import bundle_inputs
from model_build.cohort import load_cohort
from model_build.models.data import build_arrays, media_rows
from model_build.models.predict import make_batch
from sarco_core.preprocess import PreprocessParams, Preprocessor
from testkit.cohort_factory import make_cohort


def test_inputs_are_the_bundles_own(tmp_path: Path) -> None:
    make_cohort(tmp_path / "cohort", n_participants=4)
    cohort = load_cohort(tmp_path / "cohort")
    rows = cohort.participants.reset_index(drop=True)
    params = PreprocessParams(size=32)
    source = SimpleNamespace(device=SimpleNamespace(preprocess=params), frames_per_video=1)
    pixels, owner, skipped = bundle_inputs(source, cohort, Group("development", rows))

    arrays = build_arrays(cohort, rows, ["image"], {}, Preprocessor(params), 1)
    batch = make_batch(arrays, np.arange(len(rows)), Preprocessor(params))  # what the bundle's predictions run
    assert np.array_equal(pixels, batch.images.numpy()) and np.array_equal(owner, batch.image_owner.numpy())
    listed = media_rows(cohort, rows["participant_id"].tolist())
    assert len(pixels) == sum(len(files) for files in listed.values())  # one frame per recording
    assert skipped == []
