"""Differential privacy on a site's updates: the clip, the noise, the epsilon, what leaves."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("opacus", reason="Opacus (the accountant) comes with the optional `federated` extra")

from model_build.federated.privacy import VARIANCE_FLOOR, UpdatePrivacy, private_names, privatize  # noqa: E402


def small_network() -> torch.nn.Module:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 1),
                                  torch.nn.BatchNorm1d(1))
    for value in network[2].parameters():  # a frozen layer: its weights never carry a site's data
        value.requires_grad_(False)
    for value in network[3].parameters():  # a frozen batch norm: its statistics stay as received
        value.requires_grad_(False)
    return network


def test_only_what_training_changes_is_private():
    names = private_names(small_network())
    assert names == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"}


def test_the_update_is_clipped_to_the_norm_and_the_rest_leaves_as_received():
    network = small_network()
    received = {name: value.clone() for name, value in network.state_dict().items()}
    sent = {name: value + 3.0 if value.is_floating_point() else value + 1 for name, value in received.items()}
    names = private_names(network)
    privacy = UpdatePrivacy(epsilon=8, delta=1e-5, clip=0.5, rounds=4)
    private, done = privatize(sent, received, names, privacy, noise_multiplier=0.0)
    norm = torch.sqrt(sum(torch.sum((private[n].double() - received[n].double()) ** 2) for n in names))
    assert float(norm) == pytest.approx(0.5, rel=1e-6)
    assert done["update_norm"] == pytest.approx(3.0 * sum(received[n].numel() for n in names) ** 0.5)
    for name in set(received) - names:  # frozen tensors and the batch counter: as received, whatever training did
        assert torch.equal(private[name], received[name]) and not torch.equal(private[name], sent[name])


def test_the_noise_has_the_mechanisms_deviation_and_no_seed_can_redraw_it():
    received = {"w": torch.zeros(200_000)}
    privacy = UpdatePrivacy(epsilon=8, delta=1e-5, clip=0.25, rounds=4)
    first, _ = privatize({"w": torch.zeros(200_000)}, received, {"w"}, privacy, noise_multiplier=1.5)
    second, _ = privatize({"w": torch.zeros(200_000)}, received, {"w"}, privacy, noise_multiplier=1.5)
    assert float(first["w"].std()) == pytest.approx(1.5 * 2 * 0.25, rel=0.01)  # sensitivity: 2 x clip
    assert not torch.equal(first["w"], second["w"])


def test_a_noised_running_variance_stays_positive():
    privacy = UpdatePrivacy(epsilon=1, delta=1e-5, clip=1.0, rounds=1)
    private, _ = privatize({"bn.running_var": torch.ones(10_000)}, {"bn.running_var": torch.ones(10_000)},
                           {"bn.running_var"}, privacy, noise_multiplier=5.0)
    assert float(private["bn.running_var"].min()) == pytest.approx(VARIANCE_FLOOR)


def spent(rounds: int, noise_multiplier: float, delta: float) -> float:
    """The epsilon (at ``delta``) that ``rounds`` releases at ``noise_multiplier`` spend, by Opacus's accountant."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for _ in range(rounds):
        accountant.step(noise_multiplier=noise_multiplier, sample_rate=1.0)
    return float(accountant.get_epsilon(delta))


@pytest.mark.parametrize(("epsilon", "rounds"), [(1.0, 8), (8.0, 8), (8.0, 2), (50.0, 20)])
def test_the_noise_multiplier_spends_the_asked_epsilon(epsilon, rounds):
    privacy = UpdatePrivacy(epsilon=epsilon, delta=1e-5, clip=1.0, rounds=rounds)
    z = privacy.noise_multiplier
    assert 0.97 * epsilon <= spent(rounds, z, 1e-5) <= epsilon
    assert spent(rounds, z * 0.9, 1e-5) > epsilon  # less noise would overspend: z is the smallest
    assert spent(2 * rounds, z, 1e-5) > epsilon  # each round's release counts


@pytest.mark.parametrize("wrong", [dict(epsilon=0), dict(delta=0), dict(delta=1), dict(clip=-1)])
def test_impossible_settings_are_refused(wrong):
    with pytest.raises(ValueError):
        UpdatePrivacy(**{"epsilon": 8, "delta": 1e-5, "clip": 1.0, "rounds": 2, **wrong})


