"""Tokens to the baseline's loss: the crossing read off a val curve by hand, multipliers against scipy's t on the log
ratios, paired by seed, an arm that never gets there, and which val curve is read: half b where a rate was chosen on
half a, all of val where none was.

    .venv/bin/python -m pytest tests/test_multipliers.py -q
"""
import math

import numpy as np
import pytest
from scipy import stats

from gptlab.analysis.arms import compare_arms
from gptlab.analysis.multipliers import multipliers, sentence, tokens_to
from gptlab.run.records import time_to


def test_the_crossing_is_interpolated_between_the_two_evaluations_around_it():
    curve = [(0, 10.0), (100, 6.0), (200, 5.0), (300, 4.5)]
    assert tokens_to(curve, 5.5) == pytest.approx(150)  # halfway from 6.0 at 100 to 5.0 at 200
    assert tokens_to(curve, 5.0) == 200 and tokens_to(curve, 10.0) == 0
    assert tokens_to(curve, 4.0) is None  # never reached
    rows = [{"tokens": t, "val/loss": v, "train_s": t / 10} for t, v in curve]
    assert time_to(rows, 5.5) == {"loss": 5.5, "reached": True, "tokens": pytest.approx(150),
                                  "train_s": pytest.approx(15)}
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
    assert m["paired"] and m["n"] == 3 and m["ratios"] == pytest.approx(ratios) and m["half"] == "full"
    logs = np.log(ratios)
    low, high = stats.t.interval(0.95, 2, loc=logs.mean(), scale=stats.sem(logs))
    assert m["multiplier"] == pytest.approx(math.exp(logs.mean()))
    assert (m["low"], m["high"]) == pytest.approx((math.exp(low), math.exp(high)))
    assert m["p"] == pytest.approx(stats.ttest_1samp(logs, 0).pvalue)
    assert sentence(m).startswith(f"pos=rope reaches the baseline's loss on all of val with {m['multiplier']:.2f}x "
                                  f"[{m['low']:.2f}, {m['high']:.2f}] of its tokens (3 seeds, paired; t on log ratios")


def test_an_arm_that_never_reaches_the_baseline_says_so():
    runs = study()
    for r in runs:
        if r["config"]["model"]["pos"] == "rope" and r["seed"] == 2:
            r["curve"] = [(0, 10.0), (200, 6.5)]
            r["final_val_loss"] = 6.5
    (m,) = multipliers(compare_arms(runs, baseline="model.pos=learned"))
    assert m["multiplier"] is None and m["reached"] == 2
    assert "does not reach the baseline's final loss on all of val within its budget in 1 of 3 seeds" in sentence(m)


def tuned(i, arm, seed, lr, curve, curve_b, a):
    """A run with both val curves and its final losses on all of val, half a (given) and half b (curve_b's end)."""
    return {**run(i, arm, seed, curve), "lr": lr, "overrides": [f"model.pos={arm}", f"optim.lr={lr}", f"seed={seed}"],
            "curve_b": curve_b, "final_val_loss_a": a, "final_val_loss_b": curve_b[-1][1]}


def rate_tuned_study():
    """Baseline (one rate): 5.0 on all of val at 200 tokens, 5.2 on half b (4.8 on half a). rope at 2e-3, chosen on
    half a (4.3 against 5.3 at 1e-3), is lower on half a than on half b: all of val reaches 5.0 sooner than half b
    reaches 5.2."""
    runs = []
    for seed in (1, 2, 3):
        runs.append(tuned(len(runs), "learned", seed, 1e-3, [(0, 10.0), (100, 6.0), (200, 5.0)],
                          [(0, 10.0), (100, 6.2), (200, 5.2)], 4.8))
        end = 0.1 * seed
        runs.append(tuned(len(runs), "rope", seed, 2e-3, [(0, 10.0), (100, 5.4), (200, 4.6 - end)],
                          [(0, 10.0), (100, 5.8), (200, 5.0 - end)], 4.3))
        runs.append(tuned(len(runs), "rope", seed, 1e-3, [(0, 10.0), (200, 5.4)], [(0, 10.0), (200, 5.5)], 5.3))
    return runs


