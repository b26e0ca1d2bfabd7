"""The words on the screen, in one place: each problem with its fix, each call with the next
step, and why a rescan is needed. Short, in the team's words, never a bare number to interpret.
"""

from __future__ import annotations

# the quality gate's states as a banner: (what is wrong, what to do); {muscle} is the protocol's
# muscle being scanned, or "the thigh" without a protocol
PROBLEMS = {
    "ok": ("Good image", "Hold still: counting good frames"),
    "no_tissue": ("Probe lifted", "Place it on {muscle} with gel"),
    "frozen": ("Image frozen", "Unfreeze the scanner"),
    "transition": ("Moving", "Hold the probe still"),
    "no_region": ("No scan on screen", "Show the live image full screen on the scanner"),
    "no_signal": ("No video", "Check the scanner is on and its video cable"),
}

# the screen's call (sarco_core.screening): headline, what it means, the next step
CALLS = {
    "positive": ("Screen positive", "Refer for assessment",
                 "Confirm with grip strength, gait speed and muscle mass (AWGS 2019)."),
    "negative": ("Screen negative", "No referral from this screen",
                 "Nothing more today. Screen again as your programme schedules."),
    "borderline": ("Borderline", "Repeat the scan",
                   "Scan again now. Borderline twice: check grip strength and gait speed "
                   "(AWGS 2019)."),
    "rescan": ("Rescan needed", "No result from this scan", "Scan again: tap Scan again."),
}

# why frames did not count, as a rescan screen says it: (cause, fix)
SKIPPED = {
    "no_tissue": ("probe lifted", "keep it on the skin, with gel"),
    "frozen": ("image frozen", "unfreeze the scanner before scanning"),
    "transition": ("probe moving", "hold it still for a few seconds at each place"),
    "no_region": ("no scan on screen", "show the live image full screen"),
}

ERRORS = {
    "camera": ("Camera lost", "No video from the scanner for a few seconds.",
               "Check the video cable and that the scanner is on. The scan goes on when the "
               "video is back."),
    "model": ("Model refused", "The screening model cannot be used on this device.",
              "Do not screen. Call support and give them the line below."),
    "disk": ("Disk full", "Results cannot be saved on this device.",
             "Do not start a scan. Call support to free space."),
}


def problem(state: str, muscle: str | None) -> tuple[str, str]:
    title, fix = PROBLEMS.get(state, (state, ""))
    return title, fix.format(muscle=f"the {muscle}" if muscle else "the thigh")


def rescan_reasons(result: dict, limit: int = 2) -> list[str]:
    """The first line says how many frames were missing; then the commonest causes, each with
    its fix."""
    usable, needed = result.get("usable_frames", 0), result.get("min_usable_frames", 0)
    lines = [f"Only {usable} good frames of the {needed} needed."]
    skipped = sorted(((count, reason) for reason, count in (result.get("skipped") or {}).items()
                      if count), reverse=True)
    for count, reason in skipped[:limit]:
        cause, fix = SKIPPED.get(reason, (reason, ""))
        lines.append(f"{cause.capitalize()} in {count} frames: {fix}.")
    if len(lines) == 1:
        lines.append("The scan was too short: scan for at least a few seconds.")
    return lines


def muscle_summary(measured: dict | None) -> str | None:
    """A session's muscle measurements in one sentence (a result's ``measurements`` or the
    live summary): thickness (mm where the pixel size is known, else pixels), pennation angle,
    echo intensity and how many frames; None when the device does not measure."""
    if not measured:
        return None
    frames = measured.get("frames_measured", 0)
    if not frames:
        return "Muscle not measured: no frame showed both aponeuroses."
    mm, px = measured.get("muscle_thickness_mm"), measured.get("muscle_thickness_px")
    parts = [f"thickness {mm:.1f} mm" if mm is not None else f"thickness {px:.0f} px"]
    if measured.get("pennation_deg") is not None:
        parts.append(f"pennation {measured['pennation_deg']:.0f}\N{DEGREE SIGN}")
    if measured.get("echo_intensity") is not None:
        parts.append(f"echo {measured['echo_intensity']:.0f}")
    return f"Muscle: {', '.join(parts)} ({frames} frame{'s' if frames != 1 else ''})"


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
