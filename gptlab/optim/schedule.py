"""The learning-rate schedule: a pure function of the optimizer step, one class for every shape. Imports no torch.

    python -c "from gptlab.optim.schedule import Schedule; s = Schedule(warmup_steps=10); \
               print([round(s.factor(t, 100), 4) for t in (0, 5, 10, 55, 99)])"
    python -m gptlab.train sched=wsd sched.decay_fraction=0.3 sched.decay=1-sqrt   # conf/sched/*.yaml name one

The rate is optim.lr x factor(step). The factor warms up linearly over `warmup_steps` (step 0 gets 1/warmup, not 0,
so the first update moves the weights), stays at 1, then decays over the last `decay_fraction` of the steps to
`min_lr_ratio`: cosine, linear, or 1-sqrt (Hägele et al. 2024's cooldown shape); `none` never decays. So cosine
and linear are decays over the whole run (fraction 1), wsd is warmup-stable-decay (fraction 0.2), constant has no
decay, and a cooldown branch is a decay that starts at the step it branched from (gptlab/run/branch.py). A new
shape made of these pieces is one YAML file in conf/sched/.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from gptlab.config.checks import is_int, must
from gptlab.config.schema import Schema

DECAYS = ("cosine", "linear", "1-sqrt", "none")
TARGET = "gptlab.optim.schedule.Schedule"  # what conf/sched/*.yaml's _target_ names


@dataclass
class Schedule(Schema):
    warmup_steps: int = 100  # optimizer steps of linear warmup (step 0 gets optim.lr / warmup_steps)
    decay: str = "cosine"  # cosine | linear | 1-sqrt | none: how the rate falls to min_lr_ratio x optim.lr
    decay_fraction: float = 1.0  # the share of the steps, at the end, that the decay spans (wsd: 0.2)
    min_lr_ratio: float = 0.1  # final lr = min_lr_ratio x optim.lr (Chinchilla's 10x)

    def check(self):
        must(is_int(self.warmup_steps) and self.warmup_steps >= 0, "warmup_steps", "an integer >= 0",
             self.warmup_steps)
        must(self.decay in DECAYS, "decay", f"one of {', '.join(DECAYS)}", self.decay)
        must(0 < self.decay_fraction <= 1, "decay_fraction", "in (0, 1]", self.decay_fraction)
        must(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]", self.min_lr_ratio)

    @classmethod
    def of(cls, spec: dict) -> Schedule:
        """The Schedule a sched spec (conf/sched/*.yaml, resolved) names, its values checked."""
        from gptlab.config.store import build
        return build(cls, {k: v for k, v in dict(spec).items() if k not in ("_target_", "_partial_")}, "sched.")

    def decay_start(self, max_steps: int) -> int:
        """The first step of the decay (max_steps when it never decays): never inside the warmup."""
        if self.decay == "none":
            return max_steps
        return max(max_steps - max(1, round(self.decay_fraction * max_steps)), self.warmup_steps)

    def factor(self, step: int, max_steps: int) -> float:
        """The rate at optimizer step `step` (0-based) of a `max_steps` run, as a fraction of optim.lr."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        start = self.decay_start(max_steps)
        if step < start:
            return 1.0
        p, low = min(1.0, (step - start) / max(1, max_steps - start)), self.min_lr_ratio
        if self.decay == "cosine":
            return low + 0.5 * (1.0 - low) * (1.0 + math.cos(math.pi * p))
        return 1.0 - (1.0 - low) * (math.sqrt(p) if self.decay == "1-sqrt" else p)

    def describe(self, max_steps: int) -> str:
        """'cosine from step 30', 'constant', 'linear over the last 20% (from step 960)' for the header."""
        if self.decay == "none":
            return "constant"
        whole = self.decay_start(max_steps) == self.warmup_steps
        return f"{self.decay} decay" + ("" if whole else f" from step {self.decay_start(max_steps)}")
