"""The coordinate checks behind experiments/mup_transfer: widths 64..512 under the standard parametrisation and
muP (base width 64), and depths 2..16 without and with depth-muP (base depth 2, muP width 64). Writes the figures
and a table of each layer's log-log slope (0 = flat in size, 1 = grows in proportion) into --out: runs/coord_check
by default (ignored by git), beside this file only when asked, to refresh the committed ones.

    .venv/bin/python experiments/mup_transfer/coord_check.py             # -> runs/coord_check/, ~2 min on 2 cores
    .venv/bin/python experiments/mup_transfer/coord_check.py --out experiments/mup_transfer   # the committed copies
"""
import argparse
import os
from pathlib import Path

from gptlab.analysis.plots import coord_check_png
from gptlab.fs import atomic_write_bytes, atomic_write_json, atomic_write_text
from gptlab.training.coord_check import coord_check

LR, STEPS, SEEDS = 3e-3, 4, (0, 1, 2)


def table(results: list[dict]) -> str:
    names = list(results[0]["slopes"])
    lines = ["| layer | " + " | ".join(r["label"] for r in results) + " |", "|---|" + "---|" * len(results)]
    lines += [f"| {n} | " + " | ".join(f"{r['slopes'][n]:+.2f}" for r in results) + " |" for n in names]
    return "\n".join(lines)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("GPTLAB_RUNS", "runs")) / "coord_check",
                        help="folder for the figures, coord_check.json and coord_check.md (default: runs/coord_check; "
                             "experiments/mup_transfer refreshes the committed ones)")
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    width = [dict(coord_check(mup=False, lr=LR, steps=STEPS, seeds=SEEDS), label="standard"),
             dict(coord_check(mup=True, lr=LR, steps=STEPS, seeds=SEEDS), label="muP")]
    depth = [dict(coord_check(depths=(2, 4, 8, 16), depth_mup=False, lr=LR, steps=STEPS, seeds=SEEDS),
                  label="muP, no depth scaling"),
             dict(coord_check(depths=(2, 4, 8, 16), depth_mup=True, lr=LR, steps=STEPS, seeds=SEEDS),
                  label="muP + depth-muP")]
    atomic_write_bytes(out / "coord_width.png", coord_check_png(width))
    atomic_write_bytes(out / "coord_depth.png", coord_check_png(depth))
    atomic_write_json(out / "coord_check.json", {"width": width, "depth": depth})
    text = (f"Log-log slope of each layer's size at step {STEPS} (Adam, lr {LR}, {len(SEEDS)} seeds) against width "
            f"64..512:\n\n{table(width)}\n\nand against depth 2..16 at width 64:\n\n{table(depth)}\n")
    atomic_write_text(out / "coord_check.md", text)
    print(text)


if __name__ == "__main__":
    main()
