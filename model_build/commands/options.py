"""Options several `sarco` commands take, written once so that their names, choices and help agree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

DEVICES = ("auto", "cpu", "cuda")

Device = Annotated[Literal[DEVICES], typer.Option(
    help="Where torch runs: auto (the GPU if one is visible), cpu or cuda.")]
Threads = Annotated[Optional[int], typer.Option(min=1, help="CPU threads (default: all cores).")]
StudyThreads = Annotated[Optional[int], typer.Option(
    min=1, help="Torch threads (default: 2 on every machine, so machines agree; another count changes the "
                "trainings' float sums, and the figures move within docs/study.md's bounds).")]
Bundle = Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Model bundle folder.")]

# What `sarco` exits with when the input cannot be used (any SarcoError, reported by
# sarco_core.cli.reported_errors): 1, its documented code.
USER_ERROR = 1
