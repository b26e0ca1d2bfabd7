"""Still images and scanner videos of one participant, drawn from its image latents.

The participant's three image latents (atrophy, echo, blur) map monotonically onto each
muscle's rendering parameters: more atrophy gives a thinner muscle and flatter fascicles,
more echo a brighter muscle, more blur fainter striations. Everything else that changes the
picture (sex, subcutaneous fat, probe pressure and placement, the scanner, speckle) is drawn
independently of the label and of every latent, so the images hold no information the image
latents lack and the image oracle is an upper bound for any image model.

One participant is one job with its own random stream (a child of the cohort's SeedSequence),
so the files are the same whatever the number of worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.special import expit

from model_build.synth.profiles import scanner
from model_build.synth.render import (
    MuscleLatent,
    render_still,
    write_scan_video,
    write_still,
    write_us_dicom,
)

DICOM_SHARE = 0.2
"""Share of still images exported as ultrasound DICOM instead of the scanner's usual format."""

VIDEO_MUSCLE = "rectus_femoris"
VIDEO_SECONDS = (3.0, 4.0)  # one muscle per recording: put the probe down, slide, freeze, lift

_IMAGE_COUNT_PROBABILITIES = (0.25, 0.45, 0.30)  # 1, 2 or 3 stills


@dataclass(frozen=True)
class _MuscleAnatomy:
    """Typical values for an older adult of each sex: (female, male)."""

    thickness_mm: tuple[float, float]
    fat_mm: tuple[float, float]
    pennation_deg: float
    echo_offset: float  # logit shift: the calf is a little brighter than the thigh


ANATOMY = {
    "rectus_femoris": _MuscleAnatomy((17.0, 20.0), (9.0, 6.0), 12.0, 0.0),
    "gastrocnemius": _MuscleAnatomy((15.0, 18.0), (6.0, 4.0), 18.0, 0.15),
}


@dataclass(frozen=True)
class MediaJob:
    """What one participant's media need: everything is picklable for a process pool."""

    participant_id: str
    cohort: str
    center: str
    sex: str
    z_image: tuple[float, float, float]  # atrophy, echo, blur
    seed: np.random.SeedSequence
    with_video: bool
    root: Path  # the cohort folder being written


@dataclass(frozen=True)
class _ParticipantMuscle:
    """One muscle of one participant: latent effect plus that person's anatomy (nuisance)."""

    muscle: str
    thickness_mm: float
    fat_mm: float
    echo_logit: float
    contrast_logit: float
    pennation_deg: float

    def view(self, rng: np.random.Generator) -> MuscleLatent:
        """One acquisition: probe pressure and placement move every value a little."""
        return MuscleLatent(
            muscle=self.muscle,
            muscle_thickness_mm=float(np.clip(self.thickness_mm * np.exp(rng.normal(0, 0.04)), 8.0, 35.0)),
            subcutaneous_fat_mm=float(np.clip(self.fat_mm * np.exp(rng.normal(0, 0.08)), 2.0, 25.0)),
            echo_intensity=float(expit(self.echo_logit + rng.normal(0, 0.1))),
            fascicle_contrast=float(expit(self.contrast_logit + rng.normal(0, 0.1))),
            pennation_deg=float(np.clip(self.pennation_deg * np.exp(rng.normal(0, 0.05)), 8.0, 25.0)),
        )


def participant_muscle(muscle: str, sex: str, z_image: tuple[float, float, float],
                       rng: np.random.Generator) -> _ParticipantMuscle:
    """Map the image latents (monotone) and this person's anatomy (noise) onto one muscle."""
    atrophy, echo, blur = z_image
    anatomy = ANATOMY[muscle]
    male = int(sex == "M")
    return _ParticipantMuscle(
        muscle=muscle,
        thickness_mm=anatomy.thickness_mm[male] * np.exp(-0.2 * atrophy + rng.normal(0, 0.06)),
        fat_mm=anatomy.fat_mm[male] * np.exp(rng.normal(0, 0.35)),
        echo_logit=-0.6 + anatomy.echo_offset + 0.8 * echo + rng.normal(0, 0.15),
        contrast_logit=1.0 - 0.9 * blur + rng.normal(0, 0.15),
        pennation_deg=anatomy.pennation_deg * np.exp(-0.08 * atrophy + rng.normal(0, 0.06)),
    )


