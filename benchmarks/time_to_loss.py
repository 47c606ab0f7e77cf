"""Wall time to a val loss: the default recipe (make train's) and a faster one, each trained until its validation
reaches the target (trainer.target_val_loss) within its own steps and schedule, on the same machine, one after the
other from this one script, the pair repeated --rounds times so load drift hits both alike. The time is
summary.json's, interpolated between evaluations; validations and start-up are not counted in it, nor in the ratio.

    .venv/bin/python benchmarks/time_to_loss.py                                  # 5.52: where make train ends
    .venv/bin/python benchmarks/time_to_loss.py --fast "experiment=shakespeare_fast" --target 5.15 --rounds 1
    .venv/bin/python benchmarks/time_to_loss.py --fast "optim=muon model.qk_norm=true" --out time_to_loss.json

Prints each run's tokens and seconds to the target and the median ratio fast / default (below 0.5: the faster recipe
takes under half the time). Writes the figures as JSON with --out.
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
p.add_argument("--fast", default="experiment=shakespeare_fast", help="the faster recipe's overrides")
p.add_argument("--default", default="", help="the default recipe's overrides (none: make train's)")
p.add_argument("--eval-interval", type=int, default=25, help="validations between which the time is interpolated")
p.add_argument("--rounds", type=int, default=1)
p.add_argument("--out", help="JSON file for the figures")
args = p.parse_args()


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
    runs = {"default": [], "fast": []}
    for r in range(args.rounds):
        for name, overrides in (("default", args.default), ("fast", args.fast)):
            runs[name].append(time_to(overrides, Path(tmp) / f"{name}-{r}"))
ratios = [f["wall_s"] / d["wall_s"] for d, f in zip(runs["default"], runs["fast"]) if d["reached"] and f["reached"]]
result = {"target": args.target, "default": args.default, "fast": args.fast, "runs": runs, "ratios": ratios,
          "median_ratio": statistics.median(ratios) if ratios else None}
print(f"wall time to val loss {args.target}: fast / default = "
      + (f"{result['median_ratio']:.2f} (median of {len(ratios)})" if ratios else "not measured (a recipe missed it)"))
if args.out:
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
