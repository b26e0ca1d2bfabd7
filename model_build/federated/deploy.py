"""The federation on FLARE's deployment runtime: a coordinator (FLARE server + admin) and one
process per site, each on its own machine, over mutual TLS.

1. :func:`provision` writes FLARE startup kits with ``nvflare provision`` (a root CA, and per
   party a certificate and key signed by it, ``connection_security: mtls``): one for the
   coordinator's server, one for its admin (who submits the job), one per named site. Each
   site receives only its own kit.
2. :func:`run_site` starts a site with its kit's ``startup/sub_start.sh --once`` (FLARE's FL
   client). The site's cohort folder is told to that process only, in the environment
   (``SARCO_SITE_COHORT``), and :mod:`.client` reads it there: the coordinator never learns a
   site's paths, and the plan it sends holds options only.
3. :func:`coordinate` starts the server from its kit the same way, waits for the sites to
   connect, submits the job (FedAvg, FedProx or FedBN, :class:`.controller.SiteTolerantFedAvg`
   as the workflow) with the admin's kit through FLARE's API (``nvflare.fuel.flare_api``), waits
   for it, downloads its result, shuts the federation down and writes the bundle. When the model
   has clinical or lab inputs, a first job (:func:`statistics_recipe`) collects each site's
   column sums, and the training job carries the encoders agreed from them. Under secure
   aggregation (kits provisioned with its keys), the training job is FLARE's homomorphic-
   encryption FedAvg instead (:func:`secure_recipe`, :mod:`.secure`).

What a site sends: its column sums (clinical/lab models, once), then its model weights and
aggregate metrics each round (:mod:`.client`; under secure aggregation the weights encrypted and
no metric), never a row, an image or a per-participant number.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from model_build.federated import DEFAULT_FEDPROX_MU
from model_build.federated.encoders import agree_encoders
from model_build.federated.privacy import UpdatePrivacy
from model_build.federated.simulate import (CLIENT_SCRIPT, FederationError, bundle_of_federation, check_site,
                                            installed_package_first, network_arguments, recipe_arguments,
                                            recipe_class)
from model_build.federated.site import Site
from model_build.models.tabular import TabularEncoder
from model_build.models.train import TrainOptions
from sarco_core.files import write_json

PROJECT = "sarco"
ADMIN = "coordinator@sarco.local"
COHORT_VARIABLE = "SARCO_SITE_COHORT"   # the site's cohort folder, known to the site's process only
WORK_VARIABLE = "SARCO_SITE_WORK"       # where the site keeps its copy of what it sent
EPSILON_VARIABLE = "SARCO_SITE_MAX_EPSILON"  # the site's own privacy floor (sarco federated site --max-epsilon)
APP_PACKAGES = ("model_build", "sarco_core")  # installed at every party, never shipped in the job
STATISTICS_JOB = "sarco-statistics"


@dataclass(frozen=True)
class Kits:
    """FLARE startup kits written by :func:`provision`: give each party only its own folder."""
    server: Path
    admin: Path
    sites: dict[str, Path]


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FederationError(f"{address!r}: give the coordinator's address as HOST:PORT, e.g. 127.0.0.1:8002")
    return host, int(port)


def kit_folders(out: Path, sites: list[str]) -> Kits:
    root = out / PROJECT / "prod_00"
    return Kits(server=root / "server", admin=root / ADMIN, sites={name: root / name for name in sites})


def project_yaml(host: str, port: int, sites: list[str], secure_aggregation: bool = False) -> str:
    """FLARE's project file (nvflare/lighter/dummy_project.yml's form). The server is called
    ``server``; ``host_names`` puts HOST in its certificate, and ``default_host`` is where the
    sites and the admin connect (nvflare/lighter/impl/static_file.py). With
    ``secure_aggregation``, FLARE's ``HEBuilder`` adds the TenSEAL CKKS contexts: the sites' with
    the secret key (``client_context.tenseal``), the server's without it (``server_context.tenseal``)."""
    lines = ["api_version: 3", f"name: {PROJECT}", "description: sarcopenia screening federation", "participants:",
             "  - name: server", "    type: server", f"    org: {PROJECT}", f"    fed_learn_port: {port}",
             f"    admin_port: {port}", f"    default_host: {host}", f"    host_names: [{host}]"]
    for site in sites:
        lines += [f"  - name: {site}", "    type: client", f"    org: {PROJECT}"]
    lines += [f"  - name: {ADMIN}", "    type: admin", f"    org: {PROJECT}", "    role: project_admin",
              "builders:", "  - path: nvflare.lighter.impl.workspace.WorkspaceBuilder",
              "  - path: nvflare.lighter.impl.static_file.StaticFileBuilder", "    args:",
              "      config_folder: config", "  - path: nvflare.lighter.impl.cert.CertBuilder"]
    if secure_aggregation:
        lines += ["  - path: nvflare.lighter.impl.he.HEBuilder"]
    lines += ["  - path: nvflare.lighter.impl.signature.SignatureBuilder"]  # last: it signs the kits' files
    return "\n".join(lines) + "\n"


