"""Session aggregation, smoothing and the two output readouts, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_app.session import LiveSmoother, Session, SessionAggregator
from sarco_core.readout import ProbabilityReadout, sigmoid


def session_with(outputs: list[list[float]], skipped: dict[str, int] | None = None) -> Session:
    session = Session("SCR-0001")
    for output in outputs:
        session.add_frame("ok", np.array(output))
    for reason, count in (skipped or {}).items():
        for _ in range(count):
            session.add_frame(reason)
    return session


def test_mean_logit_is_the_mean_log_odds_for_softmax_outputs() -> None:
    outputs = [[0.0, 2.0], [1.0, 0.0], [0.5, 1.5]]  # log-odds 2, -1, 1
    outcome = SessionAggregator(0.5, min_usable_frames=3).summarise(
        session_with(outputs, {"frozen": 2, "no_tissue": 1}))
    assert outcome.probability == pytest.approx(sigmoid((2 - 1 + 1) / 3))
    assert outcome.score_logit == pytest.approx(2 / 3)
    assert outcome.decision == "sarcopenia"
    assert outcome.logit_sd == pytest.approx(np.std([2.0, -1.0, 1.0]))
    assert outcome.agreement == pytest.approx(2 / 3)
    assert outcome.dirichlet_u is None
    assert (outcome.usable_frames, outcome.processed_frames) == (3, 6)
    assert outcome.skipped == {"no_tissue": 1, "frozen": 2, "transition": 0, "no_region": 0}


def test_other_aggregations_follow_their_definitions() -> None:
    outputs = [[0.0, 3.0], [0.0, -1.0], [0.0, -0.5], [0.0, 10.0]]
    log_odds = np.array([3.0, -1.0, -0.5, 10.0])
    median = SessionAggregator(0.5, method="median_logit", min_usable_frames=1)
    assert median.summarise(session_with(outputs)).probability == pytest.approx(
        sigmoid(float(np.median(log_odds))))
    mean_p = SessionAggregator(0.5, method="mean_probability", min_usable_frames=1)
    assert mean_p.summarise(session_with(outputs)).probability == pytest.approx(
        np.mean([sigmoid(v) for v in log_odds]))


def test_the_threshold_decides_and_too_few_frames_ask_for_a_rescan() -> None:
    outputs = [[0.0, 0.2]] * 5  # probability sigmoid(0.2) = 0.55
    assert SessionAggregator(0.6, min_usable_frames=5).summarise(
        session_with(outputs)).decision == "no_sarcopenia"
    assert SessionAggregator(0.5, min_usable_frames=5).summarise(
        session_with(outputs)).decision == "sarcopenia"
    few = SessionAggregator(0.5, min_usable_frames=6).summarise(session_with(outputs))
    assert few.decision == "rescan" and few.probability == pytest.approx(sigmoid(0.2))
    nothing = SessionAggregator(0.5).summarise(session_with([], {"no_tissue": 4}))
    assert (nothing.decision, nothing.probability, nothing.processed_frames) == ("rescan", None, 4)


def test_evidential_readout_is_the_dirichlet_mean_of_softplus_evidence() -> None:
    outputs = np.array([[0.3, 2.0], [-1.0, 0.5]])
    evidence = np.log1p(np.exp(outputs))
    alpha = evidence + 1
    readout = ProbabilityReadout("evidential")
    assert readout.probability(outputs) == pytest.approx(alpha[:, 1] / alpha.sum(axis=1))
    assert readout.uncertainty(outputs) == pytest.approx(2 / alpha.sum(axis=1))
    outcome = SessionAggregator(0.5, readout, min_usable_frames=1).summarise(
        session_with(outputs.tolist()))
    pooled_alpha = np.log1p(np.exp(outputs.mean(axis=0))) + 1
    assert outcome.probability == pytest.approx(pooled_alpha[1] / pooled_alpha.sum())
    assert outcome.dirichlet_u == pytest.approx(2 / pooled_alpha.sum())


def test_a_single_logit_output_is_read_as_log_odds() -> None:
    assert ProbabilityReadout().probability(np.array([[0.0], [math.log(3)]])) == pytest.approx(
        [0.5, 0.75])


def test_smoothing_depends_on_time_not_on_frame_count() -> None:
    fast, slow = LiveSmoother(1.0), LiveSmoother(1.0)
    fast.update(0.2, 0.0)
    slow.update(0.2, 0.0)
    for step in range(1, 31):  # 30 fps for one second
        fast_value = fast.update(0.8, step / 30)
    slow_value = slow.update(0.8, 1.0)  # one frame after one second
    # both moved the log-odds by 1 - exp(-1) of the way
    expected = sigmoid(math.log(0.25) + (1 - math.exp(-1)) * (math.log(4) - math.log(0.25)))
    assert fast_value == pytest.approx(expected)
    assert slow_value == pytest.approx(expected)
