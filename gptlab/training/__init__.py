"""Training: module (the LightningModule), schedules, callbacks (progress, throughput), hardware (peak FLOP/s),
guards (whole checkpoints, non-finite stop, RNG state), drills, logs (metrics.csv, summary.json), runlock (one
writer per run folder), targets (the _target_ allowlist), loggers (W&B), perf (jemalloc, compile), fit (the run),
speed (the bench's timed paths).
"""
