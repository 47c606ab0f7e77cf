"""SLURM: the ranks srun started, and a preempted job put back in the queue to continue its own run.

    sbatch --signal=USR1@120 --requeue ... srun python -m gptlab.train trainer=ddp trainer.devices=8 trainer.num_nodes=2
    python -m gptlab.train -m hydra/launcher=slurm trainer=ddp trainer.devices=8 trainer.num_nodes=2   # submitit

Lightning reads the ranks from SLURM_PROCID, SLURM_LOCALID and SLURM_NODEID (its SLURMEnvironment). Its own
auto-requeue is turned off: it would write hpc_ckpt_<n>.ckpt into the run folder, which a later fresh fit there
restores without being asked. gptlab does the same job its own way: a SIGUSR1 (sbatch --signal=USR1@<s>) or
submitit's SIGUSR2 stops every rank at the next step boundary with last.ckpt written, then rank 0 requeues the job
(`scontrol requeue`), and the requeued job's own command continues its run folder (resume.py, requeued()).
docs/scaling.md walks the whole path.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess

log = logging.getLogger("gptlab")

REQUEUE_SIGNALS = ("SIGUSR1", "SIGUSR2")  # sbatch --signal=USR1@<s> (Lightning's convention); submitit's USR2


def cluster_plugins() -> list:
    """Lightning plugins for the cluster this process runs in: SLURM's environment without Lightning's requeue."""
    from lightning.fabric.plugins.environments import SLURMEnvironment
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def requeue(stopped: str | None) -> bool:
    """After a stop by a requeue signal inside a SLURM job, put the job back in the queue (rank 0 only); whether
    it did. The job's command reruns into the same folder and continues from last.ckpt."""
    from gptlab.run.lock import launcher_rank
    job = os.environ.get("SLURM_JOB_ID")
    if stopped not in REQUEUE_SIGNALS or not job or launcher_rank() > 0:
        return False
    if shutil.which("scontrol") is None:
        log.warning(f"{stopped} in SLURM job {job}, but no scontrol on PATH to requeue it: resume it by hand")
        return False
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if done.returncode:
        log.warning(f"scontrol requeue {job} failed: {done.stderr.strip()}; resume it by hand")
        return False
    log.info(f"requeued SLURM job {job}: it continues this run from last.ckpt when it starts again")
    return True
