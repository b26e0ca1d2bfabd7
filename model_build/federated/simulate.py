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

import copy
import multiprocessing
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

import model_build
from model_build.federated import DEFAULT_FEDPROX_MU, STRATEGIES
from model_build.federated.encoders import agree_encoders, site_statistics, tabular_inputs
from model_build.federated.privacy import UpdatePrivacy
from model_build.federated.site import Site
from model_build.models.train import TrainOptions
from model_build.models import MODALITIES
from model_build.study.design import image_options
from sarco_core.errors import SarcoError
from sarco_core.files import write_json

JOB = "sarco-federation"
NETWORK = "model_build.federated.network.FederatedNetwork"
CLIENT_SCRIPT = Path(__file__).with_name("client.py")


class FederationError(SarcoError, ValueError):
    """The federation cannot run as asked; the message says why and how to fix it."""


@dataclass(frozen=True)
class Federation:
    bundle: Path
    global_model: Path      # FLARE's saved global model (the last round's average)
    rounds: int
    sites: dict[str, str]   # site name -> cohort folder
    workspace: Path         # FLARE's simulation workspace (server and site logs)
    site_folders: Path      # each site's own folder: what it sent each round (sent-round-N.pt)

    def sent(self) -> dict[str, list[dict]]:
        """Per site, per round: its training participants, the bytes of the weights it sent (the
        tensors' payload, before FLARE's framing) and the global model's log loss on its inner
        validation split that it reported, read from the site's own copies."""
        rows: dict[str, list[dict]] = {}
        for name in self.sites:
            for path in sorted((self.site_folders / name).glob("sent-round-*.pt"),
                               key=lambda p: int(p.stem.rsplit("-", 1)[1])):
                kept = torch.load(path, map_location="cpu", weights_only=True)
                rows.setdefault(name, []).append({
                    "round": int(path.stem.rsplit("-", 1)[1]), "participants": int(kept["participants"]),
                    "bytes": int(sum(t.numel() * t.element_size() for t in kept["weights"].values())),
                    "validation_log_loss": float(kept["metrics"]["validation_log_loss"])})
        return rows


def check_sites(sites: list[Path]) -> None:
    """At least two distinct site cohort folders, each with its participant table."""
    if len(sites) < 2:
        raise FederationError(f"{len(sites)} site given; a federation needs at least 2 site cohort folders "
                              "(e.g. OUT/sites/* from `sarco synth OUT --size consortium`)")
    resolved = [Path(site).resolve() for site in sites]
    twice = sorted({str(site) for site in resolved if resolved.count(site) > 1})
    if twice:
        raise FederationError(f"{', '.join(twice)}: given twice; fix: name each site once")
    for site in sites:
        check_site(Path(site))


def check_site(folder: Path) -> None:
    """A site's cohort folder has its participant table (the rest is the cohort loader's to check)."""
    if not (folder / "participants.csv").is_file():
        raise FederationError(f"{folder}: no participants.csv, so not a site cohort folder; fix: give a site's "
                              "cohort folder in the cohort format (docs/cohort-format.md)")


def site_names(sites: list[Path]) -> dict[str, str]:
    return {f"site-{number}": str(Path(cohort).resolve()) for number, cohort in enumerate(sites, start=1)}


def federation_options(modalities: list[str], seed: int) -> TrainOptions:
    """What each site trains: the study's image settings (64 px, the stem and first 4 blocks
    frozen, one frame per recording; :func:`~model_build.study.design.image_options`) when the
    image is in, else ``sarco train``'s tabular defaults. No weight averaging: a site returns its
    weights after every round, and FedAvg is the averaging."""
    if "image" not in modalities:
        return TrainOptions(modalities=list(modalities), seed=seed)
    return replace(image_options(False, seed), modalities=list(modalities), weight_average=None)


