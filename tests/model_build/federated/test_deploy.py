"""The deployment runtime with real processes on 127.0.0.1: a coordinator and 3 sites, one of
them killed (SIGKILL, its whole process group) mid-federation, training the fused model (image,
clinical, lab), so that a first job agrees the clinical/lab encoders from the sites' sums.

`sarco federated provision` writes mutual-TLS startup kits; `sarco federated coordinator`
starts FLARE's server and submits the job; each `sarco federated site COHORT --kit KIT` becomes a
FLARE client that alone knows its cohort folder. With --min-sites 2 the rounds go on without the
killed site, the job ends, the bundle loads, and the coordinator names the sites that sent an
update in each round. Skipped where FLARE is not installed (the optional `federated` extra).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

pytest.importorskip("nvflare", reason="NVIDIA FLARE is not installed (the optional `federated` extra)")

from model_build.cli import app  # noqa: E402
from model_build.federated.encoders import agree_encoders  # noqa: E402
from model_build.federated.simulate import CLIENT_SCRIPT  # noqa: E402
from model_build.models.bundle import load_bundle  # noqa: E402
from testkit.cohort_factory import make_cohort  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

SITES = ["site-1", "site-2", "site-3"]
ROUNDS = 3  # site-3 is killed in round 1; rounds 1 and 2 go on without it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sarco(*arguments: object) -> list[str]:
    return [sys.executable, "-c", "from model_build.cli import app; app()", *map(str, arguments)]


@pytest.fixture
def processes(tmp_path):
    """Processes started by the test, as a hospital starts them: outside the repository, with
    no PYTHONPATH (the installed package alone); every one left is killed with every process
    under it (FLARE's job processes included) on the way out."""
    started: list[subprocess.Popen] = []
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}

    def start(command: list[str], log: Path) -> subprocess.Popen:
        with open(log, "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                       start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        kill_tree(process)


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL to ``process`` and every process under it: FLARE starts each job's process in
    a process group of its own, so killing the site's group would leave its training running."""
    try:
        victims = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        victims = []
    for victim in victims:
        try:
            victim.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=30)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_site_killed_mid_round_does_not_stop_the_federation(tmp_path, processes):
    port = free_port()
    kits = tmp_path / "kits"
    provisioned = CliRunner().invoke(app, ["federated", "provision", "--address", f"127.0.0.1:{port}",
                                           *[a for name in SITES for a in ("--site", name)], "--out", str(kits)])
    assert provisioned.exit_code == 0, provisioned.output
    site_kits = {name: kits / "sarco" / "prod_00" / name for name in SITES}
    fed_client = json.loads((site_kits["site-1"] / "startup" / "fed_client.json").read_text())
    assert fed_client["client"]["connection_security"] == "mtls"  # each party proves itself with its certificate
    assert fed_client["servers"][0]["service"]["target"] == f"127.0.0.1:{port}"

    cohorts = {name: make_cohort(tmp_path / f"hospital-{n}", seed=n, n_participants=30, videos=False).root
               for n, name in enumerate(SITES, start=1)}
    calibration = make_cohort(tmp_path / "coordinator-hospital", seed=9, n_participants=30, videos=False).root
    bundle, work = tmp_path / "bundle", tmp_path / "coordinator-work"
    coordinator = processes(sarco("federated", "coordinator", "--kits", kits, "--calibration", calibration,
                                  "--out", bundle, "--work", work, "--sites", 3, "--min-sites", 2,
                                  "--rounds", ROUNDS, "--local-epochs", 1, "--wait-after-min", 10, "--site-timeout", 30,
                                  "--join-timeout", 120, "--threads", 1, "--modalities", "image,clinical,lab"),
                        tmp_path / "coordinator.log")
    sites = {name: processes(sarco("federated", "site", cohorts[name], "--kit", site_kits[name],
                                   "--work", tmp_path / f"{name}-work"), tmp_path / f"{name}.log")
             for name in SITES}

    # Kill site-3 (its FLARE client and its job process) while it trains round 1 (its log
    # says it received round 1's model; its round-0 update is in, since round 1 has begun).
    site_3_log = tmp_path / "site-3-work" / "site-3" / "rounds.log"
    wait_for(lambda: site_3_log.is_file() and "round 1: received" in site_3_log.read_text(), 150,
             "site-3 in round 1")
    kill_tree(sites["site-3"])

    coordinator.wait(timeout=240)
    output = (tmp_path / "coordinator.log").read_text()
    assert coordinator.returncode == 0, output[-3000:]
    for name in ("site-1", "site-2"):  # the coordinator shut the live sites down at the end
        sites[name].wait(timeout=60)

    # Every round went on without site-3 once it was gone, and the coordinator says who sent.
    rounds = json.loads((work / "rounds.json").read_text())
    assert [record["round"] for record in rounds] == list(range(ROUNDS))
    assert rounds[0]["updates_from"] == SITES
    assert "site-3" in rounds[1]["sent_to"] and rounds[1]["no_update_from"] == ["site-3"]  # killed mid-round
    assert [record["updates_from"] for record in rounds[1:]] == [["site-1", "site-2"]] * (ROUNDS - 1)
    assert "which sites sent an update" in output and "site-1, site-2" in output
    training_result = next(work.rglob("sarco-rounds.json")).parents[1]  # the job's folder: workspace/..
    server_log = (training_result / "workspace" / "log.txt").read_text()
    assert "sarco round 0: updates from ['site-1', 'site-2', 'site-3']" in server_log
    assert "sarco round 1: updates from ['site-1', 'site-2']; none from ['site-3']" in server_log

    # The encoders came from all three sites' column sums (before any was killed), and every
    # site trained with them: the plan in the training job holds them, the bundle too.
    assert "encoders agreed from the column sums of site-1, site-2, site-3" in output
    statistics = json.loads(next(work.rglob("sarco-statistics.json")).read_text())
    assert sorted(statistics) == SITES and set(statistics["site-1"]) == {"clinical", "lab"}
    assert "sent the column sums" in (tmp_path / "site-1-work" / "site-1" / "rounds.log").read_text()

    # What the coordinator sent the sites held no site's path, and of the project's code only
    # the site script (each party imports its own installed model_build and sarco_core).
    jobs = sorted(work.glob("result/*/job/*/app"))
    assert len(jobs) == 2  # the statistics job, then training
    for job in jobs:
        client_config = (job / "config" / "config_fed_client.json").read_text()
        assert not any(str(cohort) in client_config for cohort in cohorts.values())
        shipped = sorted((job / "custom").rglob("*.py"))  # its folder follows the coordinator's working folder
        assert [path.name for path in shipped] == ["client.py"]
        assert shipped[0].read_text() == CLIENT_SCRIPT.read_text()

    # What a site sent: weights and aggregate numbers only.
    kept = torch.load(tmp_path / "site-1-work" / "site-1" / f"sent-round-{ROUNDS - 1}.pt", weights_only=True)
    assert set(kept) == {"weights", "metrics", "participants", "fedprox_mu", "metrics_sent"}
    assert set(kept["metrics"]) == {"validation_log_loss", "train_loss"}

    loaded = load_bundle(bundle)
    assert loaded.config.modalities == ["image", "clinical", "lab"]
    assert loaded.encoders["lab"].to_dict() == agree_encoders(list(statistics.values()))["lab"].to_dict()
    assert loaded.training["epochs_run"] == ROUNDS


