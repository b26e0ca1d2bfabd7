"""The SARCO study design run end to end (docs/study.md). Only constants live here, so that
the CLI can offer them as choices without importing torch."""

SELECTION_RULES = ("fewest-not-worse", "non-inferior", "best")
THRESHOLD_RULES = ("youden", "sensitivity", "specificity", "cost")
TUNING_RULES = ("one-se", "best")
