"""Render times and file sizes of the synthetic images and videos (model_build.synth.render).

Targets (foundation issue): a still under 50 ms and a 5 s video under 1.5 s of CPU, files of a
few MB at most; the paper-size cohort (584 participants, 1-3 stills and one video each) is
generated on 2 cores. CPU time (process_time, all threads) is reported beside wall time
because other work on a shared machine inflates wall time; the fastest run is printed beside
the median, as it is the least disturbed by other processes.

    .venv/bin/python benchmarks/bench_synth_render.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from model_build.synth.render import (
    PROFILES,
    MuscleLatent,
    render_still,
    write_scan_video,
    write_still,
    write_us_dicom,
)

LATENTS = (
    MuscleLatent("rectus_femoris", 22.0, 9.0, 0.25, 0.8, 14.0),
    MuscleLatent("gastrocnemius", 14.0, 6.0, 0.5, 0.3, 20.0),
)


def _timed(function, *args):
    cpu, wall = time.process_time(), time.perf_counter()
    result = function(*args)
    return result, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="stills and videos per profile")
    repeats = parser.parse_args().repeats
    render_still(LATENTS[0], PROFILES["A"], np.random.default_rng(0))  # warm-up (imports, allocator)
    print(f"{'profile':9} {'still cpu ms (min/med)':>22} {'wall ms':>8} {'file kB':>8} {'dicom kB':>9} "
          f"{'video cpu s (min/med)':>21} {'wall s':>7} {'frames':>6} {'video MB':>9}")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        for code, profile in PROFILES.items():
            still_cpu, still_wall, still_kb, dicom_kb = [], [], [], []
            for i in range(repeats):
                image, cpu, wall = _timed(render_still, LATENTS[i % 2], profile, np.random.default_rng(i))
                still_cpu.append(cpu)
                still_wall.append(wall)
                still_path = Path(folder) / f"{code}{i}{profile.still_suffix}"
                write_still(still_path, image, jpeg_quality=profile.jpeg_quality)
                still_kb.append(still_path.stat().st_size / 1e3)
                dicom_path = Path(folder) / f"{code}{i}.dcm"
                write_us_dicom(dicom_path, image, f"S{i:04d}", np.random.default_rng(i))
                dicom_kb.append(dicom_path.stat().st_size / 1e3)
            video_cpu, video_wall, video_mb = [], [], []
            for i in range(max(2, repeats // 2)):
                path = Path(folder) / f"{code}{i}.mp4"
                info, cpu, wall = _timed(write_scan_video, path, LATENTS, profile, np.random.default_rng(i))
                video_cpu.append(cpu)
                video_wall.append(wall)
                video_mb.append(path.stat().st_size / 1e6)
            print(
                f"{code + ' ' + profile.layout:9} {1e3 * min(still_cpu):11.1f} /{1e3 * np.median(still_cpu):8.1f} "
                f"{1e3 * np.median(still_wall):8.1f} {np.median(still_kb):8.0f} {np.median(dicom_kb):9.0f} "
                f"{min(video_cpu):10.2f} /{np.median(video_cpu):8.2f} {np.median(video_wall):7.2f} "
                f"{info.n_frames:6d} {np.median(video_mb):9.2f}"
            )


if __name__ == "__main__":
    main()
