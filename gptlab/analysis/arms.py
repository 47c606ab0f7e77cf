"""Runs grouped into arms: what differs other than the seed (and the learning rate, which each arm tunes for itself).

    python -c "from gptlab.analysis.runs import collect_runs; from gptlab.analysis.arms import group_arms; \
               print([a['label'] for a in group_arms(collect_runs(['runs/multirun/2026-12-01_00-00-00']))])"
    python -m gptlab.report runs/multirun/<sweep> baseline=sched=cosine     # the verdicts, against cosine

An arm with several learning rates is compared at its best one: the rate whose mean over seeds is lowest on val
half a (the first half of the val windows), reported on val half b, so that the selection does not flatter it. A
best rate at the edge of the arm's grid is flagged. Arms that share their seeds are compared per seed (paired t),
others with Welch's t; the p-values of one report are Holm-adjusted (gptlab/analysis/stats.py).
"""
from __future__ import annotations

import math

from gptlab.analysis.runs import ReportError
from gptlab.analysis.stats import difference, holm, summarize
from gptlab.config.checks import within
from gptlab.run.folder import flat, label

UNPAIRED = ("seed", "optim.lr")  # the keys an arm's runs may differ by
# config keys that say where and how fast a run ran, or what it printed, not what it computed
NOT_THE_ARM = UNPAIRED + ("paths", "logger", "hydra", "callbacks", "sample", "study", "recipe", "required", "device",
                          "resume", "data.num_workers", "trainer.stop_after", "trainer.ckpt_every_minutes",
                          "trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.threads",
                          "trainer.accelerator", "trainer.log_every_n_steps", "trainer.keep_tokens",
                          "cooldown.branches", "choices", "sweep", "name", "arm",
                          "derived")  # the last five: what a run records about itself


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def defines_arm(key: str) -> bool:
    """Whether a config key (or an override's key) is part of what an arm is, not its seed, rate or how it ran."""
    return not within(key, NOT_THE_ARM)


def arm_config(run: dict) -> dict:
    """The run's resolved config as flat key: value pairs, less the seed, the rate and how it ran."""
    return {k: v for k, v in flat(run.get("config") or {}).items() if defines_arm(k)}


def arm_overrides(run: dict) -> tuple[str, ...]:
    """The run's command-line overrides that define its arm: all but the seed, the rate and Hydra's own."""
    keys = ((o, override_key(o)) for o in run.get("overrides") or [])
    return tuple(o for o, k in keys if k not in UNPAIRED and not k.startswith("hydra"))


def group_arms(runs: list[dict]) -> list[dict]:
    """Measured runs whose configs differ only by seed and learning rate (and where they ran), as arms in first-seen
    order: {label, overrides, config, runs, by_lr}. The label is what sets the arm apart: its overrides that the
    others lack, else the config values that differ ('all runs' when there is one arm)."""
    arms: dict[tuple, dict] = {}
    for r in runs:
        if r["kind"] == "measured" and r.get("final_val_loss") is not None:
            cfg = arm_config(r)
            key = tuple(sorted((k, repr(v)) for k, v in cfg.items()))
            arm = arms.setdefault(key, {"overrides": arm_overrides(r), "config": cfg, "runs": []})
            arm["runs"].append(r)
    out = list(arms.values())
    shared = set.intersection(*(set(a["overrides"]) for a in out)) if out else set()
    differ = sorted({k for a in out for k in a["config"] if len({repr(b["config"].get(k)) for b in out}) > 1})
    by_overrides = len({tuple(o for o in a["overrides"] if o not in shared) for a in out}) == len(out)
    for a in out:
        words = [o for o in a["overrides"] if o not in shared] if by_overrides else \
            [f"{k}={a['config'].get(k)}" for k in differ]
        a["label"] = label(words) or "all runs"
        a["by_lr"] = by_lr(a["runs"])
    return out


def by_lr(runs: list[dict]) -> dict:
    """{learning rate: the runs at it}, in first-seen order."""
    out: dict = {}
    for r in runs:
        out.setdefault(r.get("lr"), []).append(r)
    return out


def _mean(runs: list[dict], key: str) -> float:
    vals = [r.get(key) for r in runs]
    return sum(vals) / len(vals) if vals and all(v is not None for v in vals) else math.nan


