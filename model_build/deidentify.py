"""De-identify ultrasound so a cohort can leave the hospital: DICOM headers and pixels, images.

DICOM headers follow the DICOM PS3.15 Basic Application Confidentiality Profile (the
attributes below, plus generic rules so nothing named in a nested sequence slips through):

- the patient's name and id become one keyed pseudonym (HMAC-SHA256 of the id with a secret
  key: the same patient gets the same pseudonym in every run with the same key, and nobody
  without the key can recompute or reverse it);
- every person name (PN) elsewhere is emptied; institution, addresses, device serial
  numbers, free-text descriptions and comments are removed;
- every dataset-specific UID is replaced by ``2.25.<HMAC of the UID>``, so study, series and
  instance references stay consistent within and across runs with the same key (well-known
  DICOM UIDs such as SOP classes and transfer syntaxes are kept);
- dates and times are emptied, or with ``shift_dates`` moved by a per-patient offset so
  intervals survive (the Retain Longitudinal Temporal Information with Modified Dates option);
- private tags, overlays and curves are removed; PatientIdentityRemoved, the method and its
  code sequence are recorded.

Pixels (the Clean Pixel Data option): everything outside the scan region is blanked and
burned-in text and coloured markers inside it are masked. A file whose scan region cannot be
found is not written: de-identification fails closed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

from model_build.dicom import DicomError, display_frame, read_header
from sarco_core.errors import SarcoError
from sarco_core.files import atomic_path
from sarco_core.imaging import ScanRegionNotFound, blank_outside, find_scan_region, find_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
DICOM_SUFFIXES = {".dcm", ".dicom", ""}
MIN_KEY_BYTES = 16
DATE_SHIFT_DAYS = 365  # a patient's dates move by up to this many days either way

# PS3.15 Table E.1-1 actions for the attributes ultrasound objects carry. Attributes of VR PN,
# DA, DT, TM and UI are handled by generic rules and are not repeated here.
REMOVE = (
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "StationName", "DeviceSerialNumber", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "PhysiciansOfRecordIdentificationSequence",
    "PerformingPhysicianIdentificationSequence", "PhysiciansReadingStudyIdentificationSequence",
    "OperatorIdentificationSequence", "RequestingService", "PatientAddress", "PatientTelephoneNumbers",
    "OtherPatientIDs", "OtherPatientIDsSequence", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "MilitaryRank", "BranchOfService", "MedicalRecordLocator", "Occupation", "AdditionalPatientHistory",
    "PatientComments", "PatientReligiousPreference", "CountryOfResidence", "RegionOfResidence",
    "MedicalAlerts", "Allergies", "PatientInsurancePlanCodeSequence", "ResponsiblePerson",
    "ResponsibleOrganization", "StudyDescription", "SeriesDescription", "ImageComments",
    "RequestedProcedureDescription", "PerformedProcedureStepDescription", "PerformedProcedureStepID",
    "RequestedProcedureID", "ScheduledProcedureStepID", "ProtocolName", "DerivationDescription",
    "FrameComments", "ReasonForStudy", "ReasonForTheRequestedProcedure", "RequestAttributesSequence",
    "ReferencedPatientSequence", "ReferencedStudySequence", "ReferencedPerformedProcedureStepSequence",
    "AdmissionID", "AdmittingDiagnosesDescription", "DischargeDiagnosisDescription", "VisitComments",
    "ServiceEpisodeID", "ServiceEpisodeDescription", "TextComments", "AcquisitionComments",
    "PatientState", "SpecialNeeds", "InterpretationText", "InterpretationDiagnosisDescription",
    "OperatorsName", "PerformingPhysicianName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    "RequestingPhysician", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "PatientBirthTime",
)
EMPTY = ("AccessionNumber", "StudyID", "ReferringPhysicianName")  # type 2: present but empty
PATIENT_CHARACTERISTICS = ("PatientSex", "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup",
                           "SmokingStatus", "PregnancyStatus")
# DICOM codes (CID 7050) recorded in DeidentificationMethodCodeSequence
CODE_BASIC, CODE_CLEAN_PIXELS = "113100", "113101"
CODE_MODIFIED_DATES, CODE_PATIENT_CHARACTERISTICS = "113107", "113108"
_CODE_MEANINGS = {
    CODE_BASIC: "Basic Application Confidentiality Profile",
    CODE_CLEAN_PIXELS: "Clean Pixel Data Option",
    CODE_MODIFIED_DATES: "Retain Longitudinal Temporal Information Modified Dates Option",
    CODE_PATIENT_CHARACTERISTICS: "Retain Patient Characteristics Option",
}


class DeidentificationError(SarcoError, ValueError):
    """A file or a request that cannot be de-identified safely (message names it, with a fix)."""


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file."""

    source: Path
    output: Path | None
    kind: str  # "dicom", "image" or "skipped"
    note: str = ""


