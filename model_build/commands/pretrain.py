"""`sarco pretrain FOLDER... --out WEIGHTS.safetensors`: self-supervised pretraining of the image
encoder on unlabelled ultrasound (model_build/models/pretrain.py; docs/models.md, "Image recipes")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from model_build.commands.options import USER_ERROR, Threads
from sarco_core.cli import CliConsole, reported_errors
from sarco_core.progress import CommandProgress


def register(app: typer.Typer) -> None:
    """Add `sarco pretrain` to the CLI."""

    @app.command("pretrain")
    def pretrain(
        folders: Annotated[list[Path], typer.Argument(
            exists=True, file_okay=False, help="Folders of unlabelled ultrasound images, searched recursively; "
                                               "files an index.csv lists as masks are skipped.")],
        out: Annotated[Path, typer.Option("--out", help="Encoder weights to write (*.safetensors), and a .json "
                                                        "record beside it.")],
        image_size: Annotated[int, typer.Option(min=32, help="Input side in pixels.")] = 128,
        epochs: Annotated[int, typer.Option(min=1, help="Passes over the images.")] = 15,
        batch_size: Annotated[int, typer.Option(min=4, help="Images per step (each brings two views).")] = 64,
        seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
        threads: Threads = None,
    ) -> None:
        """Adapt the ImageNet encoder to ultrasound texture by contrastive learning (SimCLR) on
        images without labels; `sarco train --image-weights` starts from the result."""
        from model_build.models.pretrain import PretrainOptions
        from model_build.models.pretrain import pretrain as run

        console = CliConsole()
        with reported_errors(exit_code=USER_ERROR), CommandProgress(CliConsole(stderr=True)) as progress:
            options = PretrainOptions(image_size=image_size, epochs=epochs, batch_size=batch_size, seed=seed,
                                      threads=threads)
            record = run(folders, out, options, progress)
        console.print(f"weights written to {out} ({record['images']} images, {len(record['skipped'])} skipped; "
                      f"contrastive loss {record['history'][0]['loss']:.3f} -> {record['history'][-1]['loss']:.3f}; "
                      f"{record['seconds'] / 60:.1f} min)")
