"""Wall time to a val loss: the default recipe (make train's) and a faster one, each trained until its validation
reaches the target (trainer.target_val_loss) within its own steps and schedule, on the same machine, one after the
other from this one script, the pair repeated --rounds times so load drift hits both alike. The time is
summary.json's, interpolated between evaluations; validations and start-up are not counted in it, nor in the ratio.

    .venv/bin/python benchmarks/time_to_loss.py        # 5.52 (where make train ends): modern_gpt's combined recipe
    .venv/bin/python benchmarks/time_to_loss.py --target 5.15 --fast "optim=muon optim.lr=0.005 trainer.max_steps=2400"
    .venv/bin/python benchmarks/time_to_loss.py --fast "optim=muon" --fast "optim=muon model.pos=rope" --out t.json

Prints each run's tokens and seconds to the target and, per faster recipe (--fast, repeatable), the median ratio
fast / default (below 0.5: it takes under half the time). Writes the figures as JSON with --out.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
p = argparse.ArgumentParser()
p.add_argument("--target", type=float, default=5.52, help="the val loss to reach (make train ends at 5.52)")
p.add_argument("--fast", action="append", help="a faster recipe's overrides (repeatable; default: "
               "modern_gpt's combined recipe, +modern=all_muon optim.lr=0.01)")
p.add_argument("--default", default="", help="the default recipe's overrides (none: make train's)")
p.add_argument("--eval-interval", type=int, default=25, help="validations between which the time is interpolated")
p.add_argument("--rounds", type=int, default=1)
p.add_argument("--out", help="JSON file for the figures")
args = p.parse_args()
args.fast = args.fast or ["+modern=all_muon optim.lr=0.01"]  # every option and Muon, at the study's chosen rate


def time_to(overrides: str, folder: Path) -> dict:
    """One run of python -m gptlab.train until the target; its summary's target record."""
    cmd = [sys.executable, "-m", "gptlab.train", *shlex.split(overrides), f"trainer.target_val_loss={args.target}",
           f"trainer.eval_interval={args.eval_interval}", "logger=none", "sample.max_new_tokens=0",
           f"hydra.run.dir={folder}"]  # each recipe keeps its own steps and schedule
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "WANDB_SILENT": "true"})
    target = json.loads((folder / "summary.json").read_text())["target"]
    print(f"{overrides or 'default':>40}: {'reached' if target['reached'] else 'NOT reached'} after "
          f"{target['tokens'] or 0:,.0f} tokens, {target['wall_s'] or float('nan'):.1f} s", flush=True)
    return target


with tempfile.TemporaryDirectory() as tmp:
    recipes = {"default": args.default, **{f"fast {i + 1}": f for i, f in enumerate(args.fast)}}
    runs = {name: [] for name in recipes}
    for r in range(args.rounds):
        for name, overrides in recipes.items():
            runs[name].append(time_to(overrides, Path(tmp) / f"{name.replace(' ', '')}-{r}"))
result = {"target": args.target, "default": args.default, "runs": runs, "fast": []}
for i, overrides in enumerate(args.fast):
    pairs = zip(runs["default"], runs[f"fast {i + 1}"])
    ratios = [f["wall_s"] / d["wall_s"] for d, f in pairs if d["reached"] and f["reached"]]
    median = statistics.median(ratios) if ratios else None
    result["fast"].append({"overrides": overrides, "ratios": ratios, "median_ratio": median})
    print(f"wall time to val loss {args.target}: {overrides} / default = "
          + (f"{median:.2f} (median of {len(ratios)})" if ratios else "not measured (a recipe missed it)"))
if args.out:
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
