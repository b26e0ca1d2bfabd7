"""`sarco federated ...`: training across site cohorts without pooling them (NVIDIA FLARE).

`simulate SITES... --out MODEL` runs the whole federation on one machine in FLARE's simulator:
each SITE is a cohort folder in the usual format (e.g. OUT/sites/* written by `sarco synth OUT
--size consortium`), each site trains on its own rows and sends only weights, and the last
round's global model is written as a normal bundle that `sarco evaluate` and the edge app read.

`provision`, `coordinator` and `site` run the same training on FLARE's deployment runtime: one
coordinator process and one process per site, on their own machines, over mutual TLS
(docs/federated.md, "Deployment").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.table import Table

from model_build.commands.options import USER_ERROR
from model_build.federated import DEFAULT_FEDPROX_MU, STRATEGIES
from sarco_core.cli import CliConsole, CommandGroup, reported_errors

LocalEpochs = Annotated[int, typer.Option(min=1, help="Epochs each site trains per round (4: chosen on the sites' "
                                                     "validation loss, docs/federated.md).")]
DpEpsilon = Annotated[Optional[float], typer.Option(
    help="Differential privacy on every site's weight updates: the epsilon over the whole federation, per "
         "participant (updates clipped to --dp-clip and noised; no metric leaves a site; site sizes and the "
         "clinical/lab column sums are not covered). Default: off.")]
DpDelta = Annotated[Optional[float], typer.Option(help="The delta of --dp-epsilon; keep it below 1 over the "
                                                       "largest site's participants. Default: 1e-5.")]
DpClip = Annotated[Optional[float], typer.Option(help="L2 norm each site's update is clipped to under --dp-epsilon "
                                                      "(e.g. the median update norm of a run on public or synthetic "
                                                      "data). Default: 1.")]
FedproxMu = Annotated[Optional[float], typer.Option(help=f"FedProx's proximal coefficient mu (> 0; --strategy "
                                                         f"fedprox only). Default: {DEFAULT_FEDPROX_MU}.")]
SecureAggregation = Annotated[bool, typer.Option(
    "--secure-aggregation", help="Homomorphic encryption of every site's update (FLARE's HE FedAvg, TenSEAL CKKS): "
    "the server adds updates it cannot read. Provision the kits with it, hand each site its kit (and delete it "
    "here), then run the coordinator with it and --min-sites 2 or more.")]
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
    local_epochs: LocalEpochs = 4,
    strategy: Annotated[Literal[STRATEGIES], typer.Option(
        help="fedavg: participant-weighted mean of the sites' weights; fedprox: the same with a proximal term "
             "in each site's loss; fedbn: fedavg, each site training with its own batch-norm layers.")] = "fedavg",
    fedprox_mu: FedproxMu = None,
    modalities: Annotated[str, typer.Option(help="Data types of the model, comma-separated: image, clinical, "
                                                 "lab.")] = "image",
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and of each site's training.")] = 0,
    dp_epsilon: DpEpsilon = None,
    dp_delta: DpDelta = None,
    dp_clip: DpClip = None,
) -> None:
    """Simulate a federation of SITES on this machine and write its model as a bundle."""
    console = CliConsole()
    chosen = _check_modalities(modalities)
    privacy = _privacy(dp_epsilon, dp_delta, dp_clip, rounds)
    fedprox_mu = _fedprox_mu(strategy, fedprox_mu)
    with reported_errors(exit_code=USER_ERROR):
        federation = _import_federation()
        started = time.perf_counter()
        result = federation.simulate(sites, out, work or out.with_name(out.name + ".federation"),
                                     federation.federation_options(chosen, seed), rounds, local_epochs, strategy,
                                     fedprox_mu, privacy)
    seconds = time.perf_counter() - started
    table = Table(title=f"{strategy}, {rounds} rounds x {local_epochs} local epoch(s), {'+'.join(chosen)}")
    for column in ("site", "cohort folder", "training participants", "sent per round"):
        table.add_column(column)
    for name, sent in result.sent().items():
        table.add_row(name, result.sites[name], str(sent[-1]["participants"]),
                      f"{sent[-1]['bytes'] / 1e6:.2f} MB x {len(sent)}")
    console.print(table)
    if privacy is not None:
        console.print(f"differential privacy: {privacy.describe(chosen)}")
    console.print(f"model: {result.bundle} ({seconds:.0f} s); what each site sent: {result.site_folders}")


def _privacy(epsilon: float | None, delta: float | None, clip: float | None, rounds: int):  # noqa: ANN202
    """The sites' update privacy asked on the command line (None: off), or the mistake named."""
    if epsilon is None:
        if delta is not None or clip is not None:
            raise typer.BadParameter("--dp-delta and --dp-clip need --dp-epsilon; fix: add --dp-epsilon, e.g. 8",
                                     param_hint="--dp-epsilon")
        return None
    try:
        from model_build.federated.privacy import UpdatePrivacy

        return UpdatePrivacy(epsilon=epsilon, delta=1e-5 if delta is None else delta,
                             clip=1.0 if clip is None else clip, rounds=rounds)
    except ValueError as wrong:
        raise typer.BadParameter(f"{wrong}; fix: e.g. --dp-epsilon 8 --dp-delta 1e-5 --dp-clip 1",
                                 param_hint="--dp-epsilon/--dp-delta/--dp-clip") from None