def test_mistakes_end_with_a_fix(tmp_path, monkeypatch):
    from model_build.federated.deploy import Coordinator, split_address
    from model_build.federated.simulate import FederationError

    with pytest.raises(FederationError, match="HOST:PORT"):
        split_address("127.0.0.1")
    out = tmp_path / "kits"
    first = CliRunner().invoke(app, ["federated", "provision", "--address", "127.0.0.1:8002", "--site", "a",
                                     "--site", "b", "--out", str(out)])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, ["federated", "provision", "--address", "127.0.0.1:8002", "--site", "a",
                                     "--site", "b", "--out", str(out)])
    assert again.exit_code != 0 and "already there" in again.output
    site = CliRunner().invoke(app, ["federated", "site", str(tmp_path), "--kit", str(out / "sarco" / "prod_00" / "a")])
    assert site.exit_code != 0 and "no participants.csv" in site.output
    coordinator = ["federated", "coordinator", "--kits", str(out), "--calibration", str(tmp_path), "--out",
                   str(tmp_path / "model"), "--sites", "2"]
    for extra, message in ((["--fedprox-mu", "0.1"], "--strategy fedavg has no proximal term"),
                           (["--strategy", "fedbn", "--fedprox-mu", "0.01"], "add --strategy fedprox"),
                           (["--strategy", "fedprox", "--fedprox-mu", "0"], "above 0")):
        refused = CliRunner().invoke(app, coordinator + extra)
        assert refused.exit_code != 0 and message in refused.output, refused.output
    (tmp_path / "participants.csv").write_text("participant_id\n")  # past the calibration check, to the kits'
    refused = CliRunner().invoke(app, coordinator + ["--secure-aggregation"])
    assert refused.exit_code != 0 and "provisioned without secure aggregation" in refused.output, refused.output
    assert "waiting for" not in refused.output  # no server was started, so nothing waits for the sites

    # Kits given by a relative path (as people type them): the server's settings get absolute paths,
    # which FLARE requires of its snapshot store.
    monkeypatch.chdir(tmp_path)
    kit = Path("kits/sarco/prod_00")
    Coordinator(kit / "server", kit / "admin", Path("work")).write_local_settings()
    resources = json.loads((out / "sarco" / "prod_00" / "server" / "local" / "resources.json").read_text())
    assert Path(resources["snapshot_persistor"]["args"]["storage"]["args"]["root_dir"]).is_absolute()
    assert not (tmp_path / "model").exists()


