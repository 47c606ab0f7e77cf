#!/usr/bin/env bash
# GPU readiness: on an NVIDIA GPU machine, bench model=30m and model=gpt2 with bf16 autocast and torch.compile, print
# MFU and the wall time of the reference study (20k steps x 64 x 512 = 655M tokens) projected from measured tokens/s.
#
#   bash benchmarks/gpu.sh                        # .venv/bin/python (PY=... for another); JSON under runs/bench_gpu/
#   OUT=/tmp/gpu MODELS=30m LOSS=0 bash benchmarks/gpu.sh     # one model, no loss-layer timing
#   PY=python3 bash benchmarks/gpu.sh             # a CUDA image's own torch (+ hydra-core, omegaconf: no install)
#
# Needs a CUDA build of torch (the Makefile pins the CPU wheel): pip install torch --index-url
# https://download.pytorch.org/whl/cu128 into the venv first. Works offline: without a prepared data/shakespeare it
# benches on random tokens (synthetic=true), which run at the same speed. On one H200 the whole script took about 5
# minutes (benchmarks/results/h200-2026-11-28 holds its figures). First the output layer + loss alone
# (benchmarks/loss_chunk.py: full logits vs chunk sizes, eager and compiled; ~1 minute). Then per model, ~1-2 minutes:
#   1. a sync check: 20 Lightning steps with no log row among them under torch.cuda.set_sync_debug_mode; every
#      host-device sync in them is counted (expect 0: the hot path reads nothing back between log rows);
#   2. the bench: lightning, bare and nanogpt paths at the preset's CUDA micro batch (64 x 512 for 30m, the study's
#      whole step; 32 x 1024 for gpt2), 3 alternating rounds of 15 steps, eval and generation speed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # gptlab importable without an install (a bare GPU image)
PY=${PY:-.venv/bin/python}
command -v "$PY" >/dev/null || PY=python3
OUT=${OUT:-runs/bench_gpu}
MODELS=${MODELS:-gpt2 30m}
mkdir -p "$OUT"

"$PY" - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"benchmarks/gpu.sh: torch {torch.__version__} sees no CUDA device; install a CUDA build of torch")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
EOF
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>/dev/null || true

# a stage that fails or outlasts LIMIT seconds is reported and the next one runs
stage() { timeout "${LIMIT:-300}" "$@" || echo "=== FAILED (exit $?): ${*:2}"; }
echo "=== tests marked gpu (tests/test_gpu.py): the CUDA paths against the CPU's"
stage "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
if [ "${LOSS:-1}" = 1 ]; then  # LOSS=0 skips it
  echo "=== output layer + cross-entropy, forward + backward, 32 x 1024 rows: full logits vs chunked"
  stage "$PY" benchmarks/loss_chunk.py --rows 32768 --width 384 768 --chunks 2048 8192 32768 --repeats 10 \
    --out "$OUT/loss_chunk.json"
  stage "$PY" benchmarks/loss_chunk.py --rows 32768 --width 768 --chunks 8192 --compile --repeats 10 \
    --out "$OUT/loss_chunk_compiled.json"
fi

COMMON=(trainer.accelerator=gpu trainer.precision=bf16-mixed data.num_workers=2)
[ -f "${GPTLAB_DATA:-data}/shakespeare/manifest.json" ] || COMMON+=(synthetic=true)

for m in $MODELS; do
  echo "=== model=$m: host-device syncs in Lightning's steps"
  stage "$PY" -m gptlab.bench model="$m" "${COMMON[@]}" trainer.compile=false "measure=[lightning]" warmup=3 steps=20 \
    rounds=1 eval_batches=0 generate.repeats=0 sync_debug=true trainer.log_every_n_steps=1000 out="$OUT/$m.sync.json"
  echo "=== model=$m: bench, bf16 + compile"
  stage "$PY" -m gptlab.bench model="$m" "${COMMON[@]}" trainer.compile=true warmup=3 steps=15 rounds=3 \
    out="$OUT/$m.json"
done

"$PY" - "$OUT" $MODELS <<'EOF'
import json, os, sys
out, models = sys.argv[1], sys.argv[2:]
print(f"\n| model | GPU | micro batch | Lightning tokens/s | MFU | Lightning/bare | gptlab/nanoGPT | loader | peak memory "
      f"| syncs/step | flash SDPA | study 655M tokens |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
fmt = lambda v, f: "n/a" if v is None else f.format(v)
for m in models:
    if not all(os.path.exists(f"{out}/{m}{x}.json") for x in ("", ".sync")):
        print(f"| {m} | failed: see its stage's output above |")
        continue
    r, sync = (json.load(open(f"{out}/{m}{x}.json")) for x in ("", ".sync"))
    t = r["train"]["lightning"]
    per_step = None if sync["syncs"] is None else sync["syncs"] / (sync["rounds"] * sync["steps"])
    print(f"| {m} | {r['device_name']} | {r['micro_batch']} x {r['block_size']} | {t['tokens_per_s']:,.0f} | "
          f"{fmt(t['mfu'] and 100 * t['mfu'], '{:.1f}%')} | {r['lightning_vs_bare']['median']:.3f} | "
          f"{r['lightning_vs_nanogpt']['median']:.2f}x | {100 * t['loader_share']:.2f}% | "
          f"{fmt(t['peak_memory_gb'], '{:.1f} GB')} | {fmt(per_step, '{:.2f}')}{' (expected 0)' if per_step else ''} | "
          f"{r['flash_sdpa']} | {r['projection']['hours']:.2f} h |")
print(f"\nMFU against dense bf16 peaks (gptlab.training.hardware.GPU_BF16_PEAK); JSON in {out}/")
EOF
