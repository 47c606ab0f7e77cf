"""Tokens to the baseline's loss: the crossing read off a val curve by hand, multipliers against scipy's t on the log
ratios, paired by seed, and an arm that never gets there.

    .venv/bin/python -m pytest tests/test_multipliers.py -q
"""
import math

import numpy as np
import pytest
from scipy import stats

from gptlab.analysis.arms import compare_arms
from gptlab.analysis.multipliers import multipliers, sentence, tokens_to
from gptlab.training.records import time_to


def test_the_crossing_is_interpolated_between_the_two_evaluations_around_it():
    curve = [(0, 10.0), (100, 6.0), (200, 5.0), (300, 4.5)]
    assert tokens_to(curve, 5.5) == pytest.approx(150)  # halfway from 6.0 at 100 to 5.0 at 200
    assert tokens_to(curve, 5.0) == 200 and tokens_to(curve, 10.0) == 0
    assert tokens_to(curve, 4.0) is None  # never reached
    rows = [{"tokens": t, "val/loss": v, "wall_s": t / 10} for t, v in curve]
    assert time_to(rows, 5.5) == {"loss": 5.5, "reached": True, "tokens": pytest.approx(150),
                                  "wall_s": pytest.approx(15)}
    assert time_to(rows, 1.0)["reached"] is False


def run(i, arm, seed, curve):
    cfg = {"model": {"pos": arm}, "seed": seed}
    return {"name": str(i), "dir": f"r/{i}", "kind": "measured", "overrides": [f"model.pos={arm}", f"seed={seed}"],
            "config": cfg, "seed": seed, "lr": 1e-3, "curve": curve, "final_val_loss": curve[-1][1]}


def study(faster=(0.5, 0.6, 0.7)):
    """Baseline: loss 6 at 100 tokens, then 5 + 0.1 seed at 200. The arm reaches 5 + 0.1 seed at faster[seed] x 200
    tokens (a straight line from 6 at 0 to the crossing), and goes on to 4.5."""
    runs = []
    for seed in (1, 2, 3):
        end = 5.0 + 0.1 * seed
        runs.append(run(len(runs), "learned", seed, [(0, 10.0), (100, 6.0), (200, end)]))
        x = faster[seed - 1] * 200
        runs.append(run(len(runs), "rope", seed, [(0, 6.0 + (6.0 - end) * 1.0), (x, end), (200, 4.5)]))
    return runs


def test_a_paired_multiplier_is_the_geometric_mean_with_scipys_interval():
    res = compare_arms(study(), baseline="model.pos=learned")
    (m,) = multipliers(res)
    ratios = [0.5, 0.6, 0.7]
    assert m["paired"] and m["n"] == 3 and m["ratios"] == pytest.approx(ratios)
    logs = np.log(ratios)
    low, high = stats.t.interval(0.95, 2, loc=logs.mean(), scale=stats.sem(logs))
    assert m["multiplier"] == pytest.approx(math.exp(logs.mean()))
    assert (m["low"], m["high"]) == pytest.approx((math.exp(low), math.exp(high)))
    assert m["p"] == pytest.approx(stats.ttest_1samp(logs, 0).pvalue)
    assert sentence(m).startswith(f"pos=rope reaches the baseline's loss with {m['multiplier']:.2f}x "
                                  f"[{m['low']:.2f}, {m['high']:.2f}] of its tokens (3 seeds, paired; t on log ratios")


def test_an_arm_that_never_reaches_the_baseline_says_so():
    runs = study()
    for r in runs:
        if r["config"]["model"]["pos"] == "rope" and r["seed"] == 2:
            r["curve"] = [(0, 10.0), (200, 6.5)]
            r["final_val_loss"] = 6.5
    (m,) = multipliers(compare_arms(runs, baseline="model.pos=learned"))
    assert m["multiplier"] is None and m["reached"] == 2
    assert "does not reach the baseline's final loss within its budget in 1 of 3 seeds" in sentence(m)