def select_lr(arm: dict) -> dict | None:
    """The arm's best rate chosen on val half a and reported on half b; None for an arm with one rate."""
    lrs = sorted(lr for lr in arm["by_lr"] if lr is not None)
    if len(lrs) < 2:
        return None
    a = {lr: _mean(arm["by_lr"][lr], "final_val_loss_a") for lr in lrs}
    b = {lr: _mean(arm["by_lr"][lr], "final_val_loss_b") for lr in lrs}
    if any(math.isnan(v) for v in list(a.values()) + list(b.values())):
        raise ReportError(f"arm {arm['label']}: some runs have no val half losses (final_val_loss_a/_b: runs from "
                          "before gptlab logged val halves); a rate chosen and reported on the same tokens would "
                          "flatter it, so rerun them or report each rate as its own arm")
    chosen, on_b = min(lrs, key=a.get), min(lrs, key=b.get)
    return {"grid": lrs, "chosen": chosen, "loss_a": a[chosen], "loss_b": b[chosen],
            "edge": chosen in (lrs[0], lrs[-1]),
            "chosen_on_b": on_b, "best_b": b[on_b], "flattery": b[chosen] - b[on_b], "by_lr_a": a, "by_lr_b": b}


def arm_values(arm: dict, metric: str, notes: list[str]) -> dict:
    """{seed: final loss} of the arm's runs at its chosen rate (or its only one). A repeated seed is no replicate
    (training is deterministic): the first run counts, and a note says so."""
    runs = arm["by_lr"][arm["selection"]["chosen"]] if arm.get("selection") else arm["runs"]
    out: dict = {}
    for r in runs:
        if r.get("seed") in out:
            notes.append(f"{arm['label']}: {r['dir']} repeats seed {r.get('seed')}, so it is no replicate and is left "
                         "out; give each replicate its own seed (study.seeds=3 or seed=1,2,3)")
            continue
        out[r.get("seed")] = r.get(metric)
    return out


def find_baseline(arms: list[dict], baseline: str | None) -> int:
    """The index of the arm named by `baseline` ('sched=cosine', or its label); the first arm when None."""
    if not baseline:
        return 0
    want = baseline.split()
    for i, a in enumerate(arms):
        words = set(a["overrides"]) | set(a["label"].split()) | {f"{k}={v}" for k, v in a["config"].items()}
        if all(any(x == w or x.endswith("." + w) for x in words) for w in want):
            return i
    raise ReportError(f"baseline={baseline}: no arm matches it; the arms are: {'; '.join(a['label'] for a in arms)}")


def compare_arms(runs: list[dict], baseline: str | None = None) -> dict:
    """Arms, their summaries and one test of each arm against the baseline, Holm-adjusted: the report's verdicts."""
    study = next((r.get("baseline") for r in runs if r.get("baseline")), None)
    return compare(group_arms(runs), baseline, study)


def compare(arms: list[dict], baseline: str | None = None, study: str | None = None) -> dict:
    """compare_arms on arms already grouped ({label, overrides, config, runs, by_lr}); `study` is the baseline the
    runs' config names, used when none is given."""
    for a in arms:
        a["selection"] = select_lr(a)
    tuned = any(a["selection"] for a in arms)
    metric, notes = ("final_val_loss_b" if tuned else "final_val_loss"), []
    for a in arms:
        a["values"] = arm_values(a, metric, notes)
        if any(v is None for v in a["values"].values()):
            raise ReportError(f"arm {a['label']}: a run has no {metric}; rerun it (it predates val halves)")
        a["summary"] = summarize(list(a["values"].values()))
    base = find_baseline(arms, baseline) if arms else 0  # one given on the command line must match an arm
    if baseline is None and study and arms:
        try:
            base = find_baseline(arms, study)
        except ReportError:  # the study's baseline is not among these runs (its grid was replaced): the first arm
            notes.append(f"the study's baseline {study} is not among these arms; the first arm is the baseline")
    tests = [_test(a, arms[base]) for i, a in enumerate(arms) if i != base]
    for t, p in zip(tests, holm([t["difference"].p for t in tests])):
        t["p_holm"] = p
    return {"arms": arms, "metric": metric, "baseline": arms[base]["label"] if arms else None, "comparisons": tests,
            "notes": notes}


def _test(arm: dict, base: dict) -> dict:
    seeds_a, seeds_b = set(arm["values"]), set(base["values"])
    paired = seeds_a == seeds_b and len(seeds_a) >= 2
    if paired:
        order = sorted(seeds_a, key=str)
        d = difference([arm["values"][s] for s in order], [base["values"][s] for s in order], paired=True)
    else:
        d = difference(list(arm["values"].values()), list(base["values"].values()))
    return {"arm": arm["label"], "baseline": base["label"], "difference": d}
