"""How numbers read in the report, its CSV tables and the model card (one place, so they agree).

AUCs to three decimals as the SARCO paper gives them, proportions as percentages (with 95% Wilson
intervals where they estimate a rate), P values the way journals print them (P<0.001, P=0.019).
Missing values read "n/a", never "nan".
"""

from __future__ import annotations

import math

from model_build.stats import wilson_proportion

MISSING = "n/a"
NOT_ESTIMABLE = "not estimable"
MODALITY_NAMES = {"image": "muscle ultrasound images", "clinical": "clinical data", "lab": "laboratory values"}
CLASS_NAMES = {"sarcopenia": "sarcopenia", "non_sarcopenia": "no sarcopenia"}


def _absent(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def format_p(p: float | None) -> str:
    """``<0.001``, ``0.019``, ``>0.999``; the P value alone, as it stands in a table cell."""
    if _absent(p):
        return MISSING
    if p < 0.001:
        return "<0.001"
    if p > 0.999:
        return ">0.999"
    return f"{p:.3f}"


def p_phrase(p: float | None) -> str:
    """``P<0.001`` or ``P=0.019``, for running text."""
    text = format_p(p)
    return f"P {text}" if text == MISSING else f"P{text}" if text[0] in "<>" else f"P={text}"


def format_number(value: float | None, decimals: int = 3, signed: bool = False) -> str:
    if _absent(value):
        return MISSING
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def format_interval(interval: list[float] | None, decimals: int = 3) -> str:
    """``0.781 to 0.873``; ``not estimable`` for a zero-width interval: DeLong's variance is 0 when
    every case is ranked above (or below) every non-case, and an AUC of 1.000 (1.000 to 1.000) from
    three cases would claim a certainty the data cannot give."""
    if interval is None:
        return MISSING
    if interval[0] == interval[1]:
        return NOT_ESTIMABLE
    return f"{format_number(interval[0], decimals)} to {format_number(interval[1], decimals)}"


def format_estimate(value: float | None, interval: list[float] | None, decimals: int = 3,
                    signed: bool = False) -> str:
    """``0.827 (0.781 to 0.873)``; the bare estimate when no interval could be computed."""
    if _absent(value):
        return MISSING
    estimate = format_number(value, decimals, signed)
    if interval is None:
        return f"{estimate} (no CI)"
    spread = format_interval(interval, decimals)
    return f"{estimate} (CI {spread})" if spread == NOT_ESTIMABLE else f"{estimate} ({spread})"


def format_percent(value: float | None, decimals: int = 1) -> str:
    return MISSING if _absent(value) else f"{100 * value:.{decimals}f}%"


def format_proportion(successes: int, total: int) -> str:
    """``75.0% (40.9 to 92.9)``: the share with its 95% Wilson interval, in percent (n/a for 0 of 0)."""
    share = wilson_proportion(successes, total)
    if share.estimate is None:
        return MISSING
    return f"{format_percent(share.estimate)} ({100 * share.lower:.1f} to {100 * share.upper:.1f})"


def format_count(count: int, total: int) -> str:
    """``12 (40.0%)``."""
    return f"{count} ({format_percent(count / total) if total else MISSING})"


def model_title(name: str) -> str:
    """``image+lab`` -> ``image+lab (muscle ultrasound images + laboratory values)``."""
    return f"{name} ({' + '.join(MODALITY_NAMES.get(part, part) for part in name.split('+'))})"
