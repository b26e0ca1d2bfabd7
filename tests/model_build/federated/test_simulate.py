"""FedAvg on NVIDIA FLARE's simulator: 2 sites x 2 rounds of the tabular (clinical + lab) model.

Checks the machinery, not accuracy: the encoders are agreed from site sums, the server's global
model is the participant-weighted mean of what the sites sent in the last round, and those
weights come back as a normal bundle that predicts. Skipped where FLARE is not installed (it is
the optional `federated` extra: pip install -c constraints.txt -e '.[workstation,federated]').
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nvflare", reason="NVIDIA FLARE is not installed (the optional `federated` extra)")

from model_build.api import load_model  # noqa: E402
from model_build.federated.encoders import agree_encoders, site_statistics  # noqa: E402
from model_build.federated.simulate import load_global_weights, simulate  # noqa: E402
from model_build.models.bundle import load_bundle  # noqa: E402
from model_build.models.train import TrainOptions  # noqa: E402
from testkit.federated_sites import tabular_site  # noqa: E402

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