def test_the_plan_a_site_receives_holds_options_not_paths():
    from model_build.federated.deploy import decode_plan, deployment_plan, encode_plan
    from model_build.federated.simulate import federation_options

    plan = deployment_plan(federation_options(["image"], 0), rounds=2, local_epochs=1)
    word = encode_plan(plan)
    assert word.isascii() and " " not in word  # one argument of the site script
    assert decode_plan(word) == plan
    assert set(plan) == {"options", "rounds", "local_epochs", "strategy", "fedprox_mu", "secure_aggregation",
                         "privacy", "encoders", "network"}


@pytest.mark.slow
def test_a_site_with_a_privacy_floor_sends_no_sums_and_trains_under_the_plans_privacy(tmp_path, processes):
    """`sarco federated site --max-epsilon 8`: the site answers the statistics job without sums
    (the encoders are agreed from the other site's), then trains, since the coordinator plans
    epsilon 8; no metric leaves either site, and the bundle records the guarantee."""
    port = free_port()
    kits = tmp_path / "kits"
    names = SITES[:2]
    provisioned = CliRunner().invoke(app, ["federated", "provision", "--address", f"127.0.0.1:{port}",
                                           *[a for name in names for a in ("--site", name)], "--out", str(kits)])
    assert provisioned.exit_code == 0, provisioned.output
    cohorts = {name: make_cohort(tmp_path / f"hospital-{n}", seed=n, n_participants=30, videos=False).root
               for n, name in enumerate(names, start=1)}
    calibration = make_cohort(tmp_path / "coordinator-hospital", seed=9, n_participants=30, videos=False).root
    bundle, work = tmp_path / "bundle", tmp_path / "coordinator-work"
    coordinator = processes(sarco("federated", "coordinator", "--kits", kits, "--calibration", calibration,
                                  "--out", bundle, "--work", work, "--sites", 2, "--rounds", 2, "--local-epochs", 1,
                                  "--wait-after-min", 5, "--threads", 1, "--modalities", "clinical,lab",
                                  "--dp-epsilon", 8, "--dp-clip", 0.2), tmp_path / "coordinator.log")
    for name in names:
        floor = ["--max-epsilon", 8] if name == "site-2" else []
        processes(sarco("federated", "site", cohorts[name], "--kit", kits / "sarco" / "prod_00" / name,
                        "--work", tmp_path / f"{name}-work", *floor), tmp_path / f"{name}.log")
    coordinator.wait(timeout=300)
    output = (tmp_path / "coordinator.log").read_text()
    assert coordinator.returncode == 0, output[-3000:]
    assert "encoders agreed from the column sums of site-1\n" in output
    assert "not covered" in output
    log = (tmp_path / "site-2-work" / "site-2" / "rounds.log").read_text()
    assert "refused statistics" in log and "sent weights and None" in log
    rounds = json.loads((work / "rounds.json").read_text())
    assert [record["updates_from"] for record in rounds] == [names, names]
    privacy = json.loads((bundle / "training.json").read_text())["federation"]["privacy"]
    assert privacy["epsilon"] == 8 and any("column sums" in line for line in privacy["not_covered"])


