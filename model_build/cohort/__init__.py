"""The cohort folder format (docs/cohort-format.md): loading and validation."""

from model_build.cohort.findings import CohortError, CohortFinding, ValidationReport
from model_build.cohort.loader import Cohort, load_cohort
from model_build.cohort.schema import ColumnSpec, Schema, SchemaError, load_schema
from model_build.cohort.validate import validate_cohort

__all__ = [
    "Cohort",
    "CohortError",
    "CohortFinding",
    "ColumnSpec",
    "Schema",
    "SchemaError",
    "ValidationReport",
    "load_cohort",
    "load_schema",
    "validate_cohort",
]
