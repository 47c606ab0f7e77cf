"""The modern_gpt study with rates added to its arms' grids, after the first sweeps' run folders were gone.

    .venv/bin/python experiments/modern_gpt/add_rates.py runs/multirun/<added runs>   # writes rates.md, rates.json
    .venv/bin/python experiments/modern_gpt/add_rates.py runs/multirun/x --out /tmp/r   # elsewhere

The study's first 54 runs (2026-12-03) are kept only as report.json's numbers: each run's seed, rate and final val
losses (all of val, half a, half b), and each arm's tokens-to-loss ratio per seed. Their run folders (val curves,
configs) were not kept. The runs given here add rates to the arms' grids. This rebuilds every arm from both, chooses
each arm's rate on val half a over its whole grid, tests it against the baseline on half b (paired t over the
shared seeds, Holm over the comparisons) and reads each multiplier from the new runs' val curves when the chosen
rate is a new one, or from report.json's ratios when it is not (same baseline, rate and seeds). Where the arm or the
baseline chose its rate on half a, the multiplier is read on val half b (gptlab/analysis/multipliers.py): from the
new runs' val/loss_b curves, against the baseline's final half-b loss. report.json's ratios were read on all of val
and it keeps no half-b curve, so an arm whose chosen rate is archived then has no multiplier; its archived
full-curve figure is printed beside it, marked as such, not used.

A new run that repeats an archived one (same arm, rate and seed) is a check: training is deterministic, so its
losses must equal the archive's. The check is printed and written; the archived run is the one used.

With every run folder at hand, `python -m gptlab.report <every sweep>` computes the same in one command.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from gptlab.analysis.arms import arm_overrides, by_lr, compare, defines_arm, override_key
from gptlab.analysis.multipliers import multiplier, read_on, section, seed_runs
from gptlab.analysis.plots import tokens_to_loss_png
from gptlab.analysis.runs import find_run_dirs, load_run
from gptlab.analysis.stats import holm
from gptlab.analysis.verdicts import arms_json, arms_section
from gptlab.cli import fail
from gptlab.errors import Refused, UserError
from gptlab.fs import atomic_write_bytes, atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent


def archived_arms(report: dict) -> list[dict]:
    """report.json's arms, each run as a row with its final point as its only val point, on all of val and on half b
    (the baseline's multiplier reads no more); archived=True marks that its curves are not kept."""
    by_dir = {r["dir"]: r for r in report["runs"]}
    arms = []
    for a in report["arms"]:
        runs = [dict(by_dir[d], curve=[(by_dir[d]["tokens"], by_dir[d]["final_val_loss"])], archived=True,
                     curve_b=[(by_dir[d]["tokens"], by_dir[d]["final_val_loss_b"])]
                     if by_dir[d].get("final_val_loss_b") is not None else [])
                for d in a["runs"]]
        arms.append({"label": a["label"], "overrides": tuple(a["overrides"]), "config": {}, "runs": runs})
    return arms


def arm_words(run: dict) -> frozenset:
    """The run's arm-defining overrides, less those that say how it ran (trainer.threads=1): the archived arms'
    overrides, which were grouped by config, carry none."""
    return frozenset(o for o in arm_overrides(run) if defines_arm(override_key(o)))


def add_runs(arms: list[dict], paths: list[str]) -> list[dict]:
    """Each new run into the arm with the same overrides (a new arm if none), unless it repeats an archived run:
    then it is a check, returned as {run, lr, seed, loss_b archived/new, equal}."""
    checks = []
    for d in (d for p in paths for d in find_run_dirs(p)):
        run = load_run(d, name=str(d))
        if not run["from_summary"]:
            print(f"{d}: no summary.json (unfinished), left out")
            continue
        words = arm_words(run)
        arm = next((a for a in arms if frozenset(a["overrides"]) == words), None)
        if arm is None:
            arm = {"label": " ".join(sorted(words)), "overrides": tuple(sorted(words)), "config": {}, "runs": []}
            arms.append(arm)
        twin = next((r for r in arm["runs"] if r.get("archived") and r["lr"] == run["lr"]
                     and r["seed"] == run["seed"]), None)
        if twin is None:
            arm["runs"].append(run)
            continue
        checks.append({"run": str(d), "arm": arm["label"], "lr": run["lr"], "seed": run["seed"],
                       **{f"{k}_{src}": r.get(k) for src, r in (("archived", twin), ("new", run))
                          for k in ("final_val_loss", "final_val_loss_a", "final_val_loss_b")},
                       "final_point_new": list(run["curve"][-1]) if run["curve"] else None,
                       "equal": all(twin.get(k) == run.get(k) for k in ("final_val_loss", "final_val_loss_b"))})
    for a in arms:
        a["by_lr"] = by_lr(a["runs"])
    return checks


def merged_multipliers(result: dict, report: dict) -> list[dict]:
    """Each arm's multiplier: from its new runs' curves when its chosen rate is new, else report.json's, which is
    used only where it was read on the half that read_on names (records without `half` were read on all of val)."""
    old = {m["label"]: m for m in report["multipliers"]}
    base = next(a for a in result["arms"] if a["label"] == result["baseline"])
    out = []
    for a in (a for a in result["arms"] if a is not base):
        if any(r.get("archived") for r in seed_runs(a).values()):
            m = {k: v for k, v in old[a["label"]].items() if k != "p_holm"}
            m["p"] = math.nan if m["p"] is None else m["p"]
            m["from"], m["half"] = "report.json", m.get("half", "full")
            if m["half"] != read_on(a, base):  # a full-curve figure where a rate was chosen on half a: not used
                m = {"label": m["label"], "half": read_on(a, base), "n": m["n"], "paired": m["paired"], "reached": 0,
                     "ratios": [None] * m["n"], "multiplier": None, "low": None, "high": None, "p": math.nan,
                     "reason": "no val/loss_b curve (its chosen rate ran only in the archive, and report.json keeps "
                               "final losses, not curves)", "from": "report.json", "archived_full": m}
        else:
            m = {**multiplier(a, base), "from": "val curves"}
        out.append(m)
    for m, p in zip(out, holm([m["p"] for m in out])):
        m["p_holm"] = p
    return out


def archived_note(m: dict) -> str:
    """'; archived, read on all of val, ... not used: 0.37x [0.27, 0.51]': an archived figure shown, not used."""
    old = m.get("archived_full")
    if not old:
        return ""
    if old["multiplier"] is None:
        figure = f"above 1x in {old['n'] - old['reached']} of {old['n']} seeds"
    else:
        interval = f" [{old['low']:.2f}, {old['high']:.2f}]" if old["low"] is not None else ""
        figure = f"{old['multiplier']:.2f}x{interval}"
    return f"; archived, read on all of val, which holds half a that chose a rate, so not used: {figure}"


def shown(path: str) -> str:
    """path relative to the working folder where it lies under it: the written report names no home folders."""
    p = Path(path).resolve()
    return str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else path


def check_lines(checks: list[dict]) -> list[str]:
    if not checks:
        return []
    lines = ["## Reproduction of archived runs", "",
             "A new run with an archived run's arm, rate and seed; deterministic training must give the same "
             "losses.", ""]
    for c in checks:
        lines.append(f"- {c['run']} ({c['arm']}, lr {c['lr']:g}, seed {c['seed']}): half b "
                     f"{c['final_val_loss_b_archived']!r} archived, {c['final_val_loss_b_new']!r} now: "
                     f"{'equal' if c['equal'] else 'NOT EQUAL'}.")
    return lines + [""]


def main(argv=None) -> None:
    try:
        run(argv)
    except UserError as e:  # no runs where given, a bad archive: one line, exit 2 (gptlab/cli.py)
        fail(e)


def run(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run or sweep folders that add rates to the study's arms")
    ap.add_argument("--archive", default=str(HERE / "report.json"), help="the first sweeps' report.json")
    ap.add_argument("--out", default=str(HERE), help="folder for rates.md, rates.json, rates_tokens_to_loss.png")
    args = ap.parse_args(argv)
    try:
        report = json.loads(Path(args.archive).read_text())
    except (OSError, ValueError) as e:
        raise Refused(f"--archive {args.archive}: not a readable report.json ({e}); give the first sweeps' "
                      "report.json") from None
    arms = archived_arms(report)
    checks = add_runs(arms, args.runs)
    result = compare(arms, baseline=report["baseline"])
    found = merged_multipliers(result, report)
    text = "\n".join(["# modern_gpt: every arm over its whole rate grid", "",
                      f"Archived: {shown(args.archive)} ({len(report['runs'])} runs); added: {', '.join(args.runs)}. "
                      "Multipliers marked `report.json` are the archived ones (the arm's chosen rate is an archived "
                      "rate); the others are read from the added runs' val curves. report.json's were read on all of "
                      "val and it keeps no half-b curves, so where a multiplier is due on half b an archived one is "
                      "not used; it is shown below, marked full-curve.", "",
                      arms_section(result), "", section(result, found), ""]
                     + [f"  (from {m['from']}: {m['label']}{archived_note(m)})" for m in found] + [""]
                     + check_lines(checks))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "rates.md", text)
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in m.items()} for m in found]
    atomic_write_json(out / "rates.json", {**arms_json(result), "multipliers": clean, "checks": checks,
                                           "archive": shown(args.archive), "added": args.runs})
    atomic_write_bytes(out / "rates_tokens_to_loss.png", tokens_to_loss_png(found, result["baseline"]))
    print(text + f"\nwrote rates.md, rates.json and rates_tokens_to_loss.png in {out}")


if __name__ == "__main__":
    main()
