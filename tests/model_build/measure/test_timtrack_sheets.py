"""The TimTrack observers' sheets as model_build.measure.timtrack reads them: dataset 1's layout
(one workbook, a sheet per observer; the set the pennation parameters are chosen on) in a
workbook written here the way the published one is laid out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model_build.measure.timtrack import TUNING_DATASET, disagreement, read_observers

pytest.importorskip("openpyxl", reason="reading .xlsx needs openpyxl (the workstation install)")

COLUMNS = ["subject", "leg", "name", "alpha", "betha", "spoint", "dpoint", "height"]
ROWS = {  # observer -> rows; subject 10's left leg, frames 25 and 75 (S10/S10_L20_step_025.png)
    "TZ": [[10, "L", 25, 9.86, -6.17, 99, 317, 218], [10, "L", 75, 17.47, -7.06, 97, 401, 304]],
    "EM": [[10, "L", 25, 10.90, -6.00, 101, 317, 216], [10, "L", 75, 16.47, -7.00, 99, 399, 300],
           [10, "L", 125, 15.0, -6.3, 108, 401, 293]],  # no image on disk: left out
    "BH": [[10, "L", 25, 11.20, -6.10, 98, 318, 220], ["", "", "", "", "", "", "", ""]],  # a blank row
}


@pytest.fixture()
def timtrack(tmp_path):
    root = tmp_path / "muscle-us-timtrack" / "dataset1"
    (root / "S10").mkdir(parents=True)
    for frame in (25, 75):
        (root / "S10" / f"S10_L20_step_{frame:03d}.png").write_bytes(b"png")
    with pd.ExcelWriter(root / "dataset1_for_manual_estimation.xlsx") as writer:
        for observer, rows in ROWS.items():
            pd.DataFrame(rows, columns=COLUMNS).to_excel(writer, sheet_name=observer, index=False)
    return tmp_path / "muscle-us-timtrack"


def test_dataset1_gives_every_observers_row_for_each_image_on_disk(timtrack):
    images = read_observers(timtrack, TUNING_DATASET)
    assert sorted(images) == ["S10/S10_L20_step_025.png", "S10/S10_L20_step_075.png"]
    first = images["S10/S10_L20_step_025.png"]
    assert first["path"] == timtrack / "dataset1" / "S10" / "S10_L20_step_025.png"
    assert sorted(first["obs"]) == ["BH", "EM", "TZ"]
    assert first["obs"]["TZ"] == {"alpha": 9.86, "betha": -6.17, "height": 218.0, "spoint": 99.0, "dpoint": 317.0}
    assert sorted(images["S10/S10_L20_step_075.png"]["obs"]) == ["EM", "TZ"]

    rows = {row["image"]: row for row in disagreement(images)["per_image"]}
    assert rows["S10/S10_L20_step_025.png"]["alpha_mean_deg"] == pytest.approx(np.mean([9.86, 10.90, 11.20]))
    assert rows["S10/S10_L20_step_025.png"]["alpha_disagreement_deg"] == pytest.approx(1.04)  # pairs 1.04, 1.34, 0.30
    assert rows["S10/S10_L20_step_075.png"]["height_disagreement_px"] == 4.0