def _fedprox_mu(strategy: str, mu: float | None) -> float:
    """FedProx's mu as asked (default ``DEFAULT_FEDPROX_MU``), or the mistake named: mu is FedProx's only."""
    if mu is None:
        return DEFAULT_FEDPROX_MU
    if strategy != "fedprox":
        raise typer.BadParameter(f"--strategy {strategy} has no proximal term; fix: add --strategy fedprox or "
                                 "leave --fedprox-mu out", param_hint="--fedprox-mu")
    if not mu > 0:
        raise typer.BadParameter(f"{mu}: give a proximal coefficient above 0, e.g. {DEFAULT_FEDPROX_MU}",
                                 param_hint="--fedprox-mu")
    return mu


def _modalities(text: str, known: tuple[str, ...]) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    if not chosen or any(m not in known for m in chosen):
        raise typer.BadParameter(f"{text!r}: use data types from {', '.join(known)}, comma-separated, "
                                 "e.g. image or clinical,lab", param_hint="--modalities")
    return chosen


def _import_federation():  # noqa: ANN202
    """The federation module, or a fix when NVIDIA FLARE (the `federated` extra) is missing."""
    try:
        from model_build.federated import simulate as federation
    except ModuleNotFoundError as missing:
        from sarco_core.errors import SarcoError

        raise SarcoError(f"{missing.name} is not installed; fix: pip install -c constraints.txt -e "
                         "'.[workstation,federated]'") from None
    return federation


def _check_modalities(modalities: str) -> list[str]:
    from model_build.models import MODALITIES

    chosen = _modalities(modalities, MODALITIES)
    return chosen


def _import_tenseal() -> None:
    """TenSEAL, the encryption of FLARE's secure aggregation, or its fix."""
    from importlib.util import find_spec

    if find_spec("tenseal") is None:
        from sarco_core.errors import SarcoError

        raise SarcoError("tenseal is not installed (secure aggregation's encryption); fix: pip install -c "
                         "constraints.txt -e '.[workstation,federated]'")


def _import_deploy():  # noqa: ANN202
    _import_federation()  # the fix when FLARE is missing
    from model_build.federated import deploy

    return deploy


@federated_app.command("compare")
def compare(
    consortium: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Consortium folder: sites/<site>/ "
                                               "and evaluation/ (`sarco synth OUT --size consortium`).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for every model, its evaluation and "
                                                    "comparison.json / comparison.md.")],
    rounds: Annotated[int, typer.Option(min=1, help="Federation rounds.")] = 8,
    local_epochs: LocalEpochs = 4,
    strategy: Annotated[Optional[list[str]], typer.Option(
        help="A federation to run (repeatable): fedavg, fedprox or fedbn; the one with the lower validation loss is "
             "judged against the targets. Default: fedavg.")] = None,
    modalities: Annotated[str, typer.Option(help="Data types of the model, comma-separated.")] = "image",
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and every training.")] = 0,
) -> None:
    """Pooled vs federated vs each site alone, evaluated on the consortium's evaluation cohorts."""
    from model_build.models import MODALITIES

    chosen = _modalities(modalities, MODALITIES)
    console = CliConsole()
    with reported_errors(exit_code=USER_ERROR):
        _import_federation()  # FLARE missing: one error line with the fix, before any training
        from model_build.federated.compare import CompareOptions, compare as run_comparison, table_markdown
        from sarco_core.progress import CommandProgress

        options = CompareOptions(rounds=rounds, local_epochs=local_epochs, strategies=tuple(strategy or ["fedavg"]),
                                 modalities=tuple(chosen), seed=seed)
        with CommandProgress(CliConsole(stderr=True)) as progress:
            result = run_comparison(consortium, out, options, progress)
    console.print(table_markdown(result), markup=False)
    targets = result["targets"]
    for cohort in result["cohorts"]:
        found = targets[cohort]
        console.print(f"{targets['federation']} on {cohort}: {found['difference_vs_pooled']:+.3f} AUC against pooled "
                      f"({'within' if found['within_pooled'] else 'NOT within'} 0.01); "
                      f"{'better' if found['beats_median_site'] else 'NOT better'} than the median site(s) "
                      f"{', '.join(found['median_sites'])} at P < 0.05; better than {len(found['beats_sites'])} "
                      f"site(s) alone")
        if "oracle_auc" in found:
            console.print(f"  the Bayes oracle (truth.csv) on {cohort}: AUC {found['oracle_auc']:.3f}, "
                          f"{'better' if found['oracle_beats_median_site'] else 'NOT better'} than the median "
                          "site(s) at P < 0.05: the ceiling of any training on these participants")


