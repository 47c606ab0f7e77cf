"""Comparisons between arms (gptlab.analysis.stats, arms, verdicts) against scipy and hand calculations, and the
report's verdicts read back from report.json.

    .venv/bin/python -m pytest tests/test_stats.py -q
"""
import json
import math

import numpy as np
import pytest
import yaml
from scipy import stats
from test_report import TINY, fake_run

from gptlab.analysis.arms import compare_arms, group_arms
from gptlab.analysis.render import write_report
from gptlab.analysis.runs import ReportError, collect_runs
from gptlab.analysis.stats import difference, holm, summarize
from gptlab.analysis.verdicts import verdict

A = [5.612, 5.640, 5.597, 5.655]
B = [5.701, 5.688, 5.733, 5.702]


def test_summary_is_scipys_t_interval():
    s = summarize(A)
    low, high = stats.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=stats.sem(A))
    assert (s.n, s.mean, s.sd) == (4, pytest.approx(np.mean(A)), pytest.approx(np.std(A, ddof=1)))
    assert (s.low, s.high) == (pytest.approx(low), pytest.approx(high))
    one = summarize([5.6])
    assert one.n == 1 and math.isnan(one.low) and one.as_dict()["sd"] is None


def test_paired_difference_is_scipys_ttest_rel():
    d = difference(A, B, paired=True)
    ref = stats.ttest_rel(A, B)
    ci = ref.confidence_interval(0.95)
    assert d.test == "paired t" and d.df == 3
    assert d.diff == pytest.approx(np.mean(np.subtract(A, B)))
    assert (d.p, d.low, d.high) == (pytest.approx(ref.pvalue), pytest.approx(ci.low), pytest.approx(ci.high))
    # the smallest detectable difference at power 0.8, alpha 0.05: (t_0.975 + t_0.8) * s_d / sqrt(n), by hand
    se = np.std(np.subtract(A, B), ddof=1) / 2
    assert d.detectable == pytest.approx((stats.t.ppf(0.975, 3) + stats.t.ppf(0.8, 3)) * se)


def test_welch_difference_is_scipys_ttest_ind():
    b = B[:3]
    d = difference(A, b)
    ref = stats.ttest_ind(A, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert d.test == "Welch's t" and (d.n_a, d.n_b) == (4, 3)
    assert (d.p, d.low, d.high, d.df) == (pytest.approx(ref.pvalue), pytest.approx(ci.low), pytest.approx(ci.high),
                                          pytest.approx(ref.df))


def test_one_value_a_side_is_untestable():
    d = difference([5.6], [5.7])
    assert d.diff == pytest.approx(-0.1) and math.isnan(d.p) and math.isnan(d.low) and math.isnan(d.detectable)
    with pytest.raises(ValueError, match="matched"):
        difference([1, 2], [1], paired=True)


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([0.02, float("nan")])  # an untestable comparison neither counts nor gets a value
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])


def run_dict(i, overrides, lr, seed, a, b, full=None):
    """A measured run as collect_runs returns it, with its config and final losses on both val halves."""
    cfg = {"seed": seed, "optim": {"lr": lr}, "sched": {"name": overrides[0].split("=")[1]},
           "paths": {"run_dir": f"runs/{i}"}}
    return {"name": str(i), "dir": f"runs/{i}", "kind": "measured", "overrides": overrides + [f"optim.lr={lr}",
            f"seed={seed}"], "config": cfg, "seed": seed, "lr": lr, "curve": [(0, 10.0), (100, full or (a + b) / 2)],
            "final_val_loss": full or (a + b) / 2, "final_val_loss_a": a, "final_val_loss_b": b}


def tuned_study():
    """Two schedules x 3 rates x 3 seeds. cosine is best at 2e-3 on half a; wsd at 4e-3 (the grid's edge)."""
    runs, i = [], 0
    for sched, best in (("cosine", 2e-3), ("wsd", 4e-3)):
        for lr in (1e-3, 2e-3, 4e-3):
            for seed in (1, 2, 3):
                gap = 0.0 if lr == best else 0.05
                base = 5.60 if sched == "cosine" else 5.50 + 0.004 * (seed == 2)  # a seed-dependent gap
                runs.append(run_dict(i, [f"sched={sched}"], lr, seed, base + gap + 0.01 * seed,
                                     base + gap + 0.02 * seed + (0.03 if lr == 4e-3 else 0)))
                i += 1
    return runs


