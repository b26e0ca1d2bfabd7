"""The whole federation on one machine: FLARE's simulator running FedAvg over site cohorts.

Steps, as a real federation would take them:
1. each site computes its column sums and the coordinator agrees the tabular encoders
   (:mod:`.encoders`; here in this process, later a FLARE statistics task);
2. FLARE's ``FedAvgRecipe`` (PyTorch) runs ``rounds`` rounds in ``SimEnv``: the server builds
   the initial :class:`.network.FederatedNetwork`, each site runs :mod:`.client`, the server
   averages the returned ``state_dict`` arrays weighted by each site's training participants,
   and its persistor saves the global model (``FL_global_model.pt``);
3. the global weights are loaded back into a :class:`Trainer` on the first site's data, which
   settles the threshold on that site's inner validation split and writes a normal bundle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from model_build.federated.encoders import agree_encoders, site_statistics, tabular_inputs
from model_build.federated.site import Site
from model_build.models.checkpoint import RunState
from model_build.models.train import Trainer, TrainOptions
from sarco_core.files import write_json

JOB = "sarco-fedavg"
NETWORK = "model_build.federated.network.FederatedNetwork"
CLIENT_SCRIPT = Path(__file__).with_name("client.py")


@dataclass(frozen=True)
class Federation:
    bundle: Path
    global_model: Path      # FLARE's saved global model (the last round's average)
    rounds: int
    sites: dict[str, str]   # site name -> cohort folder
    workspace: Path         # FLARE's simulation workspace (server and site logs)
    site_folders: Path      # each site's own folder: what it sent each round (sent-round-N.pt)


def site_names(sites: list[Path]) -> dict[str, str]:
    return {f"site-{number}": str(Path(cohort).resolve()) for number, cohort in enumerate(sites, start=1)}


def plan_federation(sites: list[Path], work: Path, options: TrainOptions, rounds: int, local_epochs: int) -> dict:
    """The plan every site reads (see :mod:`.client`), with the encoders agreed from site sums."""
    encoders = agree_encoders([site_statistics(cohort, options) for cohort in sites])
    return {"sites": site_names(sites), "options": asdict(options), "rounds": rounds, "local_epochs": local_epochs,
            "work": str(work.resolve() / "sites"),
            "encoders": {m: encoder.to_dict() for m, encoder in encoders.items()},
            "network": {"modalities": list(encoders), "tabular_inputs": tabular_inputs(encoders),
                        "fusion": options.fusion, "seed": options.seed}}


def load_global_weights(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` in FLARE's PyTorch checkpoint (``{"model": state_dict, "meta_props",
    "train_conf"}``), read without unpickling code."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return {name: torch.as_tensor(value) for name, value in saved["model"].items()}


def simulate(sites: list[Path], out: Path, work: Path, options: TrainOptions, rounds: int = 2,
             local_epochs: int = 1) -> Federation:
    """Run the federation over ``sites`` (cohort folders) and write the bundle to ``out``."""
    from nvflare.app_opt.pt.recipes.fedavg import FedAvgRecipe
    from nvflare.recipe import SimEnv

    options = replace(options, threads=options.threads or 1)  # one core per simulated site
    work.mkdir(parents=True, exist_ok=True)
    plan = plan_federation(sites, work, options, rounds, local_epochs)
    plan_file = work / "plan.json"
    write_json(plan_file, plan)
    recipe = FedAvgRecipe(
        name=JOB, model={"path": NETWORK, "args": plan["network"]}, min_clients=len(sites), num_rounds=rounds,
        train_script=str(CLIENT_SCRIPT.resolve()), train_args=f"--config {plan_file.resolve()}",
        key_metric="validation_log_loss", key_metric_mode="min")
    env = SimEnv(clients=list(plan["sites"]), num_threads=len(sites), workspace_root=str(work.resolve() / "flare"))
    recipe.execute(env)
    workspace = work.resolve() / "flare" / JOB
    found = sorted(workspace.rglob("FL_global_model.pt"))
    if not found:
        raise RuntimeError(f"{workspace}: FLARE saved no global model; see server/simulate_job/log.txt there")
    weights = load_global_weights(found[0])
    holder = Site.from_plan(plan, next(iter(plan["sites"])))
    state = RunState(epoch=rounds * local_epochs, best_epoch=rounds * local_epochs)
    out.mkdir(parents=True, exist_ok=True)
    bundle = Trainer(holder.options).load_fitted(holder.data, out, weights, state, 0.0).finish()
    return Federation(bundle, found[0], rounds, plan["sites"], workspace, Path(plan["work"]))


def main(argv: list[str] | None = None) -> None:
    """``python -m model_build.federated.simulate SITE... --out BUNDLE --work DIR [--rounds R]``:
    the spike's command line, until ``sarco federated simulate`` (issue #19) replaces it."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sites", nargs="+", type=Path, help="site cohort folders")
    parser.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    parser.add_argument("--work", required=True, type=Path, help="plan, FLARE workspace, site folders")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = simulate(args.sites, args.out, args.work, TrainOptions(modalities=["clinical", "lab"], seed=args.seed),
                      args.rounds, args.local_epochs)
    print(json.dumps({"bundle": str(result.bundle), "global_model": str(result.global_model),
                      "sites": result.sites, "rounds": result.rounds,
                      "seconds": round(time.perf_counter() - started, 1)}, indent=2))


if __name__ == "__main__":
    main()
