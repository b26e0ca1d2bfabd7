"""The borderline rule (sarco_core.screening) against hand computations, and its place in the
result payload."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from sarco_core.readout import logit_of, sigmoid
from sarco_core.screening import BorderlineRule, call_of_result, screen_call, trigamma
from sarco_core.wire import schema
from tests.support.wire import result_payload

Z90 = NormalDist().inv_cdf(0.95)


def test_trigamma_matches_known_values() -> None:
    assert trigamma(1.0) == pytest.approx(math.pi ** 2 / 6, abs=1e-10)
    assert trigamma(0.5) == pytest.approx(math.pi ** 2 / 2, abs=1e-10)
    assert trigamma(10.0) == pytest.approx(0.10516633568168575, abs=1e-12)
    with pytest.raises(ValueError):
        trigamma(0.0)


def test_the_interval_is_the_mean_log_odds_standard_error_with_capped_frames() -> None:
    # 40 usable frames, population SD 0.8: sample SD 0.8 * sqrt(40/39), 10 independent views
    call = screen_call(0.58, 0.5, enough_frames=True, logit_sd=0.8, usable_frames=40)
    half = Z90 * 0.8 * math.sqrt(40 / 39) / math.sqrt(10)
    assert call.low == pytest.approx(sigmoid(logit_of(0.58) - half))
    assert call.high == pytest.approx(sigmoid(logit_of(0.58) + half))
    assert call.call == "borderline" and call.level == 0.9
    # more frames of the same video do not narrow it further than 10 independent views do
    many = screen_call(0.62, 0.5, enough_frames=True, logit_sd=0.8, usable_frames=4000)
    assert many.high - many.low == pytest.approx(
        2 * sigmoid(logit_of(0.62) + Z90 * 0.8 / math.sqrt(10)) - 2 * 0.62, abs=0.01)


def test_the_issue_case_reads_borderline_not_positive() -> None:
    """"SARCOPENIA LIKELY" above "probability 0.45" at threshold 0.43 (issue 18)."""
    call = screen_call(0.45, 0.43, enough_frames=True, logit_sd=0.6, usable_frames=60)
    assert call.call == "borderline" and call.low < 0.43 <= call.high


def test_positive_and_negative_need_the_whole_interval_on_one_side() -> None:
    assert screen_call(0.90, 0.5, enough_frames=True, logit_sd=0.5,
                       usable_frames=60).call == "positive"
    assert screen_call(0.10, 0.5, enough_frames=True, logit_sd=0.5,
                       usable_frames=60).call == "negative"
    # wide spread: the same point is no longer clear
    assert screen_call(0.70, 0.5, enough_frames=True, logit_sd=3.0,
                       usable_frames=60).call == "borderline"


def test_without_spread_the_call_is_the_thresholds_decision() -> None:
    for p, expected in ((0.5, "positive"), (0.4999, "negative")):
        for frames in (0, 1):  # one frame: no spread to measure
            call = screen_call(p, 0.5, enough_frames=True, logit_sd=0.0 if frames else None,
                               usable_frames=frames)
            assert (call.call, call.low, call.high) == (expected, p, p)


def test_too_few_frames_is_a_rescan_whatever_the_probability() -> None:
    call = screen_call(0.99, 0.5, enough_frames=False, logit_sd=0.1, usable_frames=3)
    assert (call.call, call.interval) == ("rescan", None)
    assert screen_call(None, 0.5, enough_frames=True).call == "rescan"


def test_the_evidential_term_adds_the_beta_log_odds_variance() -> None:
    p, u = 0.7, 0.2  # S = 10: a = 7, b = 3
    rule = BorderlineRule(evidence=True)
    call = screen_call(p, 0.5, enough_frames=True, dirichlet_u=u, rule=rule)
    half = Z90 * math.sqrt(trigamma(7.0) + trigamma(3.0))
    assert call.low == pytest.approx(sigmoid(logit_of(p) - half))
    assert call.call == "borderline"
    # off by default: u alone leaves the point
    assert screen_call(p, 0.5, enough_frames=True, dirichlet_u=u).call == "positive"


def test_a_rule_outside_its_range_is_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        BorderlineRule(level=1.0)
    with pytest.raises(ValueError, match="independent_frames"):
        BorderlineRule(independent_frames=0)


def test_the_call_of_a_result_payload_uses_its_numbers() -> None:
    payload = result_payload(probability=0.55, threshold=0.5,
                             uncertainty={"logit_sd": 1.0, "agreement": 0.6, "dirichlet_u": None})
    assert call_of_result(payload).call == "borderline"
    assert call_of_result(result_payload(decision="rescan")).call == "rescan"


def screen_of(payload: dict) -> dict:
    call = call_of_result(payload)
    return {"call": call.call, "low": call.low, "high": call.high, "level": 0.9,
            "independent_frames": 10, "evidence": False}


def test_the_screen_field_is_optional_and_must_agree_with_the_decision() -> None:
    payload = result_payload()
    schema.validate("result", payload)  # older devices send none
    schema.validate("result", {**payload, "screen": screen_of(payload)})
    wrong = {**payload, "screen": {**screen_of(payload), "call": "negative"}}
    with pytest.raises(schema.PayloadError, match="screen.call: negative with decision sarcopenia"):
        schema.validate("result", wrong)
    outside = {**payload, "screen": {**screen_of(payload), "low": 0.8, "high": 0.9}}
    with pytest.raises(schema.PayloadError, match="must hold the probability"):
        schema.validate("result", outside)
    with pytest.raises(schema.PayloadError, match="evidence: expected bool"):
        schema.validate("result", {**payload, "screen": {**screen_of(payload), "evidence": 1}})