@pytest.mark.slow
def test_under_secure_aggregation_the_server_adds_updates_it_cannot_read(tmp_path, processes):
    """`--secure-aggregation`: kits with FLARE's TenSEAL contexts (the secret key at the sites
    only), each site's update encrypted before it leaves, the server adding ciphertexts, and the
    last average decrypted by a site, for the fused model (frozen image layers included). The
    bundle is the participant-weighted mean of what the sites trained (their own plaintext
    copies), to CKKS's precision; the server's saved model holds only ciphertext; FedProx's mu
    reached the sites through the plan. One round: each encrypted round of this model moves
    about 255 MB per site (docs/federated.md), and one round already has every step above."""
    import tenseal as ts

    from model_build.federated.simulate import load_global_weights

    port = free_port()
    kits, names = tmp_path / "kits", SITES[:2]
    provisioned = CliRunner().invoke(app, ["federated", "provision", "--address", f"127.0.0.1:{port}",
                                           *[a for name in names for a in ("--site", name)], "--out", str(kits),
                                           "--secure-aggregation"])
    assert provisioned.exit_code == 0, provisioned.output
    root = kits / "sarco" / "prod_00"
    assert not ts.context_from((root / "server" / "startup" / "server_context.tenseal").read_bytes()).is_private()
    assert all(ts.context_from((root / name / "startup" / "client_context.tenseal").read_bytes()).is_private()
               for name in names)
    cohorts = {name: make_cohort(tmp_path / f"hospital-{n}", seed=n, n_participants=30, videos=False).root
               for n, name in enumerate(names, start=1)}
    calibration = make_cohort(tmp_path / "coordinator-hospital", seed=9, n_participants=30, videos=False).root
    bundle, work = tmp_path / "bundle", tmp_path / "coordinator-work"
    arguments = ["federated", "coordinator", "--kits", kits, "--calibration", calibration, "--out", bundle, "--work",
                 work, "--sites", 2, "--rounds", 1, "--local-epochs", 1, "--wait-after-min", 5, "--threads", 1,
                 "--modalities", "image,clinical,lab", "--strategy", "fedprox", "--fedprox-mu", 0.05,
                 "--secure-aggregation"]
    # The coordinator will not start while the sites' secret key is on its machine, nor average one update.
    refused = CliRunner().invoke(app, list(map(str, arguments)))
    assert refused.exit_code != 0 and "site-1, site-2 are still here" in refused.output, refused.output
    site_kits = {name: tmp_path / f"{name}-kit" for name in names}
    for name in names:  # handed out
        (root / name).rename(site_kits[name])
    refused = CliRunner().invoke(app, list(map(str, arguments + ["--min-sites", 1])))
    assert refused.exit_code != 0 and "averages at least 2 updates" in refused.output, refused.output

    coordinator = processes(sarco(*arguments), tmp_path / "coordinator.log")
    for name in names:
        processes(sarco("federated", "site", cohorts[name], "--kit", site_kits[name], "--work",
                        tmp_path / f"{name}-work"), tmp_path / f"{name}.log")
    coordinator.wait(timeout=300)
    output = (tmp_path / "coordinator.log").read_text()
    assert coordinator.returncode == 0, output[-3000:]
    assert "secure aggregation: every update encrypted" in output
    rounds = json.loads((work / "rounds.json").read_text())
    assert [record["updates_from"] for record in rounds] == [names]

    # The global model is the participant-weighted mean of the sites' updates.
    sent = {name: torch.load(tmp_path / f"{name}-work" / name / "sent-round-0.pt", weights_only=True)
            for name in names}
    assert all(kept["fedprox_mu"] == pytest.approx(0.05) for kept in sent.values())
    assert not any(kept["metrics_sent"] for kept in sent.values())  # the encryptor leaves metrics in the clear
    total = sum(kept["participants"] for kept in sent.values())
    weights = load_global_weights(next(work.rglob("sarco-global-model.pt")))
    bundled = load_bundle(bundle)
    assert bundled.training["federation"]["strategy"] == "fedprox"
    for key, value in weights.items():
        mean = sum(kept["weights"][key].double() * kept["participants"] for kept in sent.values()) / total
        assert value.shape == mean.shape and torch.allclose(value.double(), mean, atol=1e-4), key

    # The sites encrypted their updates, and what the server saved of the global model is
    # ciphertext for every tensor: it held no round's average in the clear but the last, which two
    # sites decrypted and agreed on.
    client_config = next(path for path in work.rglob("config_fed_client.json")
                         if "HEModelEncryptor" in path.read_text())
    encryptor = json.loads(client_config.read_text())["task_result_filters"][0]
    assert encryptor["tasks"] == ["train"] and encryptor["filters"][0]["path"].endswith("HEModelEncryptor")
    saved = torch.load(next(work.rglob("FL_global_model.pt")), map_location="cpu", weights_only=True)["model"]
    assert set(saved) == set(weights) and all(isinstance(value, bytes) for value in saved.values())
    assert "decrypted by site-1 and site-2" in next(path for path in work.rglob("log.txt")
                                                    if "SecureRounds" in path.read_text()).read_text()