class Deidentifier:
    """Keyed, deterministic de-identification: same key and input give the same output."""

    def __init__(self, key: bytes, *, shift_dates: bool = False, keep_patient_characteristics: bool = False,
                 clean_pixels: bool = True) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise DeidentificationError(
                f"the de-identification key has {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes, "
                "e.g. python -c \"import secrets; print(secrets.token_hex(32))\" > deid.key")
        self._key = key
        self.shift_dates = shift_dates
        self.keep_patient_characteristics = keep_patient_characteristics
        self.clean_pixels = clean_pixels

    # ---- keyed values -------------------------------------------------------------------
    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()

    def pseudonym(self, patient_id: str) -> str:
        """Pseudonymous participant id for a hospital patient id."""
        return "P" + self._digest("patient", patient_id.strip()).hex()[:12].upper()

    def uid(self, uid: str) -> str:
        """Replacement UID (2.25 + 128-bit integer, 39 digits at most: a valid UID)."""
        return "2.25." + str(int.from_bytes(self._digest("uid", uid.strip())[:16], "big"))

    def date_shift(self, patient_id: str) -> dt.timedelta:
        """Per-patient offset in whole days, never zero (then dates would survive unchanged)."""
        raw = int.from_bytes(self._digest("date", patient_id.strip())[:4], "big")
        days = raw % (2 * DATE_SHIFT_DAYS) - DATE_SHIFT_DAYS
        return dt.timedelta(days=days if days != 0 else DATE_SHIFT_DAYS)

    # ---- DICOM --------------------------------------------------------------------------
    def dataset(self, ds: Dataset, pixels_cleaned: bool) -> Dataset:
        """De-identify the header of ``ds`` in place (and return it)."""
        patient_id = str(ds.get("PatientID", "") or "")
        pseudonym = self.pseudonym(patient_id or str(ds.get("PatientName", "") or "unknown"))
        shift = self.date_shift(patient_id) if self.shift_dates else None
        ds.remove_private_tags()
        for keyword in REMOVE + (() if self.keep_patient_characteristics else PATIENT_CHARACTERISTICS[1:]):
            _remove_everywhere(ds, keyword)
        for keyword in EMPTY + (() if self.keep_patient_characteristics else ("PatientSex",)):
            _empty_everywhere(ds, keyword)
        for tag in [element.tag for element in ds if element.tag.group & 0xFF00 in (0x5000, 0x6000)]:
            del ds[tag]  # curves and overlays can carry burned-in style annotations
        ds.walk(lambda dataset, element: self._generic(element, shift))
        if "MediaStorageSOPInstanceUID" in ds.file_meta:
            ds.file_meta.MediaStorageSOPInstanceUID = self.uid(ds.file_meta.MediaStorageSOPInstanceUID)
        ds.PatientName = pseudonym
        ds.PatientID = pseudonym
        ds.PatientIdentityRemoved = "YES"
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if shift else "REMOVED"
        codes = [CODE_BASIC]
        if pixels_cleaned:
            codes.append(CODE_CLEAN_PIXELS)
            ds.BurnedInAnnotation = "NO"
        if shift:
            codes.append(CODE_MODIFIED_DATES)
        if self.keep_patient_characteristics:
            codes.append(CODE_PATIENT_CHARACTERISTICS)
        ds.DeidentificationMethod = ["sarco deidentify (DICOM PS3.15)"] + [_CODE_MEANINGS[code] for code in codes]
        ds.DeidentificationMethodCodeSequence = Sequence([_code(code) for code in codes])
        return ds

    def _generic(self, element: DataElement, shift: dt.timedelta | None) -> None:
        if element.value is None or element.value == "":
            return
        if element.VR == "PN" and element.keyword != "PatientName":
            element.value = ""
        elif element.VR == "UI":
            element.value = _map_values(element.value, lambda uid: uid if uid in UID_dictionary else self.uid(uid))
        elif element.VR in ("DA", "DT"):
            element.value = "" if shift is None else _map_values(element.value, lambda value: _shifted(value, shift))
        elif element.VR == "TM" and shift is None:
            element.value = ""

    def dicom_file(self, source: Path, target: Path) -> FileResult:
        """De-identify one DICOM file into ``target`` (written atomically)."""
        dataset, header = read_header(source)
        note = ""
        if self.clean_pixels:
            note = self._clean_dicom_pixels(dataset, header)
        elif header.burned_in_annotation:
            raise DeidentificationError(f"{source}: BurnedInAnnotation is YES and pixel cleaning is off; "
                                        "run without --no-pixels, or exclude the file")
        self.dataset(dataset, pixels_cleaned=self.clean_pixels)
        _write_atomically(target, lambda handle: dataset.save_as(handle, enforce_file_format=True))
        return FileResult(source, target, "dicom", note)

    def _clean_dicom_pixels(self, dataset: Dataset, header) -> str:
        frames = np.stack([display_frame(dataset, raw) for raw in pydicom.pixels.iter_pixels(dataset)])
        region = header.scan_region
        if region is not None:
            box, how = region.box, "scan box from the DICOM ultrasound regions"
        else:
            box, how = _detect_box(frames, header.path), "scan box detected"
        cleaned = clean_frames(frames, box)
        for keyword in ("WindowCenter", "WindowWidth", "VOILUTSequence", "ModalityLUTSequence", "RescaleSlope",
                        "RescaleIntercept", "RescaleType", "ICCProfile"):
            if keyword in dataset:
                delattr(dataset, keyword)
        for tag in [element.tag for element in dataset if element.keyword.startswith(("RedPalette", "GreenPalette",
                                                                                      "BluePalette"))]:
            del dataset[tag]
        photometric = "RGB" if cleaned.ndim == 4 else "MONOCHROME2"
        dataset.set_pixel_data(cleaned if header.frames > 1 else cleaned[0], photometric, 8,
                               generate_instance_uid=False)
        return how

    # ---- images -------------------------------------------------------------------------
    def image_file(self, source: Path, target: Path) -> FileResult:
        """Blank everything outside the scan region of an image and mask text inside it."""
        pixels = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
        if pixels is None:
            raise DeidentificationError(f"{source}: cannot be read as an image; convert it to PNG")
        if pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[..., :3]  # alpha carries nothing for a scan; blanked pixels stay opaque
        if not self.clean_pixels:
            raise DeidentificationError(f"{source}: an image has no header to clean; with --no-pixels it "
                                        "would be copied unchanged, so it is refused")
        cleaned = clean_frames(pixels[None], _detect_box(pixels[None], source))[0]
        ok, encoded = cv2.imencode(source.suffix.lower() or ".png", cleaned)
        if not ok:
            raise DeidentificationError(f"{source}: OpenCV cannot encode {source.suffix}; convert it to PNG")
        _write_atomically(target, lambda handle: handle.write(encoded.tobytes()))
        return FileResult(source, target, "image", "metadata dropped, scan box detected")


