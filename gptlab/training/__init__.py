"""Training: module (the LightningModule), optimizers (parameter groups, building from config) and muon, components
(checking and building _target_ components), callbacks (progress, throughput, checkpoints, stops), hardware (peak
FLOP/s, jemalloc, compile), guards (whole checkpoints, non-finite stop, RNG state), drills, records (metrics.csv,
summary.json), runlock (one writer per run folder), loggers (W&B), fit (the run), branches (cooldowns).
"""
