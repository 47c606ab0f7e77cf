"""Training time to a val loss: faster recipes, each trained until its validation reaches the target
(trainer.target_val_loss) within its own steps and schedule, against the default recipe's whole training time (make
train's run, to its last step); on the same machine, one after the other from this one script, the set repeated
--rounds times (round r with seed=r) so load drift hits all alike. Times are summary.json's training clock (train_s:
steps and data loading), a fast recipe's interpolated between evaluations; validation, checkpoint writes and start-up
have clocks of their own and are not counted. Whether and when the default itself crossed the target is printed.

    .venv/bin/python benchmarks/time_to_loss.py --rounds 3      # 5.52 (where make train ends): Muon + rope, batch 16
    .venv/bin/python benchmarks/time_to_loss.py --target 5.15 --fast "optim=muon optim.lr=0.005 trainer.max_steps=2400"
    .venv/bin/python benchmarks/time_to_loss.py --fast "optim=muon" --fast "optim=muon model.pos=rope" --out t.json

Prints each run's tokens and training seconds to the target and, per faster recipe (--fast, repeatable), the ratio
fast's time to the target / default's training time round by round, their geometric mean with a 95% t-interval and
the t-test on the log ratios (p: is it faster at all), as the report's multipliers are. Writes JSON with --out.
"""
import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FASTEST = "optim=muon optim.lr=0.01 model.pos=rope data.batch_size=16"  # docs/speed.md's record
p = argparse.ArgumentParser()
p.add_argument("--target", type=float, default=5.52, help="the val loss to reach (make train ends at 5.52)")
p.add_argument("--fast", action="append", help="a faster recipe's overrides (repeatable; default: Muon 0.01 and "
               "rope at batch 16 x 64, the fastest measured)")
p.add_argument("--default", default="", help="the default recipe's overrides (none: make train's)")
p.add_argument("--eval-interval", type=int, default=25, help="validations between which the time is interpolated")
p.add_argument("--rounds", type=int, default=1, help="rounds of every recipe, round r at seed=r")
p.add_argument("--out", help="JSON file for the figures")
args = p.parse_args()
args.fast = args.fast or [FASTEST]


def time_to(overrides: str, folder: Path, seed: int, whole: bool = False) -> dict:
    """One run of python -m gptlab.train until the target (whole: to its last step, its own eval interval); its
    summary's target record and clocks."""
    stop = ([] if whole else [f"trainer.target_val_loss={args.target}", f"trainer.eval_interval={args.eval_interval}"])
    cmd = [sys.executable, "-m", "gptlab.train", *shlex.split(overrides), f"seed={seed}", *stop, "logger=none",
           "sample.max_new_tokens=0", f"hydra.run.dir={folder}"]  # each recipe keeps its own steps and schedule
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "WANDB_SILENT": "true"})
    summary = json.loads((folder / "summary.json").read_text())
    crossed = time_to_target(folder)
    target = {**crossed, **{k: summary[k] for k in ("val_s", "ckpt_s", "startup_s")}, "seed": seed,
              "machine": summary["machine"], "whole_train_s": summary["train_s"], "final_val_loss":
              summary["final_val_loss"], "steps": summary["steps"]}
    print(f"{overrides or 'default':>40}: {'reached' if target['reached'] else 'NOT reached'} after "
          f"{target['tokens'] or 0:,.0f} tokens, {target['train_s'] or float('nan'):.1f} s of training (seed {seed}; "
          f"trained {summary['train_s']:.1f} s in all, final loss {summary['final_val_loss']:.4f}; validation "
          f"{summary['val_s']:.1f} s, start-up {summary['startup_s']:.1f} s)", flush=True)
    return target


def time_to_target(folder: Path) -> dict:
    """The run's crossing of args.target read off its own val rows (gptlab/run/records.py's time_to)."""
    from gptlab.run.folder import read_metrics
    from gptlab.run.records import time_to as crossing
    return crossing([r for r in read_metrics(folder) if "val/loss" in r], args.target)


def compare(pairs) -> dict:
    """Ratios fast's time to the target / the default's whole training time, by round; their geometric mean, 95%
    t-interval and two-sided p on the log ratios (is the fast recipe faster at all)."""
    from scipy import stats
    ratios = [f["train_s"] / d["whole_train_s"] for d, f in pairs if f["reached"]]
    out = {"ratios": ratios, "n": len(ratios), "ratio": None, "low": None, "high": None, "p": None}
    if not ratios:
        return out
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / len(logs)
    out["ratio"] = math.exp(mean)
    if len(logs) >= 2:
        sd = statistics.stdev(logs)
        half = stats.t.ppf(0.975, len(logs) - 1) * sd / math.sqrt(len(logs))
        out.update(low=math.exp(mean - half), high=math.exp(mean + half),
                   p=float(stats.ttest_1samp(logs, 0.0).pvalue) if sd > 0 else 0.0)
    return out


with tempfile.TemporaryDirectory() as tmp:
    recipes = {"default": args.default, **{f"fast {i + 1}": f for i, f in enumerate(args.fast)}}
    runs = {name: [] for name in recipes}
    for r in range(args.rounds):
        for name, overrides in recipes.items():
            runs[name].append(time_to(overrides, Path(tmp) / f"{name.replace(' ', '')}-{r}", seed=r,
                                      whole=name == "default"))
result = {"target": args.target, "default": args.default, "runs": runs, "fast": []}
for i, overrides in enumerate(args.fast):
    c = compare(zip(runs["default"], runs[f"fast {i + 1}"]))
    result["fast"].append({"overrides": overrides, **c})
    if c["ratio"] is None:
        print(f"training time to val loss {args.target}: {overrides}: not measured (a recipe missed it)")
        continue
    how = (f" [{c['low']:.3f}, {c['high']:.3f}], p = {c['p']:.2g} (t on log ratios, {c['n']} seeds)"
           if c["low"] is not None else " (1 seed: no interval)")
    print(f"training time to val loss {args.target}: {overrides} / the default's training = {c['ratio']:.3f}{how}; "
          "rounds "
          + ", ".join(f"{r:.3f}" for r in c["ratios"]))
if args.out:
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
