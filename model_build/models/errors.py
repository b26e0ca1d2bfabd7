"""Bad input ends a command with one clear line, never a traceback.

Every error a user can cause (a cohort, a bundle, a file, a value) has its own exception type
whose message already names the place and the fix; the commands print it and exit 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from edge_app.command_line import CliConsole, print_error
from edge_app.preprocess import PreprocessError
from model_build.cohort import CohortError, SchemaError
from model_build.models import InputError
from model_build.models.bundle import BundleError
from model_build.models.data import MediaReadError
from model_build.models.export import ExportError
from model_build.models.image import ImageWeightsError
from model_build.models.tabular import TabularInputError
from model_build.models.splits import TrainingError
from model_build.stats import StatsInputError

USER_ERRORS = (InputError, CohortError, SchemaError, BundleError, MediaReadError, ExportError, ImageWeightsError,
               TabularInputError, TrainingError, PreprocessError, StatsInputError)


@contextmanager
def reported_errors() -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as error:
        print_error(error, CliConsole(stderr=True))
        raise typer.Exit(code=1) from None