def test_arms_choose_their_rate_on_half_a_and_report_half_b():
    res = compare_arms(tuned_study(), baseline="sched=cosine")
    cos, wsd = res["arms"]
    assert [a["label"] for a in res["arms"]] == ["sched=cosine", "sched=wsd"] and res["baseline"] == "sched=cosine"
    assert res["metric"] == "final_val_loss_b"
    assert cos["selection"]["chosen"] == 2e-3 and not cos["selection"]["edge"]
    assert wsd["selection"]["chosen"] == 4e-3 and wsd["selection"]["edge"]
    # wsd reported on half b at 4e-3 (its half-b penalty of 0.03 stays): 5.53 + 0.02 * seed (+ 0.004 for seed 2)
    assert list(wsd["values"].values()) == pytest.approx([5.55, 5.574, 5.59])
    # on half b alone wsd would have picked 1e-3? no: 4e-3 is 0.03 worse there but 1e-3 is 0.05 worse, so 4e-3
    assert wsd["selection"]["chosen_on_b"] == 4e-3 and wsd["selection"]["flattery"] == pytest.approx(0.0)
    t = res["comparisons"][0]
    ref = stats.ttest_rel(list(wsd["values"].values()), list(cos["values"].values()))
    assert t["difference"].test == "paired t" and t["difference"].p == pytest.approx(ref.pvalue)


def test_selection_flattery_is_measured():
    """An arm whose half-b optimum differs from its half-a choice: the report says by how much."""
    runs = [run_dict(i, ["sched=cosine"], lr, s, a, b) for i, (lr, s, a, b) in enumerate(
        [(1e-3, 1, 5.50, 5.70), (1e-3, 2, 5.52, 5.72), (2e-3, 1, 5.60, 5.60), (2e-3, 2, 5.62, 5.62)])]
    sel = compare_arms(runs)["arms"][0]["selection"]
    assert sel["chosen"] == 1e-3 and sel["chosen_on_b"] == 2e-3
    assert sel["flattery"] == pytest.approx(5.71 - 5.61)


def test_verdict_sentences():
    runs = tuned_study()
    res = compare_arms(runs, baseline="sched=cosine")
    line = verdict(res["comparisons"][0], 1)
    d = res["comparisons"][0]["difference"]
    assert line.startswith(f"sched=wsd is lower than sched=cosine by {abs(d.diff):.3f} ± {d.half:.3f} nats "
                           "(3 seeds each, paired t, p")
    # no difference: the sentence gives the smallest detectable difference
    flat = [run_dict(i, [f"sched={s}"], 1e-3, seed, 5.6, 5.6 + 0.01 * ((seed * (i + 1)) % 3), full=5.6 + 0.01 * (
        (seed * (i + 2)) % 3)) for i, s in enumerate(["cosine", "linear"]) for seed in (1, 2, 3)]
    res = compare_arms(flat)
    line = verdict(res["comparisons"][0], 1)
    assert line.startswith("No difference detected between sched=linear and sched=cosine")
    assert "smallest difference detectable at power 0.8 is about" in line
    one = compare_arms([run_dict(0, ["sched=cosine"], 1e-3, 1, 5.6, 5.6),
                        run_dict(1, ["sched=wsd"], 1e-3, 1, 5.5, 5.5)])
    assert "no interval or test is possible" in verdict(one["comparisons"][0], 1)


