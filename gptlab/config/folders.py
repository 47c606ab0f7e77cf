"""The `run_folder` resolver: where a run writes when hydra.run.dir is not given.

    python -m gptlab.train                      # runs/<date>/<time>
    srun python -m gptlab.train trainer=ddp ... # inside an sbatch job: runs/slurm-<job id>, the same on every task

Every task of a SLURM job resolves the same folder (a timestamp could differ between nodes), and so does the job
when SLURM requeues it: its own command then continues its own run (gptlab/run/resume.py, requeued()).
"""
from __future__ import annotations

import os
import time

from omegaconf import OmegaConf


def slurm_batch_job() -> str | None:
    """The SLURM job id of a batch job's task (Lightning's rule: an interactive shell's job is not one)."""
    if "SLURM_NTASKS" not in os.environ or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    return os.environ.get("SLURM_JOB_ID")


def run_folder() -> str:
    job = slurm_batch_job()
    return f"slurm-{job}" if job else time.strftime("%Y-%m-%d/%H-%M-%S")


def register() -> None:
    if not OmegaConf.has_resolver("run_folder"):
        OmegaConf.register_new_resolver("run_folder", run_folder, use_cache=True)  # once per process
