"""The server's average: FedAvg's weighted mean, the same bits whatever order the sites answer in."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("nvflare", reason="NVIDIA FLARE is not installed (the optional `federated` extra)")

from nvflare.app_common.abstract.fl_model import FLModel, ParamsType  # noqa: E402

from model_build.federated.controller import SiteOrderedAverage  # noqa: E402


def update(name: str, participants: int, seed: int) -> FLModel:
    rng = np.random.default_rng(seed)
    return FLModel(params={"w": rng.normal(size=1000), "steps": np.array(10 * seed + 1, np.int64)},
                   params_type=ParamsType.FULL, metrics={"validation_log_loss": 0.1 * seed},
                   meta={"client_name": name, "NUM_STEPS_CURRENT_ROUND": participants})


def test_the_average_is_weighted_by_participants_and_independent_of_arrival_order():
    updates = [update("site-1", 110, 1), update("site-2", 25, 2), update("site-3", 60, 3), update("site-4", 32, 4)]
    results = []
    for order in itertools.permutations(updates):
        aggregator = SiteOrderedAverage()
        for model in order:
            aggregator.accept_model(model)
        results.append(aggregator.aggregate_model())
        aggregator.reset_stats()
    first = results[0]
    assert all(np.array_equal(r.params["w"], first.params["w"]) for r in results)  # bit for bit (float64: an
    # arrival-order sum differs in the last bits between some of these 24 orders)
    weights = np.array([110, 25, 60, 32], dtype=np.float64)
    expected = sum(u.params["w"].astype(np.float64) * w for u, w in zip(updates, weights)) / weights.sum()
    assert np.allclose(first.params["w"], expected, atol=1e-6) and first.params["w"].dtype == np.float64
    steps = sum((10 * seed + 1) * w for seed, w in zip(range(1, 5), weights)) / weights.sum()  # 21.6: rounds up
    assert first.params["steps"].dtype == np.int64 and first.params["steps"] == np.rint(steps) != int(steps)
    assert first.metrics["validation_log_loss"] == pytest.approx(float((0.1 * np.arange(1, 5) * weights).sum()
                                                                        / weights.sum()))


def test_without_metrics_from_a_site_no_metric_is_averaged():
    aggregator = SiteOrderedAverage()
    silent = update("site-2", 25, 2)
    silent.metrics = None  # differential privacy: no metric leaves a site
    for model in (update("site-1", 110, 1), silent):
        aggregator.accept_model(model)
    assert aggregator.aggregate_model().metrics is None


def test_a_round_without_any_update_is_an_error_not_a_crash():
    with pytest.raises(RuntimeError, match="no site sent an update"):
        SiteOrderedAverage().aggregate_model()
