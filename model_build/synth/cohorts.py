"""Which cohorts a synthetic size holds: names, centers, participant and positive counts.

The `paper` size copies the study (development 357 with 101 sarcopenia, external 145 with 68,
proof of concept 82 with 19). `small` and `large` keep each cohort's prevalence, so their
positive counts are derived, never typed in. `consortium` splits the study's development
cohort over six sites, each its own center and cohort folder (issue #19).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CohortSpec:
    """One cohort: its own center (so its own scanner) and an exact number of positives."""

    name: str
    id_prefix: str     # participant ids are <prefix><4 digits>, e.g. D0001
    center: str        # a center of model_build.synth.profiles.scanner
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

CONSORTIUM_SITES = (
    CohortSpec("development", "DA", "A", 110, 30),  # the study's cart scanner, the largest site
    CohortSpec("development", "DD", "D", 80, 28),
    CohortSpec("development", "DE", "E", 60, 12),
    CohortSpec("development", "DF", "F", 50, 17),
    CohortSpec("development", "DG", "G", 32, 6),
    CohortSpec("development", "DH", "H", 25, 8),
)
"""The study's 357 development participants (101 positive) spread unevenly over six sites, with
prevalences from 19 % to 35 % (case mix). Every site's cohort is `development`, what training
reads; the id prefixes keep participant ids unique across the consortium."""

SIZES: dict[str, tuple[CohortSpec, ...]] = {
    "small": (_DEVELOPMENT.resized(30), _EXTERNAL.resized(18), _POC.resized(12)),
    "paper": PAPER,
    "large": (_DEVELOPMENT, _EXTERNAL.resized(2000), _POC.resized(500)),
    "consortium": (*CONSORTIUM_SITES, _EXTERNAL, _POC),
}
"""`small` (~60, for tests), `paper` (the study), `large` (precise oracle benchmarks),
`consortium` (federated training: six development sites and the study's evaluation cohorts)."""

CONSORTIUM = "consortium"
EVALUATION_FOLDER = "evaluation"


def cohort_folder(size: str, spec: CohortSpec) -> str:
    """Where a size writes a cohort, relative to OUT: OUT itself ("") except in `consortium`,
    whose development sites go to sites/<center> and the other cohorts to evaluation."""
    if size != CONSORTIUM:
        return ""
    return f"sites/{spec.center}" if spec.name == "development" else EVALUATION_FOLDER

MISSING_FRACTION = 86 / 357
"""Share of participants with at least one missing clinical or lab value in the study."""

WHOLE_LAB_MISSING_SHARE = 0.2
"""Of the participants with missing values, the share who lack the whole lab table (no test
ordered), so that evidential fusion's vacuous opinion is exercised (17 of 357 in `paper`
development). The clinical table is never wholly missing: age and sex are recorded for everyone,
and the AWGS 2019 criteria need sex."""
