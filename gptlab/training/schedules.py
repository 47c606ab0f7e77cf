"""Learning-rate schedules as pure functions of the optimizer step.

    python -c "from gptlab.training.schedules import lr_at; \
               print([round(lr_at(s, 'cosine', 1e-3, 100, 10), 6) for s in (0, 5, 10, 55, 100)])"

Every schedule warms up linearly from lr/warmup to lr over `warmup` steps (step 0 gets lr/warmup, not 0,
so the first update moves the weights), then: cosine to min_lr; linear to min_lr; constant; or wsd
(warmup, stable at lr, then a decay to min_lr over the last `decay_fraction` of the steps: linear, or
1-sqrt as Hägele et al. 2024's cooldowns, lr - (lr - min_lr) * sqrt(progress)). A cooldown branch is a wsd
schedule whose decay starts at the step it branched from (gptlab/config/cooldown.py).
"""
from __future__ import annotations

import math


def lr_at(step: int, name: str, lr: float, max_steps: int, warmup: int,
          min_lr_ratio: float = 0.1, decay_fraction: float = 0.2, decay_shape: str = "linear") -> float:
    """Learning rate for optimizer step `step` (0-based) of a `max_steps` run."""
    min_lr = lr * min_lr_ratio
    if step < warmup:
        return lr * (step + 1) / warmup
    if name == "constant":
        return lr
    if name == "wsd":
        decay_start = max_steps - max(1, round(decay_fraction * max_steps))
        if step < max(decay_start, warmup):
            return lr
        progress = (step - max(decay_start, warmup)) / max(1, max_steps - max(decay_start, warmup))
        progress = min(1.0, progress)
        return lr - (lr - min_lr) * (math.sqrt(progress) if decay_shape == "1-sqrt" else progress)
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    if name == "cosine":
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
    if name == "linear":
        return lr - (lr - min_lr) * progress
    raise ValueError(f"unknown schedule {name!r}; allowed: cosine, linear, constant, wsd")