def clean_frames(frames: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Frames with everything outside ``box`` blanked and text and markers inside masked.

    Burned-in text is static over a cine, so it is searched on the first, middle and last
    frame and the union is masked on every frame.
    """
    marks = None
    for index in sorted({0, len(frames) // 2, len(frames) - 1}):
        found = find_text(frames[index], box).mask
        marks = found if marks is None else marks | found
    cleaned = np.stack([blank_outside(frame, box) for frame in frames])
    cleaned[:, marks] = 0
    return cleaned


def _detect_box(frames: np.ndarray, source: Path) -> tuple[int, int, int, int]:
    for frame in frames[:: max(1, len(frames) // 5)]:
        try:
            return find_scan_region(frame)
        except ScanRegionNotFound:
            continue
    raise DeidentificationError(f"{source}: no scan region found, so its pixels cannot be cleaned safely; "
                                "crop the image to the scan by hand or exclude it")


def deidentify_tree(source: Path, target: Path, deidentifier: Deidentifier,
                    on_file: Callable[[FileResult | DeidentificationError], None] | None = None
                    ) -> tuple[list[FileResult], list[DeidentificationError]]:
    """De-identify a file or every image and DICOM file under a folder into ``target``.

    The output mirrors the input's relative paths. ``source`` is only ever read. Other files
    (spreadsheets, reports, videos) are skipped: their content is not known to be safe.
    """
    source, target = source.resolve(), target.resolve()
    if not source.exists():
        raise DeidentificationError(f"{source} does not exist")
    if target == source or source in target.parents or target in source.parents:
        raise DeidentificationError(f"output {target} overlaps input {source}; choose an output folder "
                                    "outside the input (the input is never written to)")
    pairs = [(source, target)] if source.is_file() else [
        (path, target / path.relative_to(source)) for path in sorted(source.rglob("*")) if path.is_file()]
    results, errors = [], []
    for path, output in pairs:
        try:
            result = _one_file(deidentifier, path, output)
        except (DeidentificationError, DicomError) as error:
            result = DeidentificationError(str(error))
        (errors if isinstance(result, DeidentificationError) else results).append(result)
        if on_file is not None:
            on_file(result)
    return results, errors


def _one_file(deidentifier: Deidentifier, path: Path, output: Path) -> FileResult:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return deidentifier.image_file(path, output)
    if suffix in DICOM_SUFFIXES or _has_dicom_preamble(path):
        return deidentifier.dicom_file(path, output)
    return FileResult(path, None, "skipped", "not an image or DICOM file")


def _has_dicom_preamble(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(132)[128:] == b"DICM"


def _write_atomically(target: Path, write: Callable) -> None:
    """Write through ``write(handle)`` atomically (sarco_core.files.atomic_path)."""
    with atomic_path(target) as temporary, temporary.open("wb") as handle:
        write(handle)


def _remove_everywhere(ds: Dataset, keyword: str) -> None:
    for dataset in _datasets(ds):
        if keyword in dataset:
            delattr(dataset, keyword)


def _empty_everywhere(ds: Dataset, keyword: str) -> None:
    for dataset in _datasets(ds):
        if keyword in dataset:
            dataset[keyword].value = ""


def _datasets(ds: Dataset):
    """``ds`` and every dataset nested in its sequences."""
    yield ds
    for element in list(ds):
        if element.VR == "SQ":
            for item in element.value:
                yield from _datasets(item)


def _map_values(value, change: Callable[[str], str]):
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [change(str(item)) for item in value]
    return change(str(value))


def _shifted(value: str, shift: dt.timedelta) -> str:
    """A DA (YYYYMMDD) or DT (YYYYMMDDhhmmss...) value moved by ``shift``; unparsable -> empty."""
    try:
        day = dt.datetime.strptime(value[:8], "%Y%m%d") + shift
    except ValueError:
        return ""
    return day.strftime("%Y%m%d") + value[8:]


def _code(value: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", _CODE_MEANINGS[value]
    return item
