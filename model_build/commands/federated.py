"""`sarco federated simulate SITES... --out MODEL`: training across site cohorts without pooling them.

The whole federation runs on one machine in NVIDIA FLARE's simulator (docs/federated.md): each
SITE is a cohort folder in the usual format (e.g. OUT/sites/* written by `sarco synth OUT --size
consortium`), each site trains on its own rows and sends only weights, and the last round's
global model is written as a normal bundle that `sarco evaluate` and the edge app read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.table import Table

from model_build.commands.options import USER_ERROR
from model_build.federated import STRATEGIES
from sarco_core.cli import CliConsole, CommandGroup, reported_errors

federated_app = CommandGroup(help="Train across site cohorts without pooling their data (NVIDIA FLARE).")


def register(app: typer.Typer) -> None:
    """Add `sarco federated ...` to the CLI."""
    app.add_typer(federated_app, name="federated")


@federated_app.command("simulate")
def simulate(
    sites: Annotated[list[Path], typer.Argument(exists=True, file_okay=False,
                                                help="Site cohort folders (at least 2), e.g. OUT/sites/*.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write (the last round's global model).")],
    work: Annotated[Optional[Path], typer.Option(help="Plan, FLARE workspace and each site's copy of what it sent "
                                                   "(default: OUT.federation next to OUT).")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Federation rounds.")] = 8,
    local_epochs: Annotated[int, typer.Option(min=1, help="Epochs each site trains per round (4: chosen on the "
                                                          "sites' validation loss, docs/federated.md).")] = 4,
    strategy: Annotated[Literal[STRATEGIES], typer.Option(
        help="fedavg: participant-weighted mean of the sites' weights; fedprox: the same with a proximal term "
             "in each site's loss.")] = "fedavg",
    fedprox_mu: Annotated[float, typer.Option(help="FedProx's proximal coefficient mu (> 0).")] = 0.01,
    modalities: Annotated[str, typer.Option(help="Data types of the model, comma-separated: image, clinical, "
                                                 "lab.")] = "image",
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and of each site's training.")] = 0,
) -> None:
    """Simulate a federation of SITES on this machine and write its model as a bundle."""
    from model_build.models import MODALITIES

    console = CliConsole()
    chosen = [m.strip() for m in modalities.split(",") if m.strip()]
    if not chosen or any(m not in MODALITIES for m in chosen):
        raise typer.BadParameter(f"{modalities!r}: use data types from {', '.join(MODALITIES)}, comma-separated, "
                                 "e.g. image or clinical,lab", param_hint="--modalities")
    if not fedprox_mu > 0:
        raise typer.BadParameter(f"{fedprox_mu}: give a proximal coefficient above 0, e.g. 0.01",
                                 param_hint="--fedprox-mu")
    if strategy != "fedprox" and fedprox_mu != 0.01:
        raise typer.BadParameter("only FedProx has a proximal term; fix: add --strategy fedprox or leave "
                                 "--fedprox-mu out", param_hint="--fedprox-mu")
    with reported_errors(exit_code=USER_ERROR):
        federation = _import_federation()
        started = time.perf_counter()
        result = federation.simulate(sites, out, work or out.with_name(out.name + ".federation"),
                                     federation.federation_options(chosen, seed), rounds, local_epochs, strategy,
                                     fedprox_mu)
    seconds = time.perf_counter() - started
    table = Table(title=f"{strategy}, {rounds} rounds x {local_epochs} local epoch(s), {'+'.join(chosen)}")
    for column in ("site", "cohort folder", "training participants", "sent per round"):
        table.add_column(column)
    for name, sent in result.sent().items():
        table.add_row(name, result.sites[name], str(sent[-1]["participants"]),
                      f"{sent[-1]['bytes'] / 1e6:.2f} MB x {len(sent)}")
    console.print(table)
    console.print(f"model: {result.bundle} ({seconds:.0f} s); what each site sent: {result.site_folders}")


def _import_federation():  # noqa: ANN202
    """The federation module, or a fix when NVIDIA FLARE (the `federated` extra) is missing."""
    try:
        from model_build.federated import simulate as federation
    except ModuleNotFoundError as missing:
        from sarco_core.errors import SarcoError

        raise SarcoError(f"{missing.name} is not installed; fix: pip install -c constraints.txt -e "
                         "'.[workstation,federated]'") from None
    return federation