def plan_federation(sites: list[Path], work: Path, options: TrainOptions, rounds: int, local_epochs: int,
                    strategy: str = "fedavg", privacy: UpdatePrivacy | None = None) -> dict:
    """The plan every site reads (see :mod:`.client`), with the encoders agreed from site sums."""
    encoders = agree_encoders([site_statistics(cohort, options) for cohort in sites])
    return {"sites": site_names(sites), "options": asdict(options), "rounds": rounds, "local_epochs": local_epochs,
            "strategy": strategy, "privacy": None if privacy is None else privacy.to_dict(),
            "work": str(work.resolve() / "sites"),
            "encoders": {m: encoder.to_dict() for m, encoder in encoders.items()},
            "network": network_arguments(options, encoders)}


def network_arguments(options: TrainOptions, encoders: dict) -> dict:
    """The arguments of :class:`.network.FederatedNetwork` the server builds its initial model from."""
    return {"modalities": [m for m in MODALITIES if m in options.modalities],
            "tabular_inputs": tabular_inputs(encoders),
            "fusion": options.fusion, "seed": options.seed, "backbone": options.backbone,
            "image_size": options.image_size, "freeze_blocks": options.freeze_blocks, "pretrained": options.pretrained}


def recipe_class(strategy: str) -> type:
    """FLARE's PyTorch recipe of ``strategy``."""
    from nvflare.app_opt.pt.recipes.fedavg import FedAvgRecipe
    from nvflare.app_opt.pt.recipes.fedprox import FedProxRecipe

    if strategy not in STRATEGIES:
        raise FederationError(f"strategy {strategy!r}; fix: use one of {', '.join(STRATEGIES)}")
    return FedProxRecipe if strategy == "fedprox" else FedAvgRecipe  # FedBN: FedAvg's server, local norms at sites


def recipe_arguments(network: dict, rounds: int, min_clients: int, train_args: str, strategy: str,
                     fedprox_mu: float, metrics_sent: bool = True) -> dict:
    """The recipe's arguments, simulated or deployed alike: the server builds
    :class:`.network.FederatedNetwork` from ``network``, each site runs :mod:`.client` with
    ``train_args``, the sites' weights are averaged in a fixed order
    (:class:`.controller.SiteOrderedAverage`), and the best global model is the one with the
    lowest validation log loss (no model selector when the sites send no metric: under
    differential privacy)."""
    from model_build.federated.controller import SiteOrderedAverage

    arguments = dict(name=JOB, model={"path": NETWORK, "args": network}, min_clients=min_clients,
                     num_rounds=rounds, train_script=str(CLIENT_SCRIPT.resolve()), train_args=train_args,
                     key_metric="validation_log_loss" if metrics_sent else "", key_metric_mode="min",
                     aggregator=SiteOrderedAverage())
    if strategy == "fedprox":
        arguments["fedprox_mu"] = fedprox_mu
    return arguments


def _quiet_console(path: Path) -> Path:
    """FLARE's concise log config with only warnings on the console, written to ``path``: each
    round's INFO lines still go to the workspace's log files (server/log.txt and
    the sites')."""
    from nvflare.fuel.utils.log_utils import concise_log_dict

    config = copy.deepcopy(concise_log_dict)
    config["handlers"]["consoleHandler"]["level"] = "WARNING"
    write_json(path, config)
    return path.resolve()


def bundle_of_federation(holder: Site, global_model: Path, out: Path, fedprox_mu: float | None) -> Path:
    """``holder`` writes the federation's global model as a bundle; when that fails (an export
    that is not faithful: under differential privacy, noise can make the weights too large for
    float32), the error says that the rounds ran and where their model is kept."""
    try:
        return holder.write_bundle(load_global_weights(global_model), out, fedprox_mu)
    except SarcoError as failed:
        hint = (" (under --dp-epsilon the noise, 2 x noise multiplier x --dp-clip per value, can make the weights "
                "too large to export: a smaller --dp-clip or a larger epsilon)" if holder.privacy else "")
        raise FederationError(f"{failed}; every round ran and the global model is kept in {global_model}{hint}") \
            from None