@pytest.mark.slow
def test_a_private_federation_sends_noised_weights_and_no_metric(tmp_path):
    """`sarco federated simulate --dp-epsilon`: FLARE averages the noised updates; the sites' own
    copies say no metric was sent; the bundle records the guarantee."""
    pytest.importorskip("nvflare")
    from model_build.cli import app
    from model_build.federated.simulate import load_global_weights
    from testkit.federated_sites import tabular_site
    from typer.testing import CliRunner

    sites = [tabular_site(tmp_path / "a", seed=1), tabular_site(tmp_path / "b", seed=2, development=20)]
    result = CliRunner().invoke(app, ["federated", "simulate", *map(str, sites), "--out", str(tmp_path / "model"),
                                      "--modalities", "clinical,lab", "--rounds", "2", "--local-epochs", "1",
                                      "--dp-epsilon", "20", "--dp-clip", "0.5"])
    assert result.exit_code == 0, result.output
    assert "differential privacy: (20, 1e-05) over 2 rounds" in result.output
    work = tmp_path / "model.federation"
    sent = [torch.load(work / "sites" / name / "sent-round-1.pt", weights_only=True) for name in ("site-1", "site-2")]
    assert all(not s["metrics_sent"] and s["metrics"]["clip_scale"] <= 1 for s in sent)
    total = sum(s["participants"] for s in sent)
    for name, value in load_global_weights(next(work.rglob("FL_global_model.pt"))).items():
        expected = sum(s["weights"][name].double() * s["participants"] for s in sent) / total
        assert torch.allclose(value.double(), expected, atol=1e-5), name
    training = json.loads((tmp_path / "model" / "training.json").read_text())
    privacy = training["federation"]["privacy"]
    assert privacy["epsilon"] == 20 and privacy["clip"] == 0.5 and privacy["noise_multiplier"] > 0
    assert any("column sums" in line for line in privacy["not_covered"])  # clinical/lab: the sums are exact
    assert "not covered: " in result.output and "column sums" in result.output
    log = (work / "sites" / "site-1" / "rounds.log").read_text()  # the site's record of what left it
    assert "sent weights and None" in log and "validation_log_loss" not in log


@pytest.mark.parametrize(("arguments", "message"), [
    (["--dp-clip", "2"], "need --dp-epsilon"),
    (["--dp-delta", "1e-5"], "need --dp-epsilon"),
    (["--dp-epsilon", "0"], "epsilon 0.0"),
    (["--dp-epsilon", "8", "--dp-delta", "1"], "below 1"),
])
def test_privacy_mistakes_are_named_with_the_fix(tmp_path, arguments, message):
    from model_build.cli import app
    from testkit.federated_sites import tabular_site
    from typer.testing import CliRunner

    sites = [tabular_site(tmp_path / "a", seed=1), tabular_site(tmp_path / "b", seed=2)]
    result = CliRunner().invoke(app, ["federated", "simulate", *map(str, sites), "--out", str(tmp_path / "model"),
                                      *arguments])
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "model").exists()


def test_a_bundle_that_cannot_be_exported_names_the_kept_global_model(tmp_path):
    """Measured: the image model under --dp-epsilon 8 with --dp-clip 120 (noise of std ~430 per
    weight) failed the export's parity check after every round had run. The error says so and
    where the rounds' model is."""
    from types import SimpleNamespace

    from model_build.federated.simulate import FederationError, bundle_of_federation
    from model_build.models.export import ExportError

    def refuse(*arguments):
        raise ExportError("model.onnx: ONNX Runtime differs from PyTorch by 3.12e-02 (> 1e-04)")

    kept = tmp_path / "FL_global_model.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, kept)
    holder = SimpleNamespace(write_bundle=refuse, privacy=UpdatePrivacy(epsilon=8, delta=1e-5, clip=120, rounds=8))
    with pytest.raises(FederationError, match=f"every round ran and the global model is kept in {kept}.*dp-clip"):
        bundle_of_federation(holder, kept, tmp_path / "bundle", None)


@pytest.mark.parametrize(("planned", "task", "refused"), [
    (None, "train", "without differential privacy"),
    ({"epsilon": 20.0}, "train", "epsilon 20"),
    ({"epsilon": 8.0}, "train", None),
    ({"epsilon": 2.0}, "train", None),
    ({"epsilon": 2.0}, "statistics", "sends none"),
])
def test_a_site_with_its_own_privacy_floor_refuses_what_the_plan_cannot_promise(planned, task, refused):
    from model_build.federated.privacy import site_refusal

    reason = site_refusal({"privacy": planned}, 8.0, task)
    assert reason is None if refused is None else refused in reason
    assert site_refusal({"privacy": planned}, None, task) is None  # no floor: the plan decides


def test_the_floor_reaches_the_site_process_only_through_its_environment(tmp_path):
    from model_build.federated.deploy import EPSILON_VARIABLE, site_environment

    assert float(site_environment(tmp_path, tmp_path, 8)[EPSILON_VARIABLE]) == 8.0
    assert EPSILON_VARIABLE not in site_environment(tmp_path, tmp_path)
