#!/usr/bin/env bash
# gptlab as it ships against a nanoGPT-style loop as it ships: `python -m gptlab.bench` times both in one process,
# which gives them one allocator; here each runs in its own process, alternating, so gptlab's Lightning path gets
# jemalloc (when installed) and the nanoGPT loop glibc's malloc, as `python train.py` in nanoGPT would.
#
#   bash benchmarks/vs_nanogpt.sh                      # model=30m, 8 x 512, 3 rounds of each; ~15 minutes on 2 cores
#   ROUNDS=2 ARGS="model=tiny synthetic=true" bash benchmarks/vs_nanogpt.sh   # a quick look
#
# Each process: `warmup` untimed steps, then `steps` timed ones (bench.yaml); the ratio is of the median tokens/s.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/vs_nanogpt}
ARGS=${ARGS:-model=30m}
mkdir -p "$OUT"
for r in $(seq "${ROUNDS:-3}"); do
  $PY -m gptlab.bench $ARGS "measure=[lightning]" rounds=1 eval_batches=0 generate.repeats=0 out="$OUT/gptlab.$r.json"
  GPTLAB_JEMALLOC=0 $PY -m gptlab.bench $ARGS "measure=[nanogpt]" rounds=1 eval_batches=0 generate.repeats=0 \
    out="$OUT/nanogpt.$r.json"
done
$PY - "$OUT" <<'EOF'
import glob, json, statistics, sys
tps = {p: [json.load(open(f))["train"][p]["tokens_per_s"] for f in sorted(glob.glob(f"{sys.argv[1]}/{n}.*.json"))]
       for p, n in (("lightning", "gptlab"), ("nanogpt", "nanogpt"))}
a, b = (statistics.median(tps[p]) for p in ("lightning", "nanogpt"))
print(f"gptlab (Lightning, jemalloc) {a:,.0f} tokens/s {[round(x) for x in tps['lightning']]}; nanoGPT-style "
      f"(glibc) {b:,.0f} tokens/s {[round(x) for x in tps['nanogpt']]}; ratio of medians {a / b:.2f}x")
EOF