def test_a_secure_round_refuses_to_average_fewer_than_two_updates():
    """The average of one encrypted update is that update; it would then be decrypted."""
    pytest.importorskip("tenseal", reason="secure aggregation needs TenSEAL")
    from nvflare.apis.dxo import DataKind
    from nvflare.apis.event_type import EventType

    from model_build.federated.secure import AtLeastTwoUpdates

    aggregator = AtLeastTwoUpdates(weigh_by_local_iter=False, expected_data_kind=DataKind.WEIGHTS)
    aggregator.handle_event(EventType.START_RUN, None)  # FLARE builds its accumulators at the run's start
    with pytest.raises(RuntimeError, match="0 update"):
        aggregator.aggregate(None)
    helper = next(iter(aggregator.dxo_aggregators.values())).aggregation_helper
    helper.add({"w": np.ones(3)}, 4.0, "site-1", 0)
    with pytest.raises(RuntimeError, match=r"1 update\(s\) this round \(site-1\)"):
        aggregator.aggregate(None)
    helper.add({"w": np.ones(3) * 3}, 4.0, "site-1", 0)  # the same site again
    with pytest.raises(RuntimeError, match="1 update"):
        aggregator.aggregate(None)


def test_the_final_model_is_kept_only_when_the_decrypting_sites_agree():
    """The last step of secure aggregation: an error answer is passed over, two sites' decryptions
    must agree, and with none there is no model."""
    pytest.importorskip("tenseal", reason="secure aggregation needs TenSEAL")
    from types import SimpleNamespace

    from nvflare.apis.dxo import DXO, DataKind
    from nvflare.apis.fl_constant import ReturnCode
    from nvflare.apis.shareable import make_reply

    from model_build.federated.secure import SecureRounds, agreed_model

    rounds = SecureRounds(min_clients=2, num_rounds=1)
    rounds.log_warning = lambda *arguments: None
    weights = {"w": np.arange(4.0)}
    answers = {"site-1": make_reply(ReturnCode.EXECUTION_EXCEPTION),
               "site-2": DXO(DataKind.WEIGHTS, data={"w": weights["w"] + 1e-7}).to_shareable(),
               "site-3": DXO(DataKind.WEIGHTS, data=weights).to_shareable()}
    for name, answer in answers.items():
        rounds._keep_decrypted(SimpleNamespace(result=answer, client=SimpleNamespace(name=name)), None)
    assert sorted(rounds._decrypted) == ["site-2", "site-3"]  # site-1's error is passed over
    model, refusal = agreed_model(rounds._decrypted, SecureRounds.AGREEMENT)
    assert refusal is None and np.allclose(model["w"], weights["w"], atol=1e-6)
    assert agreed_model({"site-2": {"w": weights["w"] + 0.1}, "site-3": weights}, 1e-3)[1].startswith(
        "site-2 and site-3 decrypted different global models")
    assert agreed_model({"site-2": weights}, 1e-3)[0] is weights  # one site left: its answer alone
    assert agreed_model({}, 1e-3) == (None, "no site returned the decrypted global model")
