"""Which cohorts a synthetic size holds: names, centers, participant and positive counts.

The `paper` size copies the study (development 357 with 101 sarcopenia, external 145 with 68,
proof of concept 82 with 19). The other sizes keep each cohort's prevalence, so every
positive count except the paper's is derived, never typed in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CohortSpec:
    """One cohort: its own center (so its own scanner) and an exact number of positives."""

    name: str
    id_prefix: str     # participant ids are <prefix><4 digits>, e.g. D0001
    center: str        # a key of model_build.synth.render.PROFILES
    n_participants: int
    n_positive: int

    @property
    def prevalence(self) -> float:
        return self.n_positive / self.n_participants

    def resized(self, n_participants: int) -> CohortSpec:
        """Same cohort and prevalence with another size (positives rounded to the nearest)."""
        return CohortSpec(self.name, self.id_prefix, self.center, n_participants,
                          round(n_participants * self.prevalence))


PAPER = (
    CohortSpec("development", "D", "A", 357, 101),
    CohortSpec("external", "E", "B", 145, 68),
    CohortSpec("poc", "P", "C", 82, 19),
)
_DEVELOPMENT, _EXTERNAL, _POC = PAPER

SIZES: dict[str, tuple[CohortSpec, ...]] = {
    "small": (_DEVELOPMENT.resized(30), _EXTERNAL.resized(18), _POC.resized(12)),
    "paper": PAPER,
    "large": (_DEVELOPMENT, _EXTERNAL.resized(2000), _POC.resized(500)),
}
"""`small` (~60, for tests), `paper` (the study), `large` (precise oracle benchmarks)."""

MISSING_FRACTION = 86 / 357
"""Share of participants with at least one missing clinical or lab value in the study."""

WHOLE_LAB_MISSING_SHARE = 0.2
"""Of the participants with missing values, the share who lack the whole lab table (no test
ordered), so that evidential fusion's vacuous opinion is exercised (17 of 357 in `paper`
development). The clinical table is never wholly missing: age and sex are recorded for everyone,
and the AWGS 2019 criteria need sex."""
