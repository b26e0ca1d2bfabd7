"""The synthetic cohort's pixels (model_build.synth.render): API contract, faithful and monotone
rendering of the muscle latents, realism against real images, scanner video and US DICOM."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.uid import UltrasoundImageStorage

from model_build.synth.profiles import CONSORTIUM_PROFILES, scanner
from model_build.synth.realism import as_grey, read_scan_boxes, real_statistics, scan_statistics
from model_build.synth.render import (
    PROFILES,
    MuscleLatent,
    RenderedImage,
    exported_pixels,
    render_still,
    write_scan_video,
    write_still,
    write_us_dicom,
)
from model_build.synth.tissue import APONEUROSIS_MM, SKIN_MM, tissue_maps
from model_build.synth.video import FRAME_STATES
from tests.support.paths import REPO
from tests.support.real_data import REAL_DATA

REPO_ROOT = REPO
REAL_BOXES = REPO_ROOT / "tests" / "data" / "real_scan_boxes_for_realism.csv"
# Per-image statistics of all 345 real images those boxes name in ../shared/data, written by
# tests/data/real/make_subset.py; the committed subset's images are checked against it below.
REAL_STATISTICS = REPO_ROOT / "tests" / "data" / "real_scan_statistics.csv"
CENTERS = sorted(PROFILES)
EVERY_CENTER = sorted({*PROFILES, *CONSORTIUM_PROFILES})  # with the consortium's sites (cheap tests only)
BASE = MuscleLatent("rectus_femoris", 20.0, 8.0, 0.3, 0.7, 15.0)


def _latent(**changes: object) -> MuscleLatent:
    values = {name: getattr(BASE, name) for name in BASE.__dataclass_fields__}
    values.update(changes)
    return MuscleLatent(**values)


def _render(latent: MuscleLatent, center: str, seed: int) -> RenderedImage:
    return render_still(latent, scanner(center), np.random.default_rng(seed))


def _scan(image: RenderedImage, pixels: np.ndarray | None = None) -> np.ndarray:
    x0, y0, x1, y1 = image.scan_box
    return as_grey(image.pixels if pixels is None else pixels)[y0:y1, x0:x1].astype(np.float32)


# --- (a) API contract ----------------------------------------------------------------------


@pytest.mark.parametrize("center", EVERY_CENTER)
def test_still_has_the_exported_shape_and_a_scan_box_inside_it(center: str) -> None:
    profile = scanner(center)
    image = _render(BASE, center, 1)
    assert image.pixels.dtype == np.uint8
    assert image.pixels.ndim == (3 if profile.colour else 2)
    if profile.colour:
        assert image.pixels.shape[2] == 3
    x0, y0, x1, y1 = image.scan_box
    height, width = image.pixels.shape[:2]
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert (y1 - y0) * image.mm_per_pixel == pytest.approx(image.depth_mm)
    assert image.depth_mm in profile.depth_presets_mm
    assert image.depth_mm >= BASE.deep_aponeurosis_bottom_mm + 8.0
    assert (x1 - x0 - 1) * image.mm_per_pixel <= profile.probe_width_mm
    outside = np.ones((height, width), bool)  # every scanner burns a UI with text around the scan
    outside[y0:y1, x0:x1] = False
    assert outside.any() and as_grey(image.pixels)[outside].std() > 5


@pytest.mark.parametrize("center", CENTERS)
def test_still_is_deterministic_for_a_seed(center: str) -> None:
    first, again, other = _render(BASE, center, 7), _render(BASE, center, 7), _render(BASE, center, 8)
    assert np.array_equal(first.pixels, again.pixels) and first.scan_box == again.scan_box
    assert not np.array_equal(first.pixels, other.pixels)


def test_the_three_scanners_differ() -> None:
    images = {center: _render(BASE, center, 3) for center in CENTERS}
    layouts = {(im.pixels.shape, im.scan_box) for im in images.values()}
    assert len(layouts) == 3
    assert len({PROFILES[c].name for c in CENTERS}) == 3


def test_every_consortium_site_has_a_scanner_of_its_own() -> None:
    """Kept out of PROFILES (the measurement model's training scanners); each looks different."""
    assert not set(CONSORTIUM_PROFILES) & set(PROFILES)
    assert len({scanner(c).name for c in EVERY_CENTER}) == len(EVERY_CENTER)
    images = [_render(BASE, center, 3) for center in EVERY_CENTER]
    looks = {(im.pixels.shape, im.scan_box, round(float(_scan(im).mean())), round(float(_scan(im).std())))
             for im in images}
    assert len(looks) == len(EVERY_CENTER)


def test_invalid_latent_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="muscle 'biceps'"):
        MuscleLatent("biceps", 20.0, 8.0, 0.3, 0.7, 15.0)
    with pytest.raises(ValueError, match="echo_intensity 1.5"):
        _latent(echo_intensity=1.5)


