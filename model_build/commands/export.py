"""`sarco export MODEL`: (re)write a bundle's model.onnx from its weights, check it, re-sign.

Use it after moving a bundle between sarco versions or when model.onnx was lost; the graph is
checked for deployable operators and for parity with PyTorch, then the manifest is rewritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    """Add `sarco export` to the CLI."""

    @app.command("export")
    def export(
        model: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Model bundle folder.")],
    ) -> None:
        """Write MODEL/model.onnx (opset 17, dynamic batch) and MODEL/MANIFEST.sha256."""
        from model_build.models.errors import reported_errors
        from model_build.models.export import export_bundle

        with reported_errors():
            gap, operators = export_bundle(model)
        Console().print(f"{model / 'model.onnx'}: operators {', '.join(operators)}; "
                        f"ONNX Runtime vs PyTorch max |diff| {gap:.1e}; manifest rewritten")
