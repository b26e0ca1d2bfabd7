"""The cohort folder format (docs/cohort-format.md): loading and validation."""

from model_build.cohort.schema import ColumnSpec, Schema, SchemaError, load_schema

__all__ = ["ColumnSpec", "Schema", "SchemaError", "load_schema"]