def test_a_rate_chosen_on_half_a_puts_the_multiplier_on_half_b():
    res = compare_arms(rate_tuned_study(), baseline="model.pos=learned")
    assert res["arms"][1]["selection"]["chosen"] == 2e-3
    (m,) = multipliers(res)
    # by hand, per seed s: half b crosses the baseline's half-b 5.2 between (100, 5.8) and (200, 5.0 - 0.1 s)
    half_b = [(100 + (5.8 - 5.2) / (5.8 - (5.0 - 0.1 * s)) * 100) / 200 for s in (1, 2, 3)]
    assert half_b == pytest.approx([0.8333333, 0.8, 0.7727273])
    # what the full curve gave: (100, 5.4) to (200, 4.6 - 0.1 s) crossing the baseline's 5.0 on all of val
    full = [(100 + (5.4 - 5.0) / (5.4 - (4.6 - 0.1 * s)) * 100) / 200 for s in (1, 2, 3)]
    assert full == pytest.approx([0.7222222, 0.7, 0.6818182])
    assert m["half"] == "b" and m["paired"] and m["ratios"] == pytest.approx(half_b)
    assert m["multiplier"] == pytest.approx(math.exp(np.log(half_b).mean()))  # 0.80
    assert m["multiplier"] - math.exp(np.log(full).mean()) > 0.09  # the full curve flattered rope by 0.10x
    assert sentence(m).startswith(f"pos=rope reaches the baseline's loss on val half b with {m['multiplier']:.2f}x")


def test_a_tuned_baseline_puts_an_untuned_arm_on_half_b_and_a_missing_half_b_curve_is_no_multiplier():
    """The baseline's rate chosen on half a: its half-b final loss is the target, at its chosen rate."""
    runs = [r for r in rate_tuned_study() if r["config"]["model"]["pos"] == "learned"]
    for seed in (1, 2, 3):  # a second baseline rate, worse on half a (not chosen) and far lower on half b
        runs.append(tuned(len(runs), "learned", seed, 4e-3, [(0, 10.0), (200, 4.0)], [(0, 10.0), (200, 4.0)], 5.9))
        runs.append(tuned(len(runs), "alibi", seed, 1e-3, [(0, 10.0), (100, 5.0), (200, 4.0)],
                          [(0, 10.0), (100, 5.2 + 0.1 * seed), (200, 4.2)], 4.0))
    res = compare_arms(runs, baseline="model.pos=learned")
    (m,) = multipliers(res)
    assert res["arms"][0]["selection"]["chosen"] == 1e-3 and not res["arms"][1]["selection"]
    # half b: from (0, 10) to (100, 5.2 + 0.1 s) over 5.2 at 100 + 0.1 s / (5.2 + 0.1 s - 4.2) x 100 tokens, of 200
    want = [(100 + 0.1 * s / (1.0 + 0.1 * s) * 100) / 200 for s in (1, 2, 3)]
    assert m["half"] == "b" and m["ratios"] == pytest.approx(want)  # all of val would say 0.5 for every seed
    runs[-1]["curve_b"] = []  # a run from before val halves were logged
    (m,) = multipliers(compare_arms(runs, baseline="model.pos=learned"))
    assert m["multiplier"] is None and m["half"] == "b" and m["reason"].startswith("no val/loss_b curve (1 run: r/")
    assert sentence(m).startswith("pos=alibi: no multiplier on val half b: no val/loss_b curve")


def test_with_one_rate_everywhere_the_full_curve_is_read_and_the_sentence_says_so():
    runs = study()
    for r in runs:  # a half-b curve that would give another answer: it is not read, no rate was chosen
        r["curve_b"] = [(0, 10.0), (200, r["curve"][-1][1] + 0.3)]
    (m,) = multipliers(compare_arms(runs, baseline="model.pos=learned"))
    assert m["half"] == "full" and m["reason"] is None and m["ratios"] == pytest.approx([0.5, 0.6, 0.7])
    assert "reaches the baseline's loss on all of val with 0.59x" in sentence(m)


def test_a_run_folder_gives_its_half_b_curve_without_empty_or_nan_cells(tmp_path):
    import json

    from gptlab.analysis.runs import load_run
    (tmp_path / "config.yaml").write_text("seed: 1\ndata:\n  block_size: 64\n")
    (tmp_path / "summary.json").write_text(json.dumps({"final_val_loss": 5.0, "final_val_loss_b": 5.2}))
    (tmp_path / "metrics.csv").write_text("tokens,train/loss,val/loss,val/loss_b\n0,,10.0,nan\n50,7.0,,\n"
                                          "100,,6.0,6.2\n200,,5.0,5.2\n")
    run = load_run(tmp_path)
    assert run["curve"] == [(0, 10.0), (100, 6.0), (200, 5.0)] and run["curve_b"] == [(100, 6.2), (200, 5.2)]