@pytest.mark.parametrize("center", EVERY_CENTER)
def test_write_still_round_trips_and_leaves_no_temporary(center: str, tmp_path: Path) -> None:
    image = _render(BASE, center, 2)
    path = tmp_path / f"still{scanner(center).still_suffix}"
    write_still(path, image, jpeg_quality=scanner(center).jpeg_quality)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.shape == image.pixels.shape
    if path.suffix == ".png":
        assert np.array_equal(back, image.pixels)
    else:
        assert 0 < np.abs(back.astype(int) - image.pixels).mean() < 3.0  # JPEG artefacts, small
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_write_still_refuses_an_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unsupported image suffix '\.gif'"):
        write_still(tmp_path / "x.gif", _render(BASE, "A", 0))
    assert list(tmp_path.iterdir()) == []


# --- (b) the latents are rendered faithfully and monotonically -----------------------------


def _row_profile(image: RenderedImage, half_width_px: int = 40) -> np.ndarray:
    """Mean grey per row over a strip at the centre column, where the latent thickness holds."""
    scan = _scan(image)
    centre = scan.shape[1] // 2
    profile = scan[:, centre - half_width_px : centre + half_width_px].mean(axis=1)
    return cv2.GaussianBlur(profile[:, None], (1, 0), 1.0)[:, 0]


def _peak_near(profile: np.ndarray, expected_px: float, window_px: float) -> int:
    low, high = int(max(expected_px - window_px, 0)), int(min(expected_px + window_px, profile.size - 1))
    peak = low + int(np.argmax(profile[low : high + 1]))
    assert low < peak < high, "aponeurosis peak at the edge of its search window: not where the geometry puts it"
    assert profile[peak] > np.median(profile) + 25, "no bright aponeurosis line found"
    return peak


def _half_level_crossing(profile: np.ndarray, start: int, step: int, level: float) -> float:
    """Sub-pixel row where the profile, walking from ``start`` by ``step``, first drops below ``level``."""
    row = start
    while profile[row] >= level:
        row += step
    before, after = profile[row - step], profile[row]
    return row - step + step * (before - level) / (before - after)


