"""A cooldown branch: the source run's own config, with a rate that decays from a kept step (Hägele et al. 2024), in a
run folder of its own.

    python -m gptlab.train sched=constant trainer.keep_tokens=[51.2K,102.4K,204.8K]      # a constant-rate run ...
    python -m gptlab.train branch=runs/<run>/checkpoints/step-000200.ckpt                # ... a branch from step 200
    python -m gptlab.train branch=runs/<run>/checkpoints/step-000200.ckpt cooldown.fraction=0.3 cooldown.shape=linear
    python -m gptlab.train experiment=cooldown        # or a branch from every kept step when the run ends

A branch from step k continues the run's optimizer state, data stream and RNG, and decays the rate over its last
`cooldown.fraction` of steps: c = round(k * f / (1 - f)) more steps, so it ends at k + c, and its schedule is a wsd
schedule whose decay starts exactly at k (the rate at k is the constant run's). With cooldown.branches=true every
kept step's branch runs when its source ends, in <run>/cooldowns/step-000400/: a finished branch (its summary.json
says so) is skipped, an interrupted one resumes from its own last.ckpt, and the source's summary.json lists every
branch's final val loss at its token budget. Imports no torch until a checkpoint is read for its step.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from gptlab.config.checks import ConfigError
from gptlab.config.derive import run_config
from gptlab.config.schema import RunConfig
from gptlab.fs import atomic_write_json
from gptlab.optim.schedule import TARGET, Schedule
from gptlab.run.folder import CONFIG, SUMMARY, kept_name, read_summary, upgraded
from gptlab.run.launch import Launch
from gptlab.run.lock import claim
from gptlab.run.resume import resumed_config, task_keys

RESULT_KEYS = ("steps", "tokens", "final_val_loss", "final_val_loss_a", "final_val_loss_b")


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


def check_branches(run: RunConfig) -> None:
    """cooldown.branches=true refused now, not after the run when its branches start."""
    if not run.cooldown.branches:
        return
    if not run.derived.keep_steps:
        raise ConfigError("cooldown.branches=true needs trainer.keep_tokens: the budgets to branch from")
    if run.derived.world_size != 1:
        raise ConfigError("cooldown.branches=true runs its branches in this process, on one device; on several, "
                          "branch each kept checkpoint with its own command: python -m gptlab.train "
                          "branch=<run>/checkpoints/step-000400.ckpt")
    for step in run.derived.keep_steps:
        check_source(run.sched, run.trainer.max_steps, step, "trainer.keep_tokens")


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


def branch_source(cfg: DictConfig) -> tuple[DictConfig, list[str], int]:
    """branch=<kept checkpoint>: (its run's own config.yaml as a cooldown branch into this command's new folder, what
    the command line changed, the step the checkpoint holds). The command line may set cooldown.* and logger.*, and
    what a resume may change; nothing else."""
    from gptlab.model.checkpoint import checkpoint_step
    ckpt = Path(cfg.branch)
    saved = ckpt.parent.parent / CONFIG
    if not ckpt.is_file() or not saved.is_file():
        raise ConfigError(f"branch={cfg.branch}: {'no such checkpoint' if not ckpt.is_file() else f'no {saved}'}; "
                          "give a kept checkpoint in its run folder, <run>/checkpoints/step-000400.ckpt "
                          "(trainer.keep_tokens keeps them)")
    given = task_keys()
    if "trainer.max_steps" in given:
        raise ConfigError("trainer.max_steps cannot be given with branch=: a branch ends where its cooldown does "
                          "(its step / (1 - cooldown.fraction)); change cooldown.fraction instead")
    keys = [k for k in given if k.split(".")[0] not in ("branch", "cooldown", "logger")]
    source, changes = resumed_config(cfg, upgraded(OmegaConf.load(saved)), keys)
    if any(k.split(".")[0] == "logger" for k in given):
        source.logger = cfg.logger
    step = checkpoint_step(ckpt)
    out = branch_config(source, str(ckpt), step, OmegaConf.to_container(cfg.cooldown, resolve=True),
                        cfg.paths.run_dir, cfg.trainer.stop_after if "trainer.stop_after" in given else None)
    return out, changes, step


def branch_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "cooldowns" / f"step-{step:06d}"


def branch_of(run: RunConfig, step: int) -> tuple[RunConfig, Launch]:
    """The typed branch from the run's kept checkpoint at `step` (a resume of it when it was interrupted), and the
    step its checkpoint holds. Its W&B run sits beside its source's: the same group, the job type '<arm> cooldown'."""
    from gptlab.model.checkpoint import checkpoint_step
    run_dir = Path(run.paths.run_dir)
    out = branch_dir(run_dir, step)
    saved = OmegaConf.create(run.record())
    name = f"{run.name + ' ' if run.name else ''}cooldown@{step}"
    with open_dict(saved):
        saved.name, saved.arm, saved.sweep = name, f"{run.arm or 'run'} cooldown"[:64], run.sweep
        if "wandb" in saved.logger:
            saved.logger.wandb.update(group=saved.logger.wandb.group or run.sweep or run_dir.name, name=name,
                                      job_type=saved.arm)
    cfg = branch_config(saved, str(run_dir / "checkpoints" / kept_name(step)), step, asdict(run.cooldown), str(out))
    last = out / "checkpoints" / "last.ckpt"
    if last.is_file():
        cfg.resume = str(out)
    return run_config(cfg), Launch(resume_step=checkpoint_step(last) if last.is_file() else step)


def run_branches(run: RunConfig, train) -> list[dict]:
    """Every kept step's branch, trained by `train(branch, launch)` (gptlab.training.trainer.fit) or read back when
    finished; their results go into the source's summary.json under `cooldowns`."""
    results = []
    for step in run.derived.keep_steps:
        out = branch_dir(Path(run.paths.run_dir), step)
        if not read_summary(out).get("finished"):
            branch, launch = branch_of(run, step)
            lock = claim(out, resuming=branch.resume is not None)
            try:
                train(branch, launch)
            finally:
                if lock is not None:
                    lock.release()
        summary = read_summary(out)
        results.append({"from_step": step, "dir": str(out), **{k: summary.get(k) for k in RESULT_KEYS}})
    atomic_write_json(Path(run.paths.run_dir) / SUMMARY, {**read_summary(run.paths.run_dir), "cooldowns": results})
    return results
