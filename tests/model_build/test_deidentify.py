"""`sarco deidentify`: no PHI left in DICOM headers, pixels cleaned, consistent keyed remapping,
the input never touched. Runs the real command through a Typer app built here."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
import typer
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import RLELossless
from typer.testing import CliRunner

from model_build.commands import deidentify as deidentify_command
from model_build.deidentify import DeidentificationError, Deidentifier
from tests.support.dicom import new_dataset, region, save, speckle
from tests.support.real_data import real_file

KEY = "0123456789abcdef0123456789abcdef"
PHI = ("Doe", "Jane", "H1234567", "Example General", "Smith", "20240115", "19450302", "ACC998877",
       "Main Street", "Sonographer", "Ward 7")
SCAN = (60, 40, 260, 200)


def app() -> typer.Typer:
    cli = typer.Typer()
    deidentify_command.register(cli)
    cli.command("unused")(lambda: None)  # a second command keeps Typer from collapsing the app
    return cli


def run(*args: str, key: str | None = KEY):
    env = {"SARCO_DEID_KEY": key} if key else {"SARCO_DEID_KEY": ""}
    return CliRunner().invoke(app(), ["deidentify", *map(str, args)], env=env)


def screen_pixels(seed: int, frames: int = 1) -> np.ndarray:
    """Grey screens: speckle in SCAN, a header with a name and date above it, text inside it."""
    out = []
    for index in range(frames):
        frame = np.full((240, 320), 30, np.uint8)
        x0, y0, x1, y1 = SCAN
        frame[y0:y1, x0:x1] = speckle((y1 - y0, x1 - x0), seed + index) | 8
        cv2.putText(frame, "DOE JANE 15/01/2024", (5, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 220, 1)
        cv2.putText(frame, "RF 4.2cm", (x0 + 10, y1 - 15), cv2.FONT_HERSHEY_PLAIN, 1.0, 255, 1)
        out.append(frame)
    return np.stack(out) if frames > 1 else out[0]


def phi_dataset(seed: int, frames: int = 1, study_uid: str | None = None, patient_id: str = "H1234567") -> Dataset:
    pixels = screen_pixels(seed, frames)
    ds = new_dataset(*pixels.shape[-2:], frames=frames)
    ds.set_pixel_data(pixels, "MONOCHROME2", 8)
    if study_uid:
        ds.StudyInstanceUID = study_uid
    ds.PatientID = patient_id
    ds.OperatorsName, ds.InstitutionAddress = "Sonographer^Sam", "1 Main Street"
    ds.InstitutionalDepartmentName, ds.PatientAge = "Ward 7", "079Y"
    ds.AcquisitionDateTime, ds.SeriesDate = "20240115101532", "20240115"
    ds.BurnedInAnnotation = "YES"
    performed = Dataset()
    performed.PerformingPhysicianName, performed.PerformedProcedureStepDescription = "Smith^Anna", "Ward 7"
    ds.PerformedProtocolCodeSequence = Sequence([performed])
    ds.add_new(0x00091010, "LO", "Example General private note")
    ds.add_new(0x60003000, "OW", b"\x00" * 8)  # an overlay plane
    ds.SequenceOfUltrasoundRegions = Sequence([region(SCAN)])
    if frames > 1:
        ds.compress(RLELossless)
    return ds


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def all_values(ds: Dataset) -> list[str]:
    values = []
    ds.walk(lambda dataset, element: values.append(str(element.value)) if element.VR not in ("OB", "OW", "SQ") else None)
    return values


@pytest.fixture
def hospital(tmp_path):
    source = tmp_path / "hospital"
    (source / "study1").mkdir(parents=True)
    study = pydicom.uid.generate_uid()
    save(phi_dataset(0, study_uid=study), source / "study1" / "img1.dcm")
    save(phi_dataset(1, study_uid=study), source / "study1" / "img2.dcm")
    save(phi_dataset(2, frames=4), source / "cine.dcm")
    (source / "notes.txt").write_text("Doe Jane, H1234567")
    return source


def test_dicom_leaves_no_phi_and_cleans_pixels(hospital, tmp_path):
    before = tree_digest(hospital)
    out = tmp_path / "out"
    result = run(hospital, out)
    assert result.exit_code == 0, result.output
    assert tree_digest(hospital) == before  # the input is only read
    assert not (out / "notes.txt").exists() and "skipped" in result.output
    assert not list(out.rglob("*.tmp"))
    first = pydicom.dcmread(out / "study1" / "img1.dcm")
    second = pydicom.dcmread(out / "study1" / "img2.dcm")
    original = pydicom.dcmread(hospital / "study1" / "img1.dcm")
    for ds in (first, second, pydicom.dcmread(out / "cine.dcm")):
        text = " ".join(all_values(ds))
        assert not [word for word in PHI if word in text], text
        assert not any(element.tag.is_private for element in ds.iterall())
        assert not any(element.tag.group == 0x6000 for element in ds)
        assert ds.PatientIdentityRemoved == "YES" and ds.BurnedInAnnotation == "NO"
        codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
        assert {"113100", "113101"} <= codes
        assert ds.PatientName == ds.PatientID and str(ds.PatientID).startswith("P")
        for element in ds.iterall():
            if element.VR == "UI" and element.value:
                assert len(str(element.value)) <= 64 and set(str(element.value)) <= set("0123456789.")
    assert first.SOPClassUID == original.SOPClassUID  # well-known UIDs are kept
    assert first.StudyInstanceUID == second.StudyInstanceUID != original.StudyInstanceUID
    assert first.SOPInstanceUID == first.file_meta.MediaStorageSOPInstanceUID != original.SOPInstanceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    pixels, source_pixels = first.pixel_array, original.pixel_array
    x0, y0, x1, y1 = SCAN
    outside = np.ones(pixels.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(pixels[outside] == 0)  # the header with the name and date is gone
    inside_changed = pixels[y0:y1, x0:x1] != source_pixels[y0:y1, x0:x1]
    assert 0 < inside_changed.mean() < 0.1  # the label inside was masked, the scan kept


def test_cine_stays_multiframe_and_every_frame_is_cleaned(hospital, tmp_path):
    run(hospital, tmp_path / "out")
    cine = pydicom.dcmread(tmp_path / "out" / "cine.dcm")
    frames = cine.pixel_array
    assert frames.shape == (4, 240, 320)
    assert np.all(frames[:, :SCAN[1], :] == 0)
    assert cine.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_same_key_same_result_other_key_other_result(hospital, tmp_path):
    run(hospital, tmp_path / "a")
    run(hospital, tmp_path / "b")
    run(hospital, tmp_path / "c", key="another key of enough length 123")
    a, b, c = (pydicom.dcmread(tmp_path / name / "study1" / "img1.dcm") for name in "abc")
    assert (a.PatientID, a.StudyInstanceUID, a.SOPInstanceUID) == (b.PatientID, b.StudyInstanceUID, b.SOPInstanceUID)
    assert a.PatientID != c.PatientID and a.StudyInstanceUID != c.StudyInstanceUID


def test_shifted_dates_keep_intervals(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    early, late = phi_dataset(0), phi_dataset(1)
    early.StudyDate, late.StudyDate = "20240115", "20240310"
    save(early, source / "early.dcm")
    save(late, source / "late.dcm")
    result = run(source, tmp_path / "out", "--shift-dates", "--keep-patient-characteristics")
    assert result.exit_code == 0, result.output
    shifted = [pydicom.dcmread(tmp_path / "out" / name) for name in ("early.dcm", "late.dcm")]
    dates = [np.datetime64(f"{d.StudyDate[:4]}-{d.StudyDate[4:6]}-{d.StudyDate[6:]}") for d in shifted]
    assert (dates[1] - dates[0]).astype(int) == 55 and shifted[0].StudyDate != "20240115"
    assert shifted[0].PatientBirthDate != "19450302" and shifted[0].PatientAge == "079Y"
    assert shifted[0].LongitudinalTemporalInformationModified == "MODIFIED"


def test_refusals_are_clear(hospital, tmp_path):
    no_key = run(hospital, tmp_path / "out", key=None)
    assert no_key.exit_code == 2 and "no key" in no_key.output
    inside = run(hospital, hospital / "deid")
    assert inside.exit_code == 2 and "overlaps input" in inside.output
    headers_only = run(hospital, tmp_path / "headers", "--no-pixels")
    assert headers_only.exit_code == 1 and "BurnedInAnnotation is YES" in headers_only.output
    with pytest.raises(DeidentificationError, match="at least 16"):
        Deidentifier(b"short")


def test_image_without_a_scan_is_not_written(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    cv2.imwrite(str(source / "blank.png"), np.full((200, 300), 40, np.uint8))
    result = run(source, tmp_path / "out")
    assert result.exit_code == 1 and "no scan region found" in result.output
    assert not (tmp_path / "out" / "blank.png").exists()


def test_real_screens_lose_the_deepacsa_header_and_the_ge_date_line(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    pairs = {"muscle-us-deepacsa/rectus_img_55.tif": 64, "muscle-us-timtrack/dataset2/jumping/gastroc_jumping_048.png": 30}
    for relative in pairs:
        shutil.copy(real_file(relative), source / Path(relative).name)
    result = run(source, tmp_path / "out")
    assert result.exit_code == 0, result.output
    for relative, header_rows in pairs.items():
        original = cv2.imread(str(real_file(relative)))
        cleaned = cv2.imread(str(tmp_path / "out" / Path(relative).name))
        assert cleaned.shape == original.shape
        assert np.ptp(original[:header_rows]) > 60  # there was text (institution, date) ...
        assert cleaned[:header_rows].max() == 0  # ... and it is gone
        kept = np.all(cleaned == original, axis=2)
        assert kept.mean() > 0.4  # the scan itself is kept
