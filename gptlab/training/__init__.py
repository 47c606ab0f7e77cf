"""Training: compose (a command line's RunConfig), module (the LightningModule), components (checking and building
_target_ components), callbacks (progress, throughput, checkpoints, stops), hardware (peak FLOP/s, jemalloc,
compile), guards (whole checkpoints, non-finite stop, RNG state), drills (fault rehearsals), loggers (W&B), sharding
(FSDP2), trainer (fit: the run, and its cooldown branches). A run's folder, lock, records, resume, branches and
requeue are gptlab/run/; the optimizer and its schedule gptlab/optim/.
"""