def still_plan(rng: np.random.Generator) -> list[tuple[str, str]]:
    """(muscle, side) of each still: 1-3 images, rectus femoris first, calf and other thigh after."""
    side = str(rng.choice(["L", "R"]))
    other = "R" if side == "L" else "L"
    count = int(rng.choice(len(_IMAGE_COUNT_PROBABILITIES), p=_IMAGE_COUNT_PROBABILITIES)) + 1
    if count == 1:
        return [("gastrocnemius" if rng.random() < 0.25 else "rectus_femoris", side)]
    second = ("gastrocnemius", side) if rng.random() < 0.7 else ("rectus_femoris", other)
    if count == 2:
        return [("rectus_femoris", side), second]
    return [("rectus_femoris", side), ("gastrocnemius", side), ("rectus_femoris", other)]


class ParticipantMedia(NamedTuple):
    """The rows one participant adds to images.csv, videos.csv and truth_media.csv."""

    images: list[dict]
    videos: list[dict]
    truth: list[dict]


def truth_row(participant_id: str, path: Path, latent: MuscleLatent) -> dict:
    """truth_media.csv's row of one file: the muscle exactly as it was rendered (that view's
    thickness, pennation and echo latent), so measurements can be checked against it. The echo
    is the generator's 0-1 echogenicity (it sets the muscle's level in dB), not a grey level."""
    return {"participant_id": participant_id, "path": path.as_posix(), "muscle": latent.muscle,
            "muscle_thickness_mm": latent.muscle_thickness_mm, "pennation_deg": latent.pennation_deg,
            "echo_intensity_latent": latent.echo_intensity, "fascicle_contrast": latent.fascicle_contrast,
            "subcutaneous_fat_mm": latent.subcutaneous_fat_mm}


def render_participant(job: MediaJob) -> ParticipantMedia:
    """Write this participant's stills (and video) under ``job.root``; return their CSV rows."""
    rng = np.random.default_rng(job.seed)
    profile = scanner(job.center)
    muscles: dict[str, _ParticipantMuscle] = {}

    def muscle_of(name: str) -> _ParticipantMuscle:
        if name not in muscles:
            muscles[name] = participant_muscle(name, job.sex, job.z_image, rng)
        return muscles[name]

    image_rows, truth_rows = [], []
    for index, (muscle, side) in enumerate(still_plan(rng), start=1):
        view = muscle_of(muscle).view(rng)
        image = render_still(view, profile, rng)
        suffix = ".dcm" if rng.random() < DICOM_SHARE else profile.still_suffix
        relative = Path("images") / job.cohort / f"{job.participant_id}_{index}_{muscle}_{side}{suffix}"
        path = job.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".dcm":
            write_us_dicom(path, image, job.participant_id, rng)
        else:
            write_still(path, image, jpeg_quality=profile.jpeg_quality)
        image_rows.append({
            "participant_id": job.participant_id, "path": relative.as_posix(), "muscle": muscle,
            "view": "longitudinal", "side": side, "scanner": profile.name,
            "mm_per_pixel": round(float(image.mm_per_pixel), 5), "depth_mm": round(float(image.depth_mm), 1),
        })
        truth_rows.append(truth_row(job.participant_id, relative, view))

    video_rows = []
    if job.with_video:
        relative = Path("videos") / job.cohort / f"{job.participant_id}_{VIDEO_MUSCLE}.mp4"
        path = job.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        seconds = float(rng.uniform(*VIDEO_SECONDS))
        view = muscle_of(VIDEO_MUSCLE).view(rng)
        video = write_scan_video(path, [view], profile, rng, seconds=seconds)
        video_rows.append({
            "participant_id": job.participant_id, "path": relative.as_posix(), "muscle": VIDEO_MUSCLE,
            "scanner": profile.name, "mm_per_pixel": round(float(video.mm_per_pixel), 5),
            "depth_mm": round(float(video.depth_mm), 1),
        })
        truth_rows.append(truth_row(job.participant_id, relative, view))
    return ParticipantMedia(image_rows, video_rows, truth_rows)
