"""One writer per run folder: a lock held while a training process lives, and no fresh run over a finished one.

    python -m gptlab.train hydra.run.dir=runs/a          # while it trains ...
    python -m gptlab.train hydra.run.dir=runs/a          # ... refused: runs/a is in use by pid N
    python -m gptlab.train resume=runs/a                 # refused too while runs/a trains; after a kill it continues
    python -m gptlab.train hydra.run.dir=runs/a          # once runs/a holds a run: refused, use resume=runs/a

The lock is fcntl.flock on <run_dir>/.lock: the kernel drops it when the process ends, however it ends (SIGKILL,
OOM killer, power cut), so a killed run never blocks its own resume. It is advisory and local: two machines sharing
a folder over NFS see each other's flock only where the NFS client maps it to a server lock (Linux NFSv4 does).
Imports no torch: a refused run fails in well under a second.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptlab.errors import Refused
from gptlab.run.folder import RECORDS

LOCK = ".lock"  # <run_dir>/.lock: holds the pid, host and start time of the run writing the folder


class RunFolderError(Refused, RuntimeError):
    """The run folder is in use or already holds another run; the message says which and what to do."""


def launcher_rank() -> int:
    """0 for the first (or only) process of a run, > 0 for the others a launcher started (Lightning's DDP relaunch,
    torchrun, SLURM): they re-run the entry point into the first one's folder, which it has locked already."""
    ranks = [os.environ.get(v, "") for v in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")]
    return max((int(r) for r in ranks if r.isdigit()), default=0)


class RunLock:
    """An exclusive, non-blocking flock on <run_dir>/.lock, held until release() or the process's end."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited across exec (PEP 446)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunFolderError(f"run folder {self.path.parent} is in use by a running gptlab.train ({holder}); "
                                     "wait for it to end (or stop it), or write elsewhere: hydra.run.dir=<new folder>"
                                     ) from None
            if self._is_current(fd):
                break
            os.close(fd)  # a releasing holder removed the file we opened: lock the one at the path now
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                  .encode(), 0)
        self.fd = fd
        return self

    def _is_current(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Drop the lock and remove the file (while still holding it): a finished run leaves no .lock behind."""
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def previous_run(run_dir: str | os.PathLike) -> list[str]:
    """The records of an earlier run in this folder (metrics.csv, checkpoints, ...); empty for a fresh folder."""
    return [name for name in RECORDS if (Path(run_dir) / name).exists()]


def remove_stale_temps(folder: str | os.PathLike) -> list[str]:
    """Delete the hidden .*.tmp files a killed writer left (atomic writes rename them into place when complete).
    Only call it while holding the folder's lock: then no live writer owns them."""
    removed = []
    for f in Path(folder).glob(".*.tmp"):
        f.unlink(missing_ok=True)
        removed.append(f.name)
    return removed


def claim(run_dir: str | os.PathLike, resuming: bool) -> RunLock | None:
    """Lock run_dir for this training process and check it may be written: a fresh run (resuming False) needs a
    folder without an earlier run's records. Returns the held lock (None on launcher ranks > 0); raises
    RunFolderError. Temp files of a killed checkpoint write are removed once the lock is held."""
    if launcher_rank() > 0:
        return None
    lock = RunLock(run_dir).acquire()
    try:
        if not resuming and (found := previous_run(run_dir)):
            raise RunFolderError(f"run folder {run_dir} already holds a run ({', '.join(found)}); a fresh run there "
                                 f"would mix its records with the old ones. Continue it with resume={run_dir}, or "
                                 "start a new run elsewhere (hydra.run.dir=<new folder>, or delete the old one)")
        remove_stale_temps(Path(run_dir) / "checkpoints")
    except BaseException:
        lock.release()
        raise
    return lock


@dataclass
class Claimed:
    """A run every check passed and the lock on its folder (None for a rank a launcher started): `with claimed as
    run:` releases the lock however the block ends."""
    run: Any  # the RunConfig (this module imports no config)
    lock: RunLock | None
    launch: Any = None  # what this invocation adds (gptlab/run/launch.py): the step to resume from, what it changed

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def __enter__(self):
        return self.run

    def __exit__(self, *exc) -> None:
        self.release()
