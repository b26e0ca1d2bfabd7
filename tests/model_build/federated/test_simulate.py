"""FedAvg on NVIDIA FLARE's simulator: 2 sites x 2 rounds of the tabular (clinical + lab) model.

Checks the machinery, not accuracy: the encoders are agreed from site sums, the server's global
model is the participant-weighted mean of what the sites sent in the last round, and those
weights come back as a normal bundle that predicts. Skipped where FLARE is not installed (it is
the optional `federated` extra: pip install -c constraints.txt -e '.[workstation,federated]').
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("nvflare", reason="NVIDIA FLARE is not installed (the optional `federated` extra)")

from model_build.api import load_model  # noqa: E402
from model_build.federated.encoders import agree_encoders, site_statistics  # noqa: E402
from model_build.cli import app  # noqa: E402
from model_build.federated.simulate import flare_processes, load_global_weights, simulate  # noqa: E402
from model_build.federated.site import proximal_term  # noqa: E402
from model_build.models.bundle import load_bundle  # noqa: E402
from model_build.models.train import TrainOptions  # noqa: E402
from testkit.cohort_factory import make_cohort  # noqa: E402
from testkit.federated_sites import tabular_site  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

ROUNDS = 2


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("federation")
    sites = [tabular_site(root / "hospital-a", seed=1), tabular_site(root / "hospital-b", seed=2, development=20)]
    options = TrainOptions(modalities=["clinical", "lab"], seed=0, threads=1)
    return sites, options, simulate(sites, root / "bundle", root / "work", options, rounds=ROUNDS)


@pytest.mark.slow
def test_fedavg_simulation_trains_the_tabular_model_and_ends_in_a_bundle(federation):
    sites, options, result = federation
    assert list(result.sites) == ["site-1", "site-2"]

    # The global model is FedAvg of the last round: each site's weights, weighted by its participants.
    sent = [torch.load(result.site_folders / name / f"sent-round-{ROUNDS - 1}.pt",
                       weights_only=True) for name in result.sites]
    assert sent[0]["participants"] != sent[1]["participants"]  # so that the weighting matters
    total = sum(s["participants"] for s in sent)
    global_weights = load_global_weights(result.global_model)
    for name, value in global_weights.items():
        expected = sum(s["weights"][name].double() * s["participants"] for s in sent) / total
        assert torch.allclose(value.double(), expected, atol=1e-5), name
    assert not torch.equal(sent[0]["weights"]["heads.clinical.1.weight"], sent[1]["weights"]["heads.clinical.1.weight"])

    # The bundle holds those weights and the agreed encoders, and predicts a participant.
    bundle = load_bundle(result.bundle)
    assert bundle.config.modalities == ["clinical", "lab"]
    for name, value in bundle.model.state_dict().items():
        assert torch.allclose(value.double(), global_weights[name].double(), atol=1e-6), name
    agreed = agree_encoders([site_statistics(site, options) for site in sites])
    assert bundle.encoders["lab"].to_dict() == agreed["lab"].to_dict()
    assert bundle.training["epochs_run"] == ROUNDS
    answer = load_model(result.bundle, device="cpu").predict(clinical={"age": 81, "sex": "F"}, lab={})
    assert 0.0 <= answer["probability"] <= 1.0


def test_the_proximal_term_is_fedproxs_distance_to_the_global_weights():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model[1].weight.requires_grad_(False)  # frozen: the optimizer never moves it, so it pays nothing
    penalty = proximal_term(model, mu=0.5)
    assert float(penalty(model).detach()) == 0.0
    with torch.no_grad():
        model[0].weight += 0.1
        model[1].weight += 5.0
    assert float(penalty(model).detach()) == pytest.approx(0.5 / 2 * 6 * 0.1 ** 2)


@pytest.mark.slow
def test_the_command_federates_the_image_model_with_fedprox_into_a_bundle(tmp_path):
    """`sarco federated simulate` as a consortium would call it: two site folders with images,
    FedProx, the image model (the default); every site trained under FLARE's coefficient, and the
    bundle is one `sarco evaluate` reads."""
    sites = [make_cohort(tmp_path / name, seed=seed, n_participants=30, videos=False).root
             for name, seed in (("hospital-a", 1), ("hospital-b", 2))]
    runner = CliRunner()
    result = runner.invoke(app, ["federated", "simulate", *map(str, sites), "--out", str(tmp_path / "model"),
                                 "--rounds", "2", "--strategy", "fedprox", "--fedprox-mu", "0.05"])
    assert result.exit_code == 0, result.output
    assert "site-1" in result.output and "MB x 2" in result.output
    for name in ("site-1", "site-2"):
        for round_number in range(2):
            sent = torch.load(tmp_path / "model.federation" / "sites" / name / f"sent-round-{round_number}.pt",
                              weights_only=True)
            assert sent["fedprox_mu"] == pytest.approx(0.05)
            assert any(key.startswith("encoders.image") for key in sent["weights"])
    bundle = load_bundle(tmp_path / "model")
    assert bundle.config.modalities == ["image"] and bundle.config.image_size == 64
    evaluated = runner.invoke(app, ["evaluate", str(tmp_path / "model"), str(sites[0]), "--cohort", "external",
                                    "--out", str(tmp_path / "evaluation")])
    assert evaluated.exit_code == 0, evaluated.output


@pytest.mark.parametrize(("arguments", "message"), [
    (["{a}"], "at least 2 site cohort folders"),
    (["{a}", "{a}"], "given twice"),
    (["{a}", "{empty}"], "no participants.csv"),
    (["{a}", "{b}", "--modalities", "image,ct"], "use data types from"),
    (["{a}", "{b}", "--fedprox-mu", "0.1"], "add --strategy fedprox"),
    (["{a}", "{b}", "--strategy", "fedbn", "--fedprox-mu", "0.01"], "--strategy fedbn has no proximal term"),
    (["{a}", "{b}", "--strategy", "fedprox", "--fedprox-mu", "0"], "above 0"),
])
def test_the_command_names_the_mistake_and_the_fix(tmp_path, arguments, message):
    folders = {"a": tmp_path / "a", "b": tmp_path / "b", "empty": tmp_path / "empty"}
    for name in ("a", "b"):
        tabular_site(folders[name], seed=1)
    folders["empty"].mkdir()
    argv = [argument.format(**{k: str(v) for k, v in folders.items()}) for argument in arguments]
    result = CliRunner().invoke(app, ["federated", "simulate", *argv, "--out", str(tmp_path / "model")])
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("strategy", ["fedbn", "fedavg"])
def test_under_fedbn_a_site_trains_with_its_own_batch_norms(tmp_path, strategy):
    """FedBN keeps each site's batch-norm layers (Li et al. 2021): in round 2 the site trains with
    the norms it ended round 1 with, not the server's average, while the validation loss it
    reports is the received global model's. Round 2 trains nothing here (its epoch is replaced by
    a no-op), so what the site sends back shows which norms it would have trained with."""
    from dataclasses import replace

    from model_build.federated.network import FederatedNetwork
    from model_build.federated.simulate import federation_options, network_arguments
    from model_build.federated.site import Site, norm_state

    cohort = make_cohort(tmp_path / "hospital", seed=3, n_participants=24, videos=False).root
    options = replace(federation_options(["image"], 0), threads=1)
    site = Site(cohort, options, {}, tmp_path / "site", rounds=2, local_epochs=1, strategy=strategy)
    initial = FederatedNetwork(**network_arguments(options, {})).state_dict()
    after_one, _ = site.train_round(initial, 0)
    norms = norm_state(site.trainer.model)
    trained = "encoders.image.net._blocks.15._bn2.weight"  # a batch norm of a block that trains
    frozen = "encoders.image.net._bn0.running_mean"  # the stem's: frozen (eval mode) in the study's recipe
    assert {trained, frozen} <= set(norms) and not torch.equal(after_one[trained], initial[trained])
    assert torch.equal(after_one[frozen], initial[frozen])

    averaged = {name: value + 1.0 if name in norms and value.is_floating_point() else value
                for name, value in after_one.items()}  # as if other sites' norms were averaged in
    site.trainer.train_epoch = lambda *arguments: 0.0  # round 2: load, evaluate, (no) training, send
    after_two, metrics = site.train_round(averaged, 1)
    for name in (trained, frozen):
        assert torch.equal(after_two[name], norms[name] if strategy == "fedbn" else averaged[name]), name
    site.load(averaged)
    assert metrics["validation_log_loss"] == pytest.approx(site.evaluate())  # the received model's loss


def test_a_site_builds_its_network_from_a_first_model_that_arrives_flat(tmp_path):
    """Under secure aggregation FLARE's decryptor hands over flat float vectors: a site whose first
    model comes that way (it missed round 1) shapes it from the plan's network, batch counters
    rounded, and holds exactly those weights."""
    from dataclasses import replace

    from model_build.federated.network import FederatedNetwork
    from model_build.federated.simulate import federation_options, network_arguments
    from model_build.federated.site import Site

    cohort = make_cohort(tmp_path / "hospital", seed=4, n_participants=24, videos=False).root
    options = replace(federation_options(["image"], 0), threads=1)
    network = network_arguments(options, {})
    site = Site(cohort, options, {}, tmp_path / "site", rounds=2, secure_aggregation=True, network=network)
    shaped = FederatedNetwork(**network).state_dict()
    flat = {name: value.double().flatten() + (1e-7 if not value.is_floating_point() else 0.0)
            for name, value in shaped.items()}
    held = site.load(flat).model.state_dict()
    assert all(torch.equal(held[name], shaped[name].to(held[name].dtype)) for name in shaped)
    assert all(held[name].dtype == shaped[name].dtype for name in shaped)


def test_flares_processes_start_fresh_and_find_the_whole_installed_package(tmp_path, monkeypatch):
    """In the block, processes are spawned (a fork of a process whose torch ran OpenMP threads
    can hang) and find the installed model_build before the partial copy FLARE ships into a
    job's custom folder; afterwards every setting is as it was. The child runs outside the
    repository, as `sarco federated simulate` does when called from elsewhere."""
    custom = tmp_path / "custom"
    (custom / "model_build" / "federated").mkdir(parents=True)
    (custom / "model_build" / "federated" / "controller.py").write_text("")  # what FLARE ships
    monkeypatch.delenv("PYTHONPATH", raising=False)
    importing = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(custom)!r}); "
                 "import model_build.federated.network"]
    before = multiprocessing.get_start_method(allow_none=True), sys.path[:]
    with pytest.raises(RuntimeError, match="inside"):
        with flare_processes():
            assert multiprocessing.get_start_method() == "spawn"
            done = subprocess.run(importing, cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            raise RuntimeError("inside")
    assert (multiprocessing.get_start_method(allow_none=True), sys.path) == before
    assert "PYTHONPATH" not in os.environ
