"""The `seeds` resolver: a study's replicates as one sweep dimension, so `study.seeds=3` runs seeds 1, 2 and 3.

    python -m gptlab.train -m experiment=decay study.seeds=3      # 3 schedules x 3 seeds
    python -m gptlab.train -m experiment=decay seed=7,8           # or the seeds themselves

A study's file sweeps `seed: ${seeds:${study.seeds}}` (hydra.sweeper.params); the report groups the runs that
differ only by seed into one arm (gptlab/analysis/arms.py).
"""
from __future__ import annotations

from omegaconf import OmegaConf


def seed_list(n) -> str:
    """'1,2,3' for n = 3: Hydra's sweep syntax for seeds 1..n; n must be a count >= 1."""
    from gptlab.config.checks import ConfigError
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"study.seeds must be a count >= 1, got {n!r}")
    return ",".join(str(i) for i in range(1, n + 1))


def register() -> None:
    if not OmegaConf.has_resolver("seeds"):
        OmegaConf.register_new_resolver("seeds", seed_list)
