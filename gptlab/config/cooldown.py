"""A cooldown branch's config: the source run's own, with a rate that decays from the kept step (Hägele et al. 2024).

    python -m gptlab.train sched=constant trainer.keep_tokens=[51.2K,102.4K,204.8K]      # a constant-rate run ...
    python -m gptlab.train branch=runs/<run>/checkpoints/step-000200.ckpt                # ... a branch from step 200
    python -m gptlab.train branch=runs/<run>/checkpoints/step-000200.ckpt cooldown.fraction=0.3 cooldown.shape=linear
    python -m gptlab.train experiment=cooldown        # or a branch from every kept step when the run ends

A branch from step k continues the run's optimizer state, data stream and RNG, and decays the rate over its last
`cooldown.fraction` of steps: c = round(k * f / (1 - f)) more steps, so it ends at k + c, and its schedule is a wsd
schedule whose decay starts exactly at k (the rate at k is the constant run's). Imports no torch.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from gptlab.config.checks import ConfigError
from gptlab.config.schedule import TARGET, Schedule


def cooldown_steps(step: int, fraction: float) -> int:
    """Steps a branch from `step` decays over, so that they are `fraction` of its total."""
    return max(1, round(step * fraction / (1 - fraction)))


def check_source(sched: dict, max_steps: int, step: int, where: str) -> None:
    """A branch needs the rate at its step to be the peak: after the warmup and before any decay (a constant run,
    or wsd before its decay starts). `sched` is the run's schedule spec (conf/sched/*.yaml, resolved)."""
    s = Schedule.of(sched)
    if step < s.warmup_steps:
        raise ConfigError(f"{where}: step {step} is inside the run's warmup ({s.warmup_steps} steps), where the rate "
                          "is not yet the peak; branch from a step after it")
    if step > s.decay_start(max_steps):
        raise ConfigError(f"{where}: the run's rate ({s.decay} decay from step {s.decay_start(max_steps)}) has "
                          f"already decayed at step {step}; cooldown branches start from a constant rate (train the "
                          "source with sched=constant, or sched=wsd before its decay)")


def moved(node, old: str, new: str):
    """The resolved config with every path inside the source's folder (callbacks' checkpoint dirpath) moved into the
    branch's, so the branch never writes into its source."""
    if isinstance(node, dict):
        return {k: moved(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [moved(v, old, new) for v in node]
    if isinstance(node, str) and (node == old or node.startswith(old.rstrip("/") + "/")):
        return new + node[len(old):]
    return node


def branch_config(saved: DictConfig, ckpt: str, step: int, cooldown: dict, run_dir: str,
                  stop_after: int | None = None) -> DictConfig:
    """The source run's saved config as a branch from `ckpt` (at `step`) into `run_dir`, decaying as `cooldown`
    says ({fraction, shape, min_lr_ratio}); `stop_after` time-slices it as trainer.stop_after does a run."""
    check_source(OmegaConf.to_container(saved.sched), saved.trainer.max_steps, step, f"branch={ckpt}")
    c = cooldown_steps(step, cooldown["fraction"])
    out = OmegaConf.create(moved(OmegaConf.to_container(saved), str(saved.paths.run_dir), str(run_dir)))
    out.sched = OmegaConf.create({"_target_": TARGET, "warmup_steps": saved.sched.warmup_steps,
                                  "decay": cooldown["shape"], "decay_fraction": c / (step + c),
                                  "min_lr_ratio": cooldown["min_lr_ratio"]})
    OmegaConf.update(out, "trainer.max_steps", step + c)
    OmegaConf.update(out, "trainer.keep_tokens", [], force_add=True)
    OmegaConf.update(out, "trainer.stop_after", stop_after, force_add=True)
    out.cooldown = OmegaConf.create({**cooldown, "branches": False})
    out.branch, out.resume = str(ckpt), None
    OmegaConf.update(out, "paths.run_dir", str(run_dir))
    return out
