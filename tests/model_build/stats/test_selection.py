"""The one-standard-error rule shared by `sarco tune` and the image recipes' default."""

import pytest

from model_build.stats.selection import one_standard_error_rule


def _candidate(name: str, cost: int, folds: list[float]) -> dict:
    return {"name": name, "cost": cost, "fold_aucs": folds, "mean_auc": sum(folds) / len(folds)}


def test_the_cheapest_within_one_standard_error_of_the_best_is_chosen() -> None:
    candidates = [_candidate("large", 3, [0.90, 0.92, 0.94]),   # best: 0.92, standard error 0.0115
                  _candidate("medium", 2, [0.91, 0.91, 0.91]),  # within (0.91 >= 0.9085)
                  _candidate("small", 1, [0.90, 0.90, 0.90])]   # outside
    chosen, best = one_standard_error_rule(candidates, lambda c: c["cost"])
    assert (chosen["name"], best["name"]) == ("medium", "large")


def test_a_tie_for_the_best_goes_to_the_cheaper_and_a_lone_candidate_is_chosen() -> None:
    candidates = [_candidate("dear", 5, [0.8, 0.9]), _candidate("cheap", 1, [0.9, 0.8])]
    assert one_standard_error_rule(candidates, lambda c: c["cost"])[1]["name"] == "cheap"
    lone = [_candidate("only", 9, [0.7, 0.8])]
    assert one_standard_error_rule(lone, lambda c: c["cost"]) == (lone[0], lone[0])
    with pytest.raises(ValueError, match="no candidates"):
        one_standard_error_rule([], lambda c: c["cost"])