def provision(address: str, sites: list[str], out: Path, secure_aggregation: bool = False) -> Kits:
    """Startup kits for a coordinator at ``address`` and the named ``sites`` (``nvflare provision``),
    with the encryption keys of secure aggregation when asked (:func:`project_yaml`)."""
    host, port = split_address(address)
    if len(sites) < 2 or len(set(sites)) != len(sites):
        raise FederationError(f"sites {sites}: name at least 2 distinct sites, e.g. --site site-1 --site site-2")
    if (out / PROJECT).exists():
        raise FederationError(f"{out / PROJECT}: startup kits already there; fix: give an empty --out folder "
                              "(a new root CA invalidates the kits already handed out)")
    out.mkdir(parents=True, exist_ok=True)
    project = out / "project.yml"
    project.write_text(project_yaml(host, port, sites, secure_aggregation), encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", "from nvflare.cli import main; main()", "provision", "-p",
                           str(project), "-w", str(out)], capture_output=True, text=True)
    kits = kit_folders(out, sites)
    if done.returncode or not kits.server.is_dir():
        raise FederationError(f"nvflare provision failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return kits


def flare_environment(**extra: str) -> dict[str, str]:
    """This interpreter first on PATH (the kits' scripts call ``python3``), the installed
    ``model_build`` first on PYTHONPATH (:func:`installed_package_first`), plus ``extra``."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = installed_package_first(env.get("PYTHONPATH"))
    env.update(extra)
    return env


def start_command(kit: Path) -> list[str]:
    """The kit's own start script, in the foreground (``--once``: no restart loop)."""
    script = kit / "startup" / "sub_start.sh"
    if not script.is_file():
        raise FederationError(f"{kit}: no startup/sub_start.sh, so not a FLARE startup kit; fix: give the folder "
                              "`sarco federated provision` wrote for this party")
    return ["bash", str(script), "--once"]


def site_environment(cohort: Path, work: Path, max_epsilon: float | None = None) -> dict[str, str]:
    """What the site's FLARE client, and the site script under it, are told in their environment
    only: the cohort folder, the work folder and the site's own privacy floor."""
    extra = {COHORT_VARIABLE: str(cohort.resolve()), WORK_VARIABLE: str(work.resolve())}
    if max_epsilon is not None:
        extra[EPSILON_VARIABLE] = repr(float(max_epsilon))
    return flare_environment(**extra)


def run_site(cohort: Path, kit: Path, work: Path, max_epsilon: float | None = None) -> None:
    """Become this site's FLARE client (the process is replaced; it runs until the coordinator
    shuts the federation down). The cohort folder stays in this process's environment."""
    check_site(cohort)
    command = start_command(kit.resolve())
    work.mkdir(parents=True, exist_ok=True)
    env = site_environment(cohort, work, max_epsilon)
    sys.stdout.flush()
    os.execvpe(command[0], command, env)


def deployment_plan(options: TrainOptions, rounds: int, local_epochs: int, strategy: str = "fedavg",
                    privacy: UpdatePrivacy | None = None, encoders: dict[str, TabularEncoder] | None = None,
                    fedprox_mu: float | None = None, secure_aggregation: bool = False) -> dict:
    """What every site is told: options, the network and the agreed encoders; no cohort path.
    ``fedprox_mu`` travels in the plan because secure aggregation's workflow does not put it in
    each round's model, as FLARE's FedAvg does."""
    encoders = encoders or {}
    return {"options": asdict(options), "rounds": rounds, "local_epochs": local_epochs, "strategy": strategy,
            "fedprox_mu": fedprox_mu if strategy == "fedprox" else None, "secure_aggregation": secure_aggregation,
            "privacy": None if privacy is None else privacy.to_dict(),
            "encoders": {m: encoder.to_dict() for m, encoder in encoders.items()},
            "network": network_arguments(options, encoders)}


def encode_plan(plan: dict) -> str:
    """The plan as one shell-safe word (it travels in the job as the site script's argument)."""
    return base64.urlsafe_b64encode(json.dumps(plan, sort_keys=True).encode("utf-8")).decode("ascii")


def decode_plan(word: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(word.encode("ascii")).decode("utf-8"))


def statistics_recipe(plan: dict, min_sites: int, wait_after_min: int, round_timeout: int):
    """The job that comes first when the model has clinical or lab inputs: each site sends the
    column sums of its training rows (:class:`.controller.CollectStatistics`)."""
    from nvflare.job_config.api import FedJob
    from nvflare.job_config.script_runner import ScriptRunner
    from nvflare.recipe.spec import Recipe

    from model_build.federated.controller import CollectStatistics

    job = FedJob(name=STATISTICS_JOB, min_clients=min_sites)
    job.to_server(CollectStatistics(min_sites, wait_after_min, round_timeout))
    job.to_clients(ScriptRunner(script=str(CLIENT_SCRIPT.resolve()), script_args=f"--plan {encode_plan(plan)}"))
    return deployed(Recipe(job))


def agreed_encoders(result: Path) -> tuple[dict[str, TabularEncoder], list[str]]:
    """The encoders agreed from the statistics job's downloaded ``result``, and the sites that sent sums."""
    from model_build.federated.controller import STATISTICS_FILE

    found = sorted(result.rglob(STATISTICS_FILE))
    collected = json.loads(found[0].read_text(encoding="utf-8")) if found else {}
    if not collected:
        raise FederationError(f"{result}: no site sent its column sums; fix: read the sites' logs and the server's "
                              "log.txt there")
    try:
        return agree_encoders(list(collected.values())), sorted(collected)
    except ValueError as disagree:
        raise FederationError(f"{disagree} (sites {', '.join(sorted(collected))})") from None


def deployment_recipe(plan: dict, min_sites: int, wait_after_min: int, round_timeout: int, strategy: str,
                      fedprox_mu: float):
    """FLARE's FedAvg/FedProx PyTorch recipe with :class:`.controller.SiteTolerantFedAvg` as its
    workflow, ``min_clients`` = ``min_sites`` (the job runs, and goes on, while that many
    sites are alive: nvflare/apis/impl/wf_comm_server.py ``_job_policy_violated``)."""
    from model_build.federated.controller import SiteTolerantFedAvg

    tolerance = {"min_sites": min_sites, "wait_after_min": wait_after_min, "round_timeout": round_timeout}

    def create_controller(recipe, persistor_id, model_params, model_aggregator):  # FedAvgRecipe._create_controller
        return SiteTolerantFedAvg(
            num_clients=recipe.min_clients, num_rounds=recipe.num_rounds, persistor_id=persistor_id,
            model=model_params, save_filename=recipe.save_filename, aggregator=model_aggregator,
            stop_cond=recipe.stop_cond, patience=recipe.patience, task_name="train", exclude_vars=recipe.exclude_vars,
            aggregation_weights=recipe.aggregation_weights, memory_gc_rounds=recipe.server_memory_gc_rounds,
            enable_tensor_disk_offload=recipe.enable_tensor_disk_offload, **tolerance,
            **recipe._get_controller_kwargs())

    recipe_type = type("DeployedRecipe", (recipe_class(strategy),), {"_create_controller": create_controller})
    return deployed(recipe_type(**recipe_arguments(plan["network"], plan["rounds"], min_sites,
                                                   f"--plan {encode_plan(plan)}", strategy, fedprox_mu,
                                                   plan.get("privacy") is None)))


def secure_recipe(plan: dict, min_sites: int, wait_after_min: int, round_timeout: int):
    """FLARE's FedAvg with homomorphic encryption: the components ``FedAvgRecipeWithHE`` wires
    (nvflare/app_opt/pt/recipes/fedavg_he.py: the PyTorch persistor behind
    ``HEModelSerializeFilter``, ``HEModelShareableGenerator``, the encrypted weighted sum, here
    :class:`.secure.AtLeastTwoUpdates`; at the sites ``HEModelDecryptor`` on incoming models and
    ``HEModelEncryptor`` on their updates, weighted by participants), with
    :class:`.secure.SecureRounds` as the workflow in place of its plain ``ScatterAndGather``.
    Unlike :func:`deployment_recipe` it has no model selector and no fixed summing order (the
    ciphertexts are added as they come). Needs kits provisioned with ``--secure-aggregation``.
    Every tensor is encrypted, frozen ones too: a tensor left in the clear comes back flattened,
    which the server's PyTorch persistor refuses (its shape check), and the frozen layers are 1 %
    of the values."""
    from nvflare.apis.dxo import DataKind
    from nvflare.app_opt.he.model_decryptor import HEModelDecryptor
    from nvflare.app_opt.he.model_encryptor import HEModelEncryptor
    from nvflare.app_opt.he.model_serialize_filter import HEModelSerializeFilter
    from nvflare.app_opt.he.model_shareable_generator import HEModelShareableGenerator
    from nvflare.app_opt.pt.file_model_persistor import PTFileModelPersistor
    from nvflare.app_opt.pt.job_config.base_fed_job import BaseFedJob
    from nvflare.app_opt.pt.job_config.model import PTModel
    from nvflare.client.config import ExchangeFormat
    from nvflare.fuel.utils.constants import FrameworkType
    from nvflare.job_config.defs import FilterType
    from nvflare.job_config.script_runner import ScriptRunner
    from nvflare.recipe.spec import Recipe

    from model_build.federated.secure import DECRYPT_TASK, AtLeastTwoUpdates, SecureRounds
    from model_build.federated.simulate import JOB, NETWORK

    model = {"path": NETWORK, "args": plan["network"]}
    job = BaseFedJob(name=JOB, min_clients=min_sites, key_metric="")  # no metrics to select a model by
    persistor = PTFileModelPersistor(model=model, filter_id="model_serialize_filter")
    job.comp_ids.update(job.to_server(PTModel(model=model, persistor=persistor)))
    job.to_server(HEModelSerializeFilter(), id="model_serialize_filter")
    generator = job.to_server(HEModelShareableGenerator(), id="shareable_generator")
    aggregator = job.to_server(AtLeastTwoUpdates(weigh_by_local_iter=False, expected_data_kind=DataKind.WEIGHTS),
                               id="aggregator")  # the sites weigh their updates before encrypting them
    job.to_server(SecureRounds(min_clients=min_sites, num_rounds=plan["rounds"],
                               wait_time_after_min_received=wait_after_min, train_timeout=round_timeout,
                               aggregator_id=aggregator,
                               persistor_id=job.comp_ids["persistor_id"], shareable_generator_id=generator))
    job.to_clients(ScriptRunner(script=str(CLIENT_SCRIPT.resolve()), script_args=f"--plan {encode_plan(plan)}",
                                framework=FrameworkType.PYTORCH, server_expected_format=ExchangeFormat.NUMPY))
    job.to_clients(HEModelDecryptor(), tasks=["train", DECRYPT_TASK], filter_type=FilterType.TASK_DATA)
    job.to_clients(HEModelEncryptor(weigh_by_local_iter=True), tasks=["train"], filter_type=FilterType.TASK_RESULT)
    return deployed(Recipe(job))


def deployed(recipe):  # noqa: ANN001, ANN201 - FLARE's Recipe
    """``recipe`` as every deployed job runs: each party imports its own installed copy of the
    project's packages (the job carries configuration and the site script, not the coordinator's
    code), and a site is reported dead as soon as the server has logged it out (--site-timeout
    without a heartbeat; FedJob's fail_fast does the same, nvflare/job_config/api.py), so later
    rounds are no longer sent to it."""
    recipe._job.set_app_packages(list(APP_PACKAGES))  # Recipe keeps its FedJob private (nvflare/recipe/spec.py)
    recipe.add_server_config({"dead_client_grace_period": 0})
    return recipe


@dataclass(frozen=True)
class Deployment:
    bundle: Path
    global_model: Path
    rounds: list[dict]      # per round: sent_to, updates_from, no_update_from (site names)
    result: Path            # the job's result as FLARE's admin downloaded it
    server_log: Path
    seconds: dict[str, float]
    status: str             # FLARE's job status (FINISHED:ABNORMAL when a site died before the job's end)
    statistics_from: list[str]  # sites whose column sums agreed the clinical/lab encoders (none: image only)


class Coordinator:
    """The coordinator's server process and its admin session (context manager: the server is
    shut down, and killed if it does not stop, on the way out)."""

    def __init__(self, server_kit: Path, admin_kit: Path, work: Path, site_timeout: float = 60.0) -> None:
        # absolute: FLARE refuses a relative storage root in the server's settings
        self.server_kit, self.admin_kit, self.work = server_kit.resolve(), admin_kit.resolve(), work.resolve()
        self.site_timeout = site_timeout
        self.process: subprocess.Popen | None = None
        self.session = None
        self.server_log = self.work / "server-console.log"

    def write_local_settings(self) -> None:
        """The server kit's ``local/resources.json`` (FLARE's place for a party's own settings;
        the provisioned defaults are in ``resources.json.default``, from
        nvflare/lighter/templates/master_template.yml), with two changes:

        - ``heart_beat_timeout`` = ``site_timeout``: how long the server waits without a site's
          heartbeat (sent every 10 s) before it logs the site out (default 600 s). A job ends
          only when each of its sites has reported its end or been logged out
          (nvflare/private/fed/server/fed_server.py ``notify_dead_client``), so this bounds how
          long a site that died holds the job's end;
        - the job and snapshot stores inside the kit instead of the shared /tmp/nvflare."""
        local = self.server_kit / "local"
        current = local / "resources.json"
        resources = json.loads((current if current.is_file() else local / "resources.json.default").read_text())
        resources["servers"][0]["heart_beat_timeout"] = self.site_timeout
        resources["snapshot_persistor"]["args"]["storage"]["args"]["root_dir"] = str(self.server_kit / "snapshots")
        for component in resources["components"]:
            if component.get("id") == "job_manager":
                component["args"]["uri_root"] = str(self.server_kit / "jobs")
        write_json(current, resources)

    def __enter__(self) -> Coordinator:
        self.work.mkdir(parents=True, exist_ok=True)
        command = start_command(self.server_kit)
        self.write_local_settings()
        with open(self.server_log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=flare_environment(),
                                            start_new_session=True)
        return self

    def connect(self, timeout: float = 90.0):
        from nvflare.fuel.flare_api.flare_api import new_secure_session

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise FederationError(f"the coordinator's server exited ({self.process.returncode}); fix: read "
                                      f"{self.server_log} and {self.server_kit / 'log.txt'}")
            try:
                self.session = new_secure_session(ADMIN, str(self.admin_kit), timeout=10.0)
                return self.session
            except Exception as failed:  # noqa: BLE001 - FLARE raises several kinds while its server starts
                if time.monotonic() > deadline:
                    raise FederationError(f"no admin session with the coordinator's server after {timeout:.0f} s "
                                          f"({failed}); fix: read {self.server_log}") from None
                time.sleep(2)

    def wait_for_sites(self, expected: int, min_sites: int, join_timeout: float) -> list[str]:
        """Wait until ``expected`` sites are connected, or ``join_timeout`` seconds have passed
        with at least ``min_sites`` connected (the others, if they come later, miss this job)."""
        deadline = time.monotonic() + join_timeout
        while True:
            names = sorted(client.name for client in self.session.get_connected_client_list())
            if len(names) >= expected or (time.monotonic() > deadline and len(names) >= min_sites):
                return names
            if time.monotonic() > deadline + join_timeout:
                raise FederationError(f"{len(names)} site(s) connected ({', '.join(names) or 'none'}) after "
                                      f"{2 * join_timeout:.0f} s, fewer than --min-sites {min_sites}; fix: start "
                                      "the sites (`sarco federated site COHORT --kit KIT`) and check the address")
            time.sleep(2)

    def run_job(self, recipe, timeout: float) -> tuple[Path, str]:
        """Submit the recipe's job, wait for it to finish and download its result; with its
        status. A site that died can make FLARE end a job whose every round ran with
        ``FINISHED:ABNORMAL`` (it never reported the job's end: nvflare/private/fed/server/
        fed_server.py ``_resolve_missing_client_outcome``) or ``FINISHED:EXECUTION_EXCEPTION``
        (it died while uploading an update, and the server's job process exits when that
        download fails: nvflare/fuel/f3/cellnet/cell.py, ``Adapter.call``); :func:`coordinate`
        then checks the rounds themselves."""
        from nvflare.fuel.flare_api.api_spec import MonitorReturnCode

        from nvflare.recipe.secrets import PotentialSecretWarning

        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            warnings.simplefilter("ignore", PotentialSecretWarning)  # the plan (options, base64) is no secret
            recipe.export(job_dir=folder)
            job_id = self.session.submit_job(str(next(Path(folder).iterdir())))  # the one job exported
        returned = self.session.monitor_job(job_id, timeout=timeout)
        if returned != MonitorReturnCode.JOB_FINISHED:
            self.session.abort_job(job_id)
            raise FederationError(f"job {job_id} did not finish in {timeout:.0f} s ({returned}); fix: read "
                                  f"{self.server_kit / job_id / 'log.txt'} and the sites' logs")
        status = str(self.session.get_job_meta(job_id).get("status", ""))
        if not status.startswith("FINISHED"):
            raise FederationError(f"job {job_id} ended {status}; fix: read {self.server_kit / 'log.txt'}")
        return Path(self.session.download_job_result(job_id, str(self.work / "result"))), status

    def __exit__(self, *exc) -> None:
        if self.session is not None:
            try:
                self.session.shutdown("all", wait=True, timeout=30.0)
            except Exception:  # noqa: BLE001 - shutting down: the server is stopped below either way
                pass
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


def holds_secret_key(kit: Path) -> bool:
    """Whether ``kit`` is a site's kit for secure aggregation: it holds the sites' TenSEAL secret key
    (``client_context.tenseal``, written by FLARE's ``HEBuilder``)."""
    from nvflare.lighter.constants import ProvFileName

    return (kit / "startup" / ProvFileName.CLIENT_CONTEXT_TENSEAL).is_file()


def check_secure_kits(server_kit: Path, min_sites: int) -> None:
    """Secure aggregation can start: the server's kit has the public context, no site's kit (with
    the secret key, which would let this machine decrypt every update) is still beside it, and a
    round averages at least two updates."""
    from nvflare.lighter.constants import ProvFileName

    if not (server_kit / "startup" / ProvFileName.SERVER_CONTEXT_TENSEAL).is_file():
        raise FederationError(f"{server_kit}: no startup/{ProvFileName.SERVER_CONTEXT_TENSEAL}, so these kits were "
                              "provisioned without secure aggregation; fix: provision new kits with `sarco federated "
                              "provision --secure-aggregation` and hand each site its new kit")
    keys = sorted(kit.name for kit in server_kit.parent.iterdir() if holds_secret_key(kit))
    if keys:
        raise FederationError(f"{server_kit.parent}: the kits of {', '.join(keys)} are still here, with the sites' "
                              "secret key, which would let this machine decrypt every update; fix: hand each site its "
                              "kit, then delete those folders here")
    if min_sites < 2:
        raise FederationError(f"--min-sites {min_sites}: secure aggregation averages at least 2 updates a round (the "
                              "average of one is that site's update); fix: --min-sites 2 or more")


def coordinate(server_kit: Path, admin_kit: Path, calibration: Path, out: Path, work: Path, options: TrainOptions,
               rounds: int, local_epochs: int, sites: int, min_sites: int, wait_after_min: int = 30,
               round_timeout: int = 0, join_timeout: float = 120.0, job_timeout: float = 3600.0,
               site_timeout: float = 60.0, strategy: str = "fedavg", fedprox_mu: float = DEFAULT_FEDPROX_MU,
               privacy: UpdatePrivacy | None = None, secure_aggregation: bool = False,
               say: Callable[[str], None] = lambda line: None) -> Deployment:
    """Run the federation from the coordinator's side and write the bundle to ``out``; the
    decision threshold is chosen on ``calibration``'s inner validation split (a cohort the
    coordinator holds itself: no site's data is needed). With ``secure_aggregation`` the sites'
    updates are encrypted and the server adds them without reading them (:func:`secure_recipe`).
    ``say`` gets a line once the arguments are checked and the server is up, while it waits for
    the sites."""
    if not (calibration / "participants.csv").is_file():
        raise FederationError(f"{calibration}: no participants.csv; fix: give --calibration a cohort folder the "
                              "coordinator holds (its threshold is chosen there)")
    from model_build.federated.controller import ROUNDS_FILE

    model_file = "FL_global_model.pt"  # FLARE's persistor's name for the last global model
    if secure_aggregation:
        from model_build.federated.secure import GLOBAL_MODEL_FILE as model_file

        check_secure_kits(server_kit, min_sites)
    if not 1 <= min_sites <= sites:
        raise FederationError(f"--min-sites {min_sites}: give 1 to --sites ({sites})")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    tabular = [m for m in options.modalities or [] if m != "image"]
    statistics_from: list[str] = []
    with Coordinator(server_kit, admin_kit, work, site_timeout) as coordinator:
        coordinator.connect()
        seconds["server_up"] = time.perf_counter() - started
        say(f"coordinator: server up ({server_kit}); waiting for {sites} site(s)")
        coordinator.wait_for_sites(sites, min_sites, join_timeout)
        seconds["sites_joined"] = time.perf_counter() - started
        encoders = {}
        if tabular:  # first the column sums, then training with the encoders agreed from them
            summed, _ = coordinator.run_job(statistics_recipe(deployment_plan(options, rounds, local_epochs),
                                                              min_sites, wait_after_min, round_timeout), job_timeout)
            encoders, statistics_from = agreed_encoders(summed)
            seconds["encoders_agreed"] = time.perf_counter() - started
        plan = deployment_plan(options, rounds, local_epochs, strategy, privacy, encoders, fedprox_mu,
                               secure_aggregation)
        recipe = (secure_recipe(plan, min_sites, wait_after_min, round_timeout) if secure_aggregation else
                  deployment_recipe(plan, min_sites, wait_after_min, round_timeout, strategy, fedprox_mu))
        result, status = coordinator.run_job(recipe, job_timeout)
        seconds["job_done"] = time.perf_counter() - started
    seconds["shut_down"] = time.perf_counter() - started
    found = sorted(result.rglob(model_file))
    record = sorted(result.rglob(ROUNDS_FILE))
    if not found:
        raise FederationError(f"{result}: the job saved no global model; fix: read the server's log.txt there")
    rounds_record = json.loads(record[0].read_text(encoding="utf-8")) if record else []
    if len(rounds_record) != rounds:  # FLARE's status aside, every round must have run
        raise FederationError(f"job ended {status} after {len(rounds_record)} of {rounds} rounds; fix: read the "
                              f"server's log.txt in {result}")
    holder = Site(calibration, options, encoders, work / "calibration", rounds, local_epochs, strategy, privacy)
    bundle = bundle_of_federation(holder, found[0], out, fedprox_mu if strategy == "fedprox" else None)
    write_json(work / "rounds.json", rounds_record)
    return Deployment(bundle, found[0], rounds_record, result, coordinator.server_log, seconds, status,
                      statistics_from)