def measured_thickness_mm(image: RenderedImage, latent: MuscleLatent) -> float:
    """Muscle thickness found in the image: the distance between the aponeuroses' inner borders,
    each where the bright band falls to half-way between its peak and the muscle's grey level."""
    profile = _row_profile(image)
    per_mm = 1.0 / image.mm_per_pixel
    fascia_centre_mm = SKIN_MM + latent.subcutaneous_fat_mm + APONEUROSIS_MM / 2
    superficial = _peak_near(profile, fascia_centre_mm * per_mm, 1.5 * per_mm)
    deep = _peak_near(profile, superficial + (latent.muscle_thickness_mm + APONEUROSIS_MM) * per_mm, 3.0 * per_mm)
    muscle = float(np.median(profile[superficial + (deep - superficial) // 4 : deep - (deep - superficial) // 4]))
    inner_top = _half_level_crossing(profile, superficial, 1, (profile[superficial] + muscle) / 2)
    inner_bottom = _half_level_crossing(profile, deep, -1, (profile[deep] + muscle) / 2)
    return (inner_bottom - inner_top) * image.mm_per_pixel


def _band_centres_mm(column: np.ndarray, pixel_mm: float) -> list[float]:
    """Centroid depth (mm) of each run of non-zero specular echo in one column, top first."""
    rows = np.flatnonzero(column > 1e-4)
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    return [float(((run + 0.5) * column[run]).sum() / column[run].sum() * pixel_mm) for run in runs]


@pytest.mark.parametrize("thickness", [8.3, 15.0, 27.7])
def test_tissue_geometry_puts_the_aponeuroses_exactly(thickness: float) -> None:
    """Thickness in pixels is thickness_mm / mm_per_pixel exactly: at the centre and on average."""
    pixel_mm, latent = 0.1, _latent(muscle_thickness_mm=thickness, subcutaneous_fat_mm=6.3)
    maps = tissue_maps(latent, (500, 320), pixel_mm, np.random.default_rng(11))
    per_column = []
    for column in maps.specular.T:
        skin, superficial, deep = _band_centres_mm(column, pixel_mm)[:3]
        per_column.append(deep - superficial - APONEUROSIS_MM)
    centre = maps.specular.shape[1] // 2
    assert np.mean(per_column[centre - 1 : centre + 1]) == pytest.approx(thickness, abs=0.01)
    assert np.mean(per_column) == pytest.approx(thickness, abs=0.01)
    superficial_top = np.mean([_band_centres_mm(c, pixel_mm)[1] for c in maps.specular.T[centre - 1 : centre + 1]])
    assert superficial_top - APONEUROSIS_MM / 2 == pytest.approx(SKIN_MM + 6.3, abs=0.01)


@pytest.mark.parametrize("center", CENTERS)
def test_muscle_thickness_measured_in_the_image_follows_the_latent(center: str) -> None:
    thicknesses = (10.0, 17.0, 24.0, 31.0)
    latents = [_latent(muscle_thickness_mm=t) for t in thicknesses]
    measured = [[measured_thickness_mm(_render(la, center, seed), la) for seed in (0, 1)] for la in latents]
    for thickness, values in zip(thicknesses, measured):
        for value in values:
            assert value == pytest.approx(thickness, abs=0.6), f"{center}: latent {thickness} mm measured {value:.2f}"
    assert np.all(np.diff(np.mean(measured, axis=1)) > 5.0)


def _muscle_band(image: RenderedImage, latent: MuscleLatent) -> np.ndarray:
    """The muscle between the aponeuroses (1 mm margins), central half of the width."""
    scan = _scan(image)
    per_mm = 1.0 / image.mm_per_pixel
    top = (SKIN_MM + latent.subcutaneous_fat_mm + APONEUROSIS_MM + 1.0) * per_mm
    bottom = top + (latent.muscle_thickness_mm - 2.0) * per_mm
    quarter = scan.shape[1] // 4
    return scan[int(top) : int(bottom), quarter : 3 * quarter]


@pytest.mark.parametrize("center", CENTERS)
def test_mean_muscle_grey_rises_with_echo_intensity(center: str) -> None:
    levels = (0.1, 0.3, 0.5, 0.7)
    means = [
        np.mean([_muscle_band(_render(_latent(echo_intensity=e), center, seed), BASE).mean() for seed in range(2)])
        for e in levels
    ]
    assert np.all(np.diff(means) > 3.0), f"{center}: muscle means {np.round(means, 1)} for echo {levels}"


def striation_energy(band: np.ndarray) -> float:
    """Relative spread of the muscle band once speckle is smoothed away: high when bright
    striations alternate with dark fibres, low when the muscle is a uniform haze."""
    smooth = cv2.GaussianBlur(band, (0, 0), 2.0)
    return float(smooth.std() / smooth.mean())


@pytest.mark.parametrize("center", CENTERS)
def test_striation_energy_rises_with_fascicle_contrast(center: str) -> None:
    levels = (0.0, 0.35, 0.7, 1.0)
    latents = [_latent(fascicle_contrast=c) for c in levels]
    bands = [[_muscle_band(_render(la, center, seed), BASE) for seed in (0, 1)] for la in latents]
    energies = [np.mean([striation_energy(band) for band in pair]) for pair in bands]
    assert np.all(np.diff(energies) > 0.01), f"{center}: striation energy {np.round(energies, 3)}, contrast {levels}"


# --- (c) realism: synthetic statistics inside the real images' range -----------------------

REALISM_LATENTS = (
    MuscleLatent("rectus_femoris", 26.0, 5.0, 0.2, 0.9, 14.0),
    MuscleLatent("rectus_femoris", 11.0, 16.0, 0.6, 0.15, 9.0),
    MuscleLatent("gastrocnemius", 18.0, 4.0, 0.3, 0.7, 22.0),
    MuscleLatent("gastrocnemius", 9.0, 22.0, 0.75, 0.05, 12.0),
)


def _committed_statistics() -> dict[str, dict[str, float]]:
    with open(REAL_STATISTICS, newline="") as handle:
        return {row.pop("file"): {key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def real_ranges() -> dict[str, tuple[float, float]]:
    statistics = list(_committed_statistics().values())
    assert len(statistics) > 300, "fewer real images than the data README lists"
    return {key: (min(s[key] for s in statistics), max(s[key] for s in statistics)) for key in statistics[0]}


def test_committed_real_statistics_are_those_of_the_images() -> None:
    """The real range comes from a table of all 345 images; the committed images (every scanner
    layout, and the images holding each end of each range but the narrowest axial speckle, a
    Philips BMP) must give the values it lists, so a change to scan_statistics or to the boxes
    cannot leave the table stale."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # TIFF tag warnings of the DeepACSA files
    boxes = read_scan_boxes(REAL_BOXES)
    committed = _committed_statistics()
    measured = real_statistics(REAL_DATA, boxes)
    assert all(list(REAL_DATA.glob(box.pattern)) for box in boxes), "a scanner layout with no committed image"
    assert len(measured) >= 40
    for path, statistics in measured:
        relative = path.relative_to(REAL_DATA).as_posix()
        assert relative in committed, f"{relative}: not in {REAL_STATISTICS.name}"
        assert statistics.as_dict() == pytest.approx(committed[relative], rel=1e-4), relative


@pytest.mark.parametrize("center", EVERY_CENTER)
def test_synthetic_statistics_lie_inside_the_real_range(
    center: str, real_ranges: dict[str, tuple[float, float]]
) -> None:
    for seed, latent in enumerate(REALISM_LATENTS):
        image = _render(latent, center, seed)
        exported = exported_pixels(image, scanner(center))  # as its PNG or JPEG file holds it
        statistics = scan_statistics(_scan(image, exported).astype(np.uint8)).as_dict()
        for key, (low, high) in real_ranges.items():
            value = statistics[key]
            assert low <= value <= high, f"{center} {latent}: {key} {value:.2f} outside the real {low:.2f}-{high:.2f}"


# --- (d) scanner video ---------------------------------------------------------------------


def _read_video(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


@pytest.mark.parametrize("center", CENTERS)
def test_video_reads_back_with_its_states(center: str, tmp_path: Path) -> None:
    profile = PROFILES[center]
    latents = [BASE, _latent(muscle="gastrocnemius", muscle_thickness_mm=14.0, pennation_deg=21.0)]
    info = write_scan_video(tmp_path / "scan.mp4", latents, profile, np.random.default_rng(5), seconds=4.0)
    assert [p.name for p in tmp_path.iterdir()] == ["scan.mp4"]
    frames, fps = _read_video(info.path)
    assert len(frames) == info.n_frames == len(info.frame_states) == round(4.0 * profile.fps)
    assert fps == pytest.approx(profile.fps)
    assert frames[0].shape == (info.height, info.width, 3) == (720, 1280, 3)
    assert set(info.frame_states) == set(FRAME_STATES)

    x0, y0, x1, y1 = info.scan_box
    scan = [f[y0:y1, x0:x1].astype(np.float32) for f in frames]
    states = np.array(info.frame_states)
    tissue_mean = np.mean([scan[i].mean() for i in np.flatnonzero(states == "tissue")])
    lifted_mean = np.mean([scan[i].mean() for i in np.flatnonzero(states == "lifted")])
    assert lifted_mean < 0.35 * tissue_mean, "lifted-probe frames should be dark"

    def change(a: int, b: int) -> float:
        return float(np.abs(scan[a] - scan[b]).mean())

    tissue = np.flatnonzero(states == "tissue")
    live = np.median([change(a, b) for a, b in zip(tissue[:-1], tissue[1:]) if b == a + 1])
    assert live > 5.0, "live frames should change (probe motion, speckle decorrelation)"
    frozen = np.flatnonzero(states == "frozen")
    runs = np.split(frozen, np.flatnonzero(np.diff(frozen) > 1) + 1)
    assert len(runs) == len(latents)
    # Written identical; MPEG-4 decodes them identical except a small step at a key frame.
    changes = [change(a, b) for run in runs for a, b in zip(run[:-1], run[1:])]
    assert max(changes) < 3.0 and np.median(changes) < 0.1, f"frozen frames changed: {np.round(changes, 2)}"


def test_video_as_motion_jpeg_avi(tmp_path: Path) -> None:
    info = write_scan_video(tmp_path / "scan.avi", [BASE], PROFILES["A"], np.random.default_rng(1), seconds=2.0)
    frames, fps = _read_video(info.path)
    assert len(frames) == info.n_frames == 40 and fps == pytest.approx(20.0)


def test_video_bad_requests_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unsupported video suffix"):
        write_scan_video(tmp_path / "v.mkv", [BASE], PROFILES["A"], rng)
    with pytest.raises(ValueError, match="at least one MuscleLatent"):
        write_scan_video(tmp_path / "v.mp4", [], PROFILES["A"], rng)
    with pytest.raises(ValueError, match="too short"):
        write_scan_video(tmp_path / "v.mp4", [BASE, BASE], PROFILES["A"], rng, seconds=2.0)
    assert list(tmp_path.iterdir()) == []


# --- (e) ultrasound DICOM ------------------------------------------------------------------


@pytest.mark.parametrize("center", CENTERS)
def test_dicom_holds_the_pixels_region_and_pseudonym_only(center: str, tmp_path: Path) -> None:
    image = _render(BASE, center, 4)
    path = tmp_path / "still.dcm"
    write_us_dicom(path, image, "SCR-0042", np.random.default_rng(9))
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == UltrasoundImageStorage and ds.Modality == "US"
    expected = image.pixels if image.pixels.ndim == 2 else cv2.cvtColor(image.pixels, cv2.COLOR_BGR2RGB)
    assert ds.PhotometricInterpretation == ("MONOCHROME2" if image.pixels.ndim == 2 else "RGB")
    assert np.array_equal(ds.pixel_array, expected)
    assert ds.PatientID == "SCR-0042"
    assert not ds.get("PatientName") and not ds.get("PatientBirthDate")
    assert ds.BurnedInAnnotation == "YES"
    (region,) = ds.SequenceOfUltrasoundRegions
    x0, y0, x1, y1 = image.scan_box
    assert (region.RegionLocationMinX0, region.RegionLocationMinY0) == (x0, y0)
    assert (region.RegionLocationMaxX1, region.RegionLocationMaxY1) == (x1 - 1, y1 - 1)
    assert region.PhysicalUnitsXDirection == region.PhysicalUnitsYDirection == 3
    assert region.PhysicalDeltaX == region.PhysicalDeltaY == pytest.approx(image.mm_per_pixel / 10.0, rel=1e-12)
    assert [p.name for p in tmp_path.iterdir()] == ["still.dcm"]


def test_dicom_is_deterministic_and_refuses_an_empty_pseudonym(tmp_path: Path) -> None:
    image = _render(BASE, "B", 4)
    write_us_dicom(tmp_path / "a.dcm", image, "SCR-1", np.random.default_rng(3))
    write_us_dicom(tmp_path / "b.dcm", image, "SCR-1", np.random.default_rng(3))
    write_us_dicom(tmp_path / "c.dcm", image, "SCR-1", np.random.default_rng(4))
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()
    assert pydicom.dcmread(tmp_path / "a.dcm").SOPInstanceUID != pydicom.dcmread(tmp_path / "c.dcm").SOPInstanceUID
    with pytest.raises(ValueError, match="screening id"):
        write_us_dicom(tmp_path / "d.dcm", image, "", np.random.default_rng(3))


@pytest.mark.parametrize("center", CENTERS)
def test_video_pixel_size_measures_the_latent_thickness(center: str, tmp_path: Path) -> None:
    """videos.csv's mm_per_pixel comes from VideoInfo: a tissue frame measured with it must give
    back the latent muscle thickness, as a still does with its own pixel size."""
    info = write_scan_video(tmp_path / "scan.mp4", [BASE], PROFILES[center], np.random.default_rng(9), seconds=3.0)
    x0, y0, x1, y1 = info.scan_box
    assert info.mm_per_pixel * (y1 - y0) == pytest.approx(info.depth_mm)
    frames, _ = _read_video(info.path)
    tissue = [i for i, state in enumerate(info.frame_states) if state == "tissue"]
    frame = RenderedImage(pixels=frames[tissue[len(tissue) // 2]], scan_box=info.scan_box,
                          mm_per_pixel=info.mm_per_pixel, depth_mm=info.depth_mm)
    assert measured_thickness_mm(frame, BASE) == pytest.approx(BASE.muscle_thickness_mm, abs=1.0)