@federated_app.command("provision")
def provision(
    address: Annotated[str, typer.Option(help="Where the sites reach the coordinator, HOST:PORT "
                                              "(HOST goes into its certificate).")],
    site: Annotated[list[str], typer.Option(help="A site's name (at least 2; give --site once per site).")],
    out: Annotated[Path, typer.Option(help="Empty folder for the startup kits.")],
    secure_aggregation: SecureAggregation = False,
) -> None:
    """Startup kits (a root CA; a certificate and key per party; mutual TLS) for a coordinator and SITEs."""
    console = CliConsole()
    with reported_errors(exit_code=USER_ERROR):
        deploy = _import_deploy()
        if secure_aggregation:
            _import_tenseal()
        started = time.perf_counter()
        kits = deploy.provision(address, site, out, secure_aggregation)
    keys = " and secure aggregation's keys (the sites' secret, the server's public)" if secure_aggregation else ""
    table = Table(title=f"startup kits{keys} for a coordinator at {address} ({time.perf_counter() - started:.1f} s)")
    for column in ("party", "kit (give it to that party only)"):
        table.add_column(column)
    table.add_row("coordinator: server", str(kits.server))
    table.add_row("coordinator: admin", str(kits.admin))
    for name, kit in kits.sites.items():
        table.add_row(name, str(kit))
    console.print(table)


