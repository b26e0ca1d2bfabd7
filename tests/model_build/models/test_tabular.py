"""Clinical / lab preprocessing: fitted on training rows only, JSON round trip, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from model_build.cohort import ColumnSpec
from model_build.models.tabular import TabularEncoder, TabularInputError, TabularMLP, fit_baselines

SPECS = [
    ColumnSpec("age", role="clinical", type="integer"),
    ColumnSpec("albumin", role="lab", type="numeric"),
    ColumnSpec("diabetes", role="clinical", type="binary"),
    ColumnSpec("sex", role="clinical", type="categorical", levels=("M", "F")),
]


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["age", "albumin", "diabetes", "sex"],
                        index=pd.Index(range(2, 2 + len(rows)), name="row"))


TRAIN = _frame([(70, 40.0, 1, "M"), (80, None, 0, "F"), (90, 30.0, 0, "F")])


def test_statistics_come_from_the_training_rows_only() -> None:
    encoder = TabularEncoder.fit(TRAIN, SPECS)
    age = encoder.numeric[0]
    assert (age.median, age.mean) == (80.0, 80.0)
    assert age.scale == pytest.approx(np.std([70, 80, 90]))
    other = _frame([(200, 50.0, 1, "M")])  # an outlier elsewhere changes nothing learned
    assert encoder.transform(other)[0, 0] == pytest.approx((200 - 80) / np.std([70, 80, 90]))


def test_missing_values_get_the_median_and_an_indicator_only_where_training_had_gaps() -> None:
    encoder = TabularEncoder.fit(TRAIN, SPECS)
    names = encoder.feature_names
    assert names == ["age", "albumin", "diabetes", "albumin_missing", "sex=M", "sex=F"]
    row = encoder.transform(_frame([(None, None, None, None)]))[0]
    albumin = encoder.numeric[1]
    assert row[1] == pytest.approx((albumin.median - albumin.mean) / albumin.scale)
    assert row[3] == 1.0                      # albumin_missing
    assert row[4:].tolist() == [0.0, 0.0]     # missing sex: no level set
    assert row[0] == pytest.approx(0.0)       # age: median == mean here


def test_binary_words_and_unknown_levels() -> None:
    encoder = TabularEncoder.fit(TRAIN, SPECS)
    rows = encoder.transform(_frame([(70, 40.0, "yes", "X"), (70, 40.0, "No", "F")]))
    diabetes = encoder.numeric[2]
    assert rows[0, 2] == pytest.approx((1 - diabetes.mean) / diabetes.scale)
    assert rows[1, 2] == pytest.approx((0 - diabetes.mean) / diabetes.scale)
    assert rows[0, 4:].tolist() == [0.0, 0.0] and rows[1, 4:].tolist() == [0.0, 1.0]


def test_json_round_trip_transforms_identically() -> None:
    encoder = TabularEncoder.fit(TRAIN, SPECS)
    again = TabularEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    frame = _frame([(75, None, 1, "M"), (None, 33.3, 0, "F")])
    assert np.array_equal(encoder.transform(frame), again.transform(frame))


def test_unreadable_value_names_column_and_row() -> None:
    encoder = TabularEncoder.fit(TRAIN, SPECS)
    with pytest.raises(TabularInputError, match=r"'albumin', row 3: 'abc'"):
        encoder.transform(_frame([(70, 40.0, 1, "M"), (70, "abc", 1, "M")]))


def test_a_column_without_any_training_value_is_refused() -> None:
    with pytest.raises(TabularInputError, match="albumin"):
        TabularEncoder.fit(_frame([(70, None, 1, "M")]), SPECS)


def test_presence_means_at_least_one_value() -> None:
    encoder = TabularEncoder.fit(TRAIN, SPECS)
    assert encoder.present(_frame([(None, None, None, None), (None, 40.0, None, None)])).tolist() == [False, True]


def test_baselines_and_mlp_run_on_encoded_features() -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((80, 3)).astype(np.float32)
    labels = (features[:, 0] + 0.3 * rng.standard_normal(80) > 0).astype(int)
    for model in fit_baselines(features, labels, seed=0).values():
        assert model.predict_proba(features).shape == (80, 2)
    import torch

    assert TabularMLP(3)(torch.from_numpy(features)).shape == (80, 32)
