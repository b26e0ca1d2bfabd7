"""Rebuild tests/data/real (the real images the tests read) and tests/data/real_scan_statistics.csv
from the full public data set in ../shared/data. Maintenance only: no test runs it, and the tests
never read ../shared/data; run it by hand when the subset or the realism statistics change.

    python tests/data/real/make_subset.py [--data ../shared/data]

Every file is copied byte for byte, except six uncompressed ones that the tests only decode
(scan-region marks, realism statistics, sweeps over every image), which are re-encoded
losslessly (OpenCV decodes exactly the same pixels): two DeepACSA TIFFs get deflate compression
with their tags (ImageJ ROI and description) kept, and four Philips BMPs become PNG.
rectus_img_55.tif and GM_P_1.bmp keep their original bytes: the validation tests use them as
real files of their format (truncated, described, copied), where the byte layout matters.
MANIFEST.csv lists every file with its source, licence, encoding and SHA-256; SOURCES.md says
where each group comes from and what the tests use it for.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, TiffImagePlugin

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))  # model_build, when run as a script from anywhere

TIMTRACK = "muscle-us-timtrack"
DATASET1 = [f"{TIMTRACK}/dataset1/{subject}/{subject}_{name}.png"
            for subject in ("S1", "S2", "S3", "S4", "S5", "S9")
            for name in ("L20_step_025", "L20_step_325", "R20_step_175")]  # test_text_mask: every 6th
SUBSET = [  # (file in ../shared/data, licence SPDX id)
    *[(path, "CC0-1.0") for path in DATASET1],
    (f"{TIMTRACK}/dataset1/S4/S4_R20_step_025.png", "CC0-1.0"),  # realism: brightest, least contrast
    (f"{TIMTRACK}/dataset1/S8/S8_R20_step_175.png", "CC0-1.0"),
    (f"{TIMTRACK}/dataset1/S10/S10_L20_step_025.png", "CC0-1.0"),
    (f"{TIMTRACK}/dataset2/jumping/gastroc_jumping_048.png", "CC0-1.0"),
    (f"{TIMTRACK}/dataset2/jumping/gastroc_jumping_092.png", "CC0-1.0"),
    (f"{TIMTRACK}/dataset2/range-of-motion/gastroc_range_of_motion_002.png", "CC0-1.0"),
    (f"{TIMTRACK}/dataset2/range-of-motion/gastroc_range_of_motion_422.png", "CC0-1.0"),
    (f"{TIMTRACK}/dataset2/range-of-motion/gastroc_range_of_motion_962.png", "CC0-1.0"),
    *[(f"{TIMTRACK}/dataset2/{name}.png", "CC0-1.0") for name in (  # fascicle angle vs the observers
        "jumping/gastroc_jumping_066", "range-of-motion/gastroc_range_of_motion_062",
        "range-of-motion/gastroc_range_of_motion_512")],
    *[(f"{TIMTRACK}/dataset3/{name}.jpg", "CC-BY-4.0") for name in (
        "030/p6_isokinetic030_01_push_01_10", "030/p6_isokinetic030_01_push_01_123",
        "120/p6_isokinetic120_01_push_01_10", "120/p6_isokinetic120_01_push_01_36",
        "210/p6_isokinetic210_01_push_01_10", "210/p6_isokinetic210_01_push_02_18",
        "500/p6_isokinetic500_01_push_01_10", "500/p6_isokinetic500_01_push_02_60",
        "isometric/p6_isometric_max_01_push_01_10", "isometric/p6_isometric_max_01_push_01_49")],
    *[(f"{TIMTRACK}/dataset4/SampleA/GM_T_{n}.png", "CC-BY-4.0") for n in (1, 5, 12)],
    *[(f"{TIMTRACK}/dataset4/SampleB/GM_P_{n}.bmp", "CC-BY-4.0") for n in (1, 9, 11, 14, 15)],
    *[(f"{TIMTRACK}/single_images/example_ultrasound_image{n}.png", "CC0-1.0") for n in (2, 3, 4)],
    *[(f"muscle-us-deepacsa/rectus_img_{n}.tif", "Apache-2.0") for n in (55, 56, 57)],
    *[(f"dl-track-aponeuroses/{kind}/img_{n:05d}.png", "Apache-2.0")
      for n in (1, 2, 3, 36) for kind in ("images", "masks")],  # one per main layout
    *[(f"dl-track-aponeuroses/masks/img_{n:05d}.png", "Apache-2.0")
      for n in (64, 95, 96)],  # masks with one, three and four bands (sarco_core.measure.labels)
    ("busi-development/images/benign0002.png", "CC-BY-4.0"),
    ("busi-development/images/malignant0001.png", "CC-BY-4.0"),
]
KEPT_AS_THEY_ARE = {f"{TIMTRACK}/dataset4/SampleB/GM_P_1.bmp", "muscle-us-deepacsa/rectus_img_55.tif"}
NOTES = [  # licence and notes files, copied as they are
    f"{TIMTRACK}/SOURCE-README.md",
    "dl-track-aponeuroses/LICENSE",
]
DEEPACSA_LICENCE = ("dl-track-aponeuroses/LICENSE", "muscle-us-deepacsa/LICENSE")  # the same Apache-2.0 text


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def deflate_tiff(source: Path, target: Path) -> None:
    image = Image.open(source)
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    for tag in (270, 50838, 50839):  # ImageDescription and ImageJ's metadata (an ROI), as they were
        if tag in image.tag_v2:
            tags[tag] = image.tag_v2[tag]
            tags.tagtype[tag] = image.tag_v2.tagtype[tag]
    image.save(target, compression="tiff_adobe_deflate", tiffinfo=tags)


def copy(relative: str, source: Path, target: Path) -> str:
    """Copy one file (re-encoding an uncompressed one losslessly); returns the encoding used."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if relative in KEPT_AS_THEY_ARE or source.suffix not in (".tif", ".bmp"):
        shutil.copyfile(source, target)
        return "original bytes"
    if source.suffix == ".tif":
        deflate_tiff(source, target)
        encoding = "TIFF re-encoded with deflate compression, tags kept"
    else:
        pixels = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
        assert cv2.imwrite(str(target), pixels, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        encoding = "BMP re-encoded as PNG"
    before = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    after = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
    assert before.dtype == after.dtype and np.array_equal(before, after), f"{target}: pixels changed"
    return encoding + ", pixels identical"


def target_name(relative: str) -> str:
    if relative.endswith(".bmp") and relative not in KEPT_AS_THEY_ARE:
        return relative[:-4] + ".png"
    return relative


def write_statistics(data: Path, table: Path) -> None:
    """Per-image realism statistics of every real image the scan-box table names (all of
    ../shared/data, not only the subset): the real range test_synth_render checks against."""
    from model_build.synth.realism import read_scan_boxes, real_statistics

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    boxes = read_scan_boxes(REPO / "tests" / "data" / "real_scan_boxes_for_realism.csv")
    rows = [{"file": path.relative_to(data).as_posix(), **statistics.as_dict()}
            for path, statistics in real_statistics(data, boxes)]
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: (repr(value) if isinstance(value, float) else value) for key, value in row.items()}
                         for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    data = parser.parse_args().data.resolve()
    for old in HERE.iterdir():
        if old.is_dir():
            shutil.rmtree(old)
    manifest = []
    for relative, licence in SUBSET:
        target = target_name(relative)
        encoding = copy(relative, data / relative, HERE / target)
        manifest.append({"file": target, "source": relative, "licence": licence, "encoding": encoding,
                         "bytes": (HERE / target).stat().st_size, "sha256": sha256(HERE / target)})
    for relative in NOTES:
        (HERE / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data / relative, HERE / relative)
    shutil.copyfile(data / DEEPACSA_LICENCE[0], HERE / DEEPACSA_LICENCE[1])
    with open(HERE / "MANIFEST.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(manifest[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(manifest)
    write_statistics(data, REPO / "tests" / "data" / "real_scan_statistics.csv")
    total = sum(row["bytes"] for row in manifest)
    print(f"{len(manifest)} images, {total / 1e6:.1f} MB, in {HERE}")


if __name__ == "__main__":
    main()
