"""`sarco export BUNDLE`: (re)write a bundle's model.onnx from its weights, check it, re-sign.

Use it after moving a bundle between sarco versions or when model.onnx was lost; the graph is
checked for deployable operators and for parity with PyTorch, then the manifest is rewritten.
"""

from __future__ import annotations

import typer

from model_build.commands.options import Bundle, USER_ERROR
from sarco_core.cli import CliConsole, reported_errors


def register(app: typer.Typer) -> None:
    """Add `sarco export` to the CLI."""

    @app.command("export")
    def export(bundle: Bundle) -> None:
        """Write BUNDLE/model.onnx (opset 17, dynamic batch) and BUNDLE/MANIFEST.sha256."""
        from model_build.models.export import export_bundle

        with reported_errors(exit_code=USER_ERROR):
            gap, operators = export_bundle(bundle)
        CliConsole().print(f"{bundle / 'model.onnx'}: operators {', '.join(operators)}; "
                           f"ONNX Runtime vs PyTorch max |diff| {gap:.1e}; manifest rewritten")