def load_global_weights(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` in FLARE's PyTorch checkpoint (``{"model": state_dict, "meta_props",
    "train_conf"}``), read without unpickling code."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return {name: torch.as_tensor(value) for name, value in saved["model"].items()}


def installed_package_first(python_path: str | None) -> str:
    """``python_path`` (a PYTHONPATH value) with the folder that holds this installation's
    ``model_build`` first: the repository for an editable install, site-packages otherwise.

    Why: FLARE copies the project modules a job names (its controller, the site script) into the
    job's ``custom`` folder and puts that folder on the path of the processes it starts. There
    they form a partial ``model_build`` package. An editable install is found by a finder that
    Python asks only after the path, so the partial copy wins and the server fails with "No
    module named 'model_build.federated.network'" unless the command ran from the repository
    root. With the complete package on the path, it is the one imported."""
    return os.pathsep.join([installed_package_root(), *filter(None, (python_path or "").split(os.pathsep))])


def installed_package_root() -> str:
    """The folder that holds this installation's ``model_build`` (:func:`installed_package_first`)."""
    return str(Path(model_build.__file__).resolve().parents[1])


@contextmanager
def flare_processes() -> Iterator[None]:
    """How FLARE's simulator starts its processes within the block:

    - fresh interpreters (spawn), as it does on macOS. On Linux its default is fork, and it forks
      this process to run the server; forking a process whose torch has run OpenMP threads is
      unsafe (here a forked child that sums a 4M-element tensor after its parent did never
      returns: libgomp is not fork-safe), and a test worker or a study that trained before
      simulating is such a process;
    - with the installed ``model_build`` first on their path (:func:`installed_package_first`):
      PYTHONPATH for the sites' processes, ``sys.path`` for the spawned server, which inherits it.
    """
    method = multiprocessing.get_start_method(allow_none=True)
    saved_path, saved_variable = sys.path[:], os.environ.get("PYTHONPATH")
    multiprocessing.set_start_method("spawn", force=True)
    os.environ["PYTHONPATH"] = installed_package_first(saved_variable)
    sys.path.insert(0, installed_package_root())
    try:
        yield
    finally:
        multiprocessing.set_start_method(method, force=True)
        sys.path[:] = saved_path
        if saved_variable is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_variable


def simulate(sites: list[Path], out: Path, work: Path, options: TrainOptions, rounds: int = 2,
             local_epochs: int = 1, strategy: str = "fedavg", fedprox_mu: float = DEFAULT_FEDPROX_MU,
             privacy: UpdatePrivacy | None = None) -> Federation:
    """Run the federation over ``sites`` (cohort folders) and write the bundle to ``out``; with
    ``privacy``, every site's updates leave clipped and noised (:mod:`.privacy`)."""
    from nvflare.recipe import SimEnv

    recipe_type = recipe_class(strategy)
    check_sites(sites)
    options = replace(options, threads=options.threads or 1)  # one core per simulated site
    work.mkdir(parents=True, exist_ok=True)
    plan = plan_federation(sites, work, options, rounds, local_epochs, strategy, privacy)
    plan_file = work / "plan.json"
    write_json(plan_file, plan)
    recipe = recipe_type(**recipe_arguments(plan["network"], rounds, len(sites), f"--config {plan_file.resolve()}",
                                            strategy, fedprox_mu, privacy is None))
    env = SimEnv(clients=list(plan["sites"]), num_threads=len(sites), workspace_root=str(work.resolve() / "flare"),
                 log_config=str(_quiet_console(work / "flare-logging.json")))
    try:
        with flare_processes():
            recipe.execute(env)
    except RuntimeError as failed:  # SimEnv's word for a simulator that exited non-zero
        raise FederationError(f"{failed}; fix: read the first error in those logs (a site's data, or FLARE's "
                              "installation)") from None
    workspace = work.resolve() / "flare" / JOB
    found = sorted(workspace.rglob("FL_global_model.pt"))
    if not found:
        raise FederationError(f"{workspace}: FLARE saved no global model; fix: read server/log.txt there")
    bundle = bundle_of_federation(Site.from_plan(plan, next(iter(plan["sites"]))), found[0], out,
                                  fedprox_mu if strategy == "fedprox" else None)
    return Federation(bundle, found[0], rounds, plan["sites"], workspace, Path(plan["work"]))
