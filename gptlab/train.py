"""Train a GPT: Hydra composes the config, Lightning runs it, the run folder keeps everything.

    python -m gptlab.train                                   # tiny model, Shakespeare, CPU: a few minutes
    python -m gptlab.train model=30m sched=cosine            # the reference study's model (the header names the recipe)
    python -m gptlab.train optim=muon                        # Muon on the hidden matrices (conf/optim/muon.yaml)
    python -m gptlab.train experiment=study_30m_owt          # the reference study, exactly
    python -m gptlab.train resume=runs/last                  # continue a run where its 'last' checkpoint left off
    python -m gptlab.train -m model.n_layer=2,4 model.n_embd=128,256   # a sweep: one run folder per job
    python -m gptlab.train logger=none                       # no W&B (metrics.csv is always written)
    python -m gptlab.train experiment=finetune init=hf:gpt2 data=text data.name=mine   # fine-tune GPT-2
    python -m gptlab.train --help                            # every key, with the value a run would use

A run folder holds config.yaml (resolved, derived values included), metrics.csv, checkpoints/{last,best}.ckpt,
summary.json and wandb/. Everything that can be refused is refused before training (exit 2; torch is imported only
for the checkpoint and optimizer checks); 1: stopped with a one-line error; 130: Ctrl-C; see gptlab/cli.py.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, replace
from pathlib import Path

from gptlab import cli
from gptlab.config import RunConfig
from gptlab.run.lock import Claimed


def check(cfg) -> Claimed:
    """The run this command line describes, every check passed, with its folder's lock held (work() releases it)."""
    from gptlab.config.presets import prepare_command
    from gptlab.data.shards import check_dataset
    from gptlab.run.folder import resume_paths
    from gptlab.run.lock import claim
    from gptlab.run.resume import requeued
    from gptlab.training.components import check_components, check_offline, check_optimizer, check_orthogonal
    from gptlab.training.compose import compose_run
    run, launch = compose_run(cfg)
    check_offline(run)
    check_orthogonal(run)
    run_dir, ckpt = resume_paths(run.resume, run.paths.run_dir)
    # a second writer is refused before torch is imported; a fresh run's folder is checked by requeued() below
    claimed = Claimed(run, claim(run_dir, resuming=bool(run.resume) or not run.branch))
    try:
        if requeued(cfg, run.record()):  # a requeued job's own command into its own folder: a resume of it
            run, launch = compose_run(cfg)
            claimed.run = run
            ckpt = resume_paths(run.resume, run.paths.run_dir)[1]
        check_dataset(Path(run.paths.data_dir) / run.data.name, prepare_command(asdict(run.data)))
        if ckpt is not None:  # read (weights_only) before anything runs: a damaged or unsafe file is refused here
            from gptlab.model.checkpoint import checkpoint_step
            launch = replace(launch, resume_step=checkpoint_step(ckpt))
        check_components(run)
        check_optimizer(run)
        claimed.launch = launch
    except BaseException:
        claimed.release()
        raise
    return claimed


def work(claimed: Claimed) -> float | None:
    """Train (or find the run finished), then its cooldown branches; the best val loss, which an Optuna sweep
    minimises. A Ctrl-C stops at the next step boundary with last.ckpt written, then exits 130."""
    from gptlab.run.folder import read_summary
    from gptlab.run.requeue import requeue
    from gptlab.training.compose import hydra_state
    from gptlab.training.trainer import fit, fit_branches
    launch = claimed.launch
    with claimed as run:
        if launch.resume_step is not None and launch.resume_step >= run.trainer.max_steps:
            summary, stopped = finished(run, launch.resume_step), None
        else:
            outcome = fit(run, launch, launcher_jobs=hydra_state()[2])
            summary, stopped = outcome.summary or {}, outcome.stopped
            requeue(stopped)  # a SLURM job preempted with SIGUSR1/2 goes back in the queue to continue
        if run.cooldown.branches and read_summary(run.paths.run_dir).get("finished", True) and not stopped:
            fit_branches(run, launcher_jobs=hydra_state()[2])
    if stopped == "SIGINT":
        sys.exit(130)
    return summary.get("best_val_loss")


def finished(run: RunConfig, step: int) -> dict:
    """A resume of a run that reached its max_steps changes nothing, and says how to extend it; its summary."""
    from gptlab.run.folder import read_summary
    print(f"{run.paths.run_dir} finished at step {step} (trainer.max_steps={run.trainer.max_steps}); "
          f"nothing to do. Extend it: python -m gptlab.train resume={run.paths.run_dir} "
          f"trainer.max_steps={run.trainer.max_steps * 2}")
    return read_summary(run.paths.run_dir)


def in_sweep() -> bool:
    from gptlab.training.compose import hydra_state
    return hydra_state()[1] is not None


ENTRY = cli.Entry("train", check, work)

if __name__ == "__main__":
    from gptlab.training.hardware import reexec_with_jemalloc
    reexec_with_jemalloc()  # CPU steps spend much of their time in glibc malloc; jemalloc when installed
    from gptlab.run.resume import job_argv
    cli.run_app(ENTRY, job_argv(sys.argv[1:]), in_sweep=in_sweep)