@federated_app.command("coordinator")
def coordinator(
    kits: Annotated[Path, typer.Option(exists=True, file_okay=False,
                                       help="The coordinator's kits: the --out of `sarco federated provision` "
                                            "(its server and admin kits are used; the sites' are not read).")],
    calibration: Annotated[Path, typer.Option(exists=True, file_okay=False,
                                              help="A cohort folder the coordinator holds: the bundle's decision "
                                                   "threshold is chosen on its inner validation split.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write (the last round's global model).")],
    sites: Annotated[int, typer.Option(min=1, help="Sites to wait for before the first round.")],
    min_sites: Annotated[Optional[int], typer.Option(min=1, help="Updates that end a round (after --wait-after-min), "
                                                                 "and the sites alive below which the job stops "
                                                                 "(default: --sites).")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Federation rounds.")] = 8,
    local_epochs: LocalEpochs = 4,
    wait_after_min: Annotated[int, typer.Option(min=0, help="Seconds a round still waits for the other sites "
                                                            "once --min-sites updates are in.")] = 60,
    round_timeout: Annotated[int, typer.Option(min=0, help="Seconds after which a round ends with the updates it "
                                                           "has (0: no limit).")] = 0,
    join_timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for --sites to connect; after it, "
                                                            "--min-sites are enough.")] = 600.0,
    site_timeout: Annotated[float, typer.Option(min=20, help="Seconds without a site's heartbeat (every 10 s) "
                                                             "before the server logs it out.")] = 60.0,
    strategy: Annotated[Literal[STRATEGIES], typer.Option(
        help="fedavg, fedprox or fedbn (as for simulate).")] = "fedavg",
    fedprox_mu: FedproxMu = None,
    modalities: Annotated[str, typer.Option(help="Data types of the model, comma-separated: image, clinical, "
                                                 "lab (clinical/lab: a first job agrees their encoders from the "
                                                 "sites' column sums).")] = "image",
    threads: Annotated[Optional[int], typer.Option(min=1, help="Torch threads each site trains with.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and of each site's training.")] = 0,
    work: Annotated[Optional[Path], typer.Option(help="Server log, the job's downloaded result and rounds.json "
                                                      "(default: OUT.coordinator next to OUT).")] = None,
    dp_epsilon: DpEpsilon = None,
    dp_delta: DpDelta = None,
    dp_clip: DpClip = None,
    secure_aggregation: SecureAggregation = False,
) -> None:
    """Run the coordinator: start the server, wait for the sites, run the rounds, write the bundle."""
    from dataclasses import replace

    console = CliConsole()
    chosen = _check_modalities(modalities)
    privacy = _privacy(dp_epsilon, dp_delta, dp_clip, rounds)
    fedprox_mu = _fedprox_mu(strategy, fedprox_mu)
    with reported_errors(exit_code=USER_ERROR):
        deploy = _import_deploy()
        federation = _import_federation()
        if secure_aggregation:
            _import_tenseal()
        party_kits = deploy.kit_folders(kits, [])
        options = replace(federation.federation_options(chosen, seed), threads=threads)
        result = deploy.coordinate(party_kits.server, party_kits.admin, calibration, out,
                                   work or out.with_name(out.name + ".coordinator"), options, rounds, local_epochs,
                                   sites, min_sites or sites, wait_after_min, round_timeout, join_timeout,
                                   site_timeout=site_timeout, strategy=strategy, fedprox_mu=fedprox_mu,
                                   privacy=privacy, secure_aggregation=secure_aggregation, say=console.print)
    if result.statistics_from:
        console.print(f"clinical/lab encoders agreed from the column sums of {', '.join(result.statistics_from)}")
    table = Table(title=f"{strategy}, {rounds} rounds: which sites sent an update")
    for column in ("round", "sent to", "updates from", "no update from"):
        table.add_column(column)
    for record in result.rounds:
        table.add_row(str(record["round"] + 1), ", ".join(record["sent_to"]), ", ".join(record["updates_from"]),
                      ", ".join(record["no_update_from"]) or "-")
    console.print(table)
    if result.status != "FINISHED:COMPLETED":
        console.print(f"FLARE's job status: {result.status} (a site that left did not report the job's end, or "
                      "died while uploading an update; every round ran)")
    if privacy is not None:
        console.print(f"differential privacy: {privacy.describe(chosen)}")
    if secure_aggregation:
        console.print("secure aggregation: every update encrypted at its site (TenSEAL CKKS); the server added them "
                      "without the secret key, and the last average was decrypted at the sites")
    steps = {"server up": "server_up", "sites joined": "sites_joined", "encoders agreed": "encoders_agreed",
             "job done": "job_done"}
    timeline = ", ".join(f"{step} {result.seconds[key]:.0f} s" for step, key in steps.items() if key in result.seconds)
    console.print(f"model: {result.bundle} ({result.seconds['shut_down']:.0f} s: {timeline}); the job's result and "
                  f"server log: {result.result}")


@federated_app.command("site")
def site(
    cohort: Annotated[Path, typer.Argument(exists=True, file_okay=False,
                                           help="This site's cohort folder (it stays here: only weights and "
                                                "aggregate metrics leave).")],
    kit: Annotated[Path, typer.Option(exists=True, file_okay=False, help="This site's startup kit.")],
    work: Annotated[Optional[Path], typer.Option(help="Where the site keeps a copy of what it sent each round "
                                                      "(default: KIT.work next to KIT).")] = None,
    max_epsilon: Annotated[Optional[float], typer.Option(
        min=0.0001, help="This site's own privacy floor: it trains only under differential privacy "
                                   "of at most this epsilon and sends no column sums, whatever the coordinator "
                                   "plans. Default: what the coordinator plans.")] = None,
) -> None:
    """Run one site: connect to the coordinator named in KIT and train when it asks, until it shuts down."""
    console = CliConsole()
    with reported_errors(exit_code=USER_ERROR):
        deploy = _import_deploy()
        if deploy.holds_secret_key(kit):  # a kit for secure aggregation
            _import_tenseal()
        console.print(f"site {kit.name}: cohort {cohort} (not sent); connecting with {kit}")
        deploy.run_site(cohort, kit, work or kit.with_name(kit.name + ".work"), max_epsilon)