def test_holm_across_comparisons_and_welch_when_seeds_differ():
    runs = [run_dict(i, [f"sched={s}"], 1e-3, seed, 0, 0, full=v) for i, (s, seed, v) in enumerate(
        [("cosine", 1, 5.60), ("cosine", 2, 5.62), ("cosine", 3, 5.61), ("linear", 1, 5.55), ("linear", 2, 5.56),
         ("linear", 3, 5.58), ("wsd", 4, 5.50), ("wsd", 5, 5.49)])]
    res = compare_arms(runs)
    lin, wsd = res["comparisons"]
    assert lin["difference"].test == "paired t" and wsd["difference"].test == "Welch's t"
    raw = [lin["difference"].p, wsd["difference"].p]
    small, large = sorted(raw)  # Holm over 2 by hand: the smaller p doubled, the larger kept, a running maximum
    adjusted = {small: min(1, 2 * small), large: max(min(1, 2 * small), large)}
    assert [lin["p_holm"], wsd["p_holm"]] == pytest.approx([adjusted[raw[0]], adjusted[raw[1]]])


def test_baseline_that_matches_no_arm_is_refused():
    with pytest.raises(ReportError, match="baseline=sched=linear: no arm matches it; the arms are: sched=cosine"):
        compare_arms(tuned_study(), baseline="sched=linear")


def test_a_study_baseline_missing_from_the_runs_falls_back_to_the_first_arm():
    runs = tuned_study()
    for r in runs:
        r["baseline"] = "sched=linear"  # the study's file named an arm this sweep's command line replaced
    res = compare_arms(runs)
    assert res["baseline"] == "sched=cosine" and "baseline sched=linear is not among these arms" in res["notes"][0]


def test_repeated_seed_is_no_replicate():
    runs = [run_dict(0, ["sched=cosine"], 1e-3, 1, 5.6, 5.6), run_dict(1, ["sched=cosine"], 1e-3, 1, 5.6, 5.6)]
    res = compare_arms(runs)
    assert res["arms"][0]["summary"].n == 1 and "repeats seed 1" in res["notes"][0]


def test_arms_from_configs_when_overrides_do_not_differ():
    """Runs started by separate commands with the same overrides but other configs are separate arms."""
    a = run_dict(0, ["experiment=x"], 1e-3, 1, 5.6, 5.6)
    b = run_dict(1, ["experiment=x"], 1e-3, 1, 5.5, 5.5)
    a["config"]["sched"]["name"], b["config"]["sched"]["name"] = "cosine", "wsd"
    assert [g["label"] for g in group_arms([a, b])] == ["name=cosine", "name=wsd"]


def test_report_json_holds_the_verdicts(tmp_path):
    """A sweep on disk, 2 schedules x 3 seeds: report.json's verdict is scipy's paired t on the runs' own values."""
    root = tmp_path / "multirun" / "s"
    finals = {"cosine": [5.61, 5.64, 5.60], "wsd": [5.52, 5.57, 5.50]}
    job = 0
    for sched, vals in finals.items():
        for seed, v in enumerate(vals, 1):
            d = fake_run(root / str(job), TINY, "shakespeare", 16384, 3_322_880, 256, [10.8, 6.5, v], every=100)
            cfg = yaml.safe_load((d / "config.yaml").read_text())
            cfg.update(seed=seed, sched={"name": sched}, optim={"lr": 2e-3}, study={"baseline": "sched=cosine"})
            (d / "config.yaml").write_text(yaml.safe_dump(cfg))
            (d / ".hydra").mkdir()
            (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"sched={sched}", f"seed={seed}"]))
            job += 1
    write_report([root], out=tmp_path / "rep")
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    v = data["verdicts"][0]
    ref = stats.ttest_rel(finals["wsd"], finals["cosine"])
    assert data["baseline"] == "sched=cosine" and data["metric"] == "final_val_loss"
    assert v["arm"] == "sched=wsd" and v["test"] == "paired t" and v["p"] == pytest.approx(ref.pvalue)
    assert v["diff"] == pytest.approx(np.mean(finals["wsd"]) - np.mean(finals["cosine"]))
    assert v["significant"] == (ref.pvalue < 0.05) and v["sentence"] in (tmp_path / "rep" / "report.md").read_text()
    assert [a["n"] for a in data["arms"]] == [3, 3]
    assert (tmp_path / "rep" / "val_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert len(collect_runs([root])) == 6
