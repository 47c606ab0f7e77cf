"""Cooldown branches run when their source run ends (cooldown.branches=true): one per kept checkpoint, each in
<run>/cooldowns/step-000400/, a run folder of its own.

    python -m gptlab.train experiment=cooldown        # a constant-rate run, then a branch from every kept step
    python -m gptlab.train resume=runs/<run>          # after a kill: the run, then the branches not yet finished

A finished branch (its summary.json says so) is skipped; an interrupted one resumes from its own last.ckpt. The source's
summary.json (and its W&B summary) then lists every branch's final val loss at its token budget.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from gptlab.config import RunConfig, run_config
from gptlab.config.cooldown import branch_config
from gptlab.fs import atomic_write_json
from gptlab.runfolder import SUMMARY, read_summary
from gptlab.training.callbacks import kept_name
from gptlab.training.guards import checkpoint_step
from gptlab.training.runlock import claim

RESULT_KEYS = ("steps", "tokens", "final_val_loss", "final_val_loss_a", "final_val_loss_b")


def branch_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "cooldowns" / f"step-{step:06d}"


def branch_of(run: RunConfig, step: int) -> RunConfig:
    """The typed branch from the run's kept checkpoint at `step`; a resume of it when it was interrupted. Its W&B
    run sits beside its source's: the same group, the job type '<arm> cooldown'."""
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
    branch = run_config(cfg)
    branch.resume_step = checkpoint_step(last) if last.is_file() else step  # what its checkpoint holds
    return branch


def run_branches(run: RunConfig, launcher_jobs: int | None = None) -> list[dict]:
    """Every kept step's branch, trained or read back; their results go into the source's summary.json."""
    from gptlab.training.fit import fit
    results = []
    for step in run.derived.keep_steps:
        out = branch_dir(Path(run.paths.run_dir), step)
        if not read_summary(out).get("finished"):
            branch = branch_of(run, step)
            lock = claim(out, resuming=branch.resume is not None)
            try:
                fit(branch, launcher_jobs)
            finally:
                if lock is not None:
                    lock.release()
        summary = read_summary(out)
        results.append({"from_step": step, "dir": str(out), **{k: summary.get(k) for k in RESULT_KEYS}})
    record(run, results)
    return results


def record(run: RunConfig, results: list[dict]) -> None:
    """The branches' results added to the source's summary.json and W&B summary."""
    from gptlab.training.loggers import wandb_update_summary
    run_dir = Path(run.paths.run_dir)
    atomic_write_json(run_dir / SUMMARY, {**read_summary(run_dir), "cooldowns": results})
    losses = {f"cooldown/loss@{r['tokens']}": r["final_val_loss"] for r in results}
    wandb_update_summary(run.logger.get("wandb"), run_dir, losses)
