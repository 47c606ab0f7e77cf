"""Crash safety for training: whole checkpoint files, a stop at the first non-finite loss, RNG state in checkpoints.

    python -m gptlab.train                     # all three are always on (gptlab.train adds them itself)
    python -m gptlab.train +callbacks.nan._target_=gptlab.training.drills.InjectNonFinite +callbacks.nan.step=7

- AtomicCheckpointIO writes each checkpoint to a hidden temp file beside its target, fsyncs it and renames it over
  the target, so last.ckpt is always a complete file, the old one or the new one, whenever the process dies; a
  failed write (a full disk) leaves the previous file as it was and raises CheckpointWriteError.
- FiniteLossGuard raises NonFiniteLoss at the first NaN or Inf training loss, before any validation or checkpoint
  takes in its effects: the checkpoints on disk are the last good state.
- RNGState stores torch's random state in checkpoints, so a resumed run draws the same dropout masks as an
  uninterrupted one (the data stream needs none: it is a pure function of the batch index).
Fault drills (a batch trace, an injected NaN) live in gptlab/training/drills.py (docs/crash_safety.md).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback

from gptlab.errors import Failed
from gptlab.fs import atomic_file

WRITE_DELAY_ENV = "GPTLAB_TEST_CKPT_WRITE_DELAY"  # test only: seconds to pause once 1 MiB of a checkpoint is written
NO_STEP = 2 ** 62  # FiniteLossGuard's "no bad step yet"


class CheckpointWriteError(Failed, RuntimeError):
    """A checkpoint could not be written (e.g. the disk is full); the previous file at that path is untouched."""


class NonFiniteLoss(Failed, RuntimeError):
    """The training loss became NaN or Inf; training stopped before any checkpoint took in the bad step."""


class _Writer:
    """The file object torch.save writes through: remembers an OSError (torch re-raises it as a RuntimeError without
    its errno) and, for tests, can pause half way through."""

    def __init__(self, f, pause_s: float = 0.0):
        self.f, self.pause_s, self.written, self.error = f, pause_s, 0, None

    def write(self, data) -> int:
        try:
            n = self.f.write(data)
        except OSError as e:
            self.error = e
            raise
        self.written += n
        if self.pause_s and self.written >= 1 << 20:
            self.f.flush()  # the partial temp file is visible on disk during the pause
            time.sleep(self.pause_s)
            self.pause_s = 0.0
        return n

    def flush(self) -> None:
        self.f.flush()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint files appear whole or not at all: temp file in the same folder, fsync, os.replace, fsync the folder.

    Lightning's own writer serialises to memory and copies through an fsspec transaction whose temp file lives in
    $TMPDIR: no fsync, a cross-filesystem move when $TMPDIR is elsewhere (a copy, so not atomic), and temp files
    left in $TMPDIR by a killed run. Remote paths (s3://, ...) still go through Lightning's writer."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        path = Path(str(path).removeprefix("file://"))
        had, writer = path.exists(), None
        try:
            with atomic_file(path) as f:
                writer = _Writer(f, float(os.environ.get(WRITE_DELAY_ENV) or 0))
                torch.save(checkpoint, writer)
        except BaseException as e:
            err = writer.error if writer is not None and writer.error is not None else e
            if isinstance(err, OSError):
                raise CheckpointWriteError(
                    f"writing checkpoint {path} failed: {err.strerror or err} (errno {err.errno}); "
                    + (f"the previous {path.name} is untouched" if had else f"no {path.name} was written")
                    + ". Free disk space (or fix the folder's permissions), then resume from the last checkpoint"
                ) from e
            raise




class FiniteLossGuard(Callback):
    """Raises NonFiniteLoss at the first NaN or Inf training loss, before a validation or checkpoint uses its weights.

    Reading a loss on the host is a device sync, so losses are not read every step: each micro batch folds
    isfinite(loss) into a flag on the device (a few tiny kernels, no sync), and the flag is read on logging steps
    (where Lightning syncs for the logged metrics anyway), before each validation and before each checkpoint is
    written. The message names the first bad step (metrics.csv's `step`); every checkpoint on disk predates it.
    Under DDP the flags are gathered, so every rank stops at the same check."""

    def __init__(self, ckpt_dir: str | os.PathLike | None = None):
        self.ckpt_dir = Path(ckpt_dir) if ckpt_dir else None  # only to name the last good checkpoint
        self.first = self.value = None  # device scalars: first bad step (NO_STEP: none yet) and its loss
        self.step = 0  # the optimizer step the current micro batch belongs to

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach().float()
        if self.first is None:
            self.first = torch.full((), NO_STEP, dtype=torch.float64, device=loss.device)
            self.value = torch.zeros((), device=loss.device)
        new = ~torch.isfinite(loss) & (self.first == NO_STEP)
        self.first = torch.where(new, float(self.step), self.first)
        self.value = torch.where(new, loss, self.value)
        stepped = trainer.global_step != self.step  # this micro batch ended an optimizer step
        if stepped and trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
            self.check(trainer)

    def on_validation_start(self, trainer, pl_module):
        if trainer.state.fn == "fit":  # not trainer.validate's (before training: nothing to check)
            self.check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self.check(trainer)

    def check(self, trainer) -> None:
        """One host sync: raise NonFiniteLoss if any rank saw a non-finite loss."""
        if self.first is None:
            return
        rows = trainer.strategy.all_gather(torch.stack([self.first, self.value.double()])).reshape(-1, 2)
        first, value = min(rows.tolist())
        if first == NO_STEP:
            return
        raise NonFiniteLoss(f"non-finite training loss ({value}) at step {int(first)}; training stopped before any "
                            f"checkpoint took it in. {self._last_good()}Lower optim.lr, raise sched.warmup_steps or "
                            "set trainer.grad_clip, then resume from the last good checkpoint or start again")

    def _last_good(self) -> str:
        last = self.ckpt_dir / "last.ckpt" if self.ckpt_dir else None
        if last is None or not last.is_file():
            return "No checkpoint had been written yet. "
        from gptlab.model.checkpoint import checkpoint_step
        try:
            return f"The last good checkpoint is {last} (step {checkpoint_step(last)}). "
        except Exception:  # naming it is a courtesy: never hide the real error behind a read failure
            return f"The last good checkpoint is {last}. "


class RNGState(Callback):
    """Saves torch's CPU and CUDA random states in checkpoints and restores them on resume: dropout then draws the
    same masks after a resume as in an uninterrupted run. (Lightning 2.x stores no RNG state; the DataLoaders draw
    their seeds from their own generators, so nothing else moves the global state between a save and the next step.)"""

    def state_dict(self) -> dict:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        cuda = state.get("cuda")
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
