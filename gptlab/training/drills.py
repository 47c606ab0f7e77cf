"""Fault drills: rehearse a failure before it happens in a long run. Record what each step read or each save, or break
the weights at a step, then check that a kill, a resume or the non-finite guard does what docs/crash_safety.md says.

    python -m gptlab.train +callbacks.trace._target_=gptlab.training.drills.BatchTrace +callbacks.trace.path=t.txt
    python -m gptlab.train +callbacks.nan._target_=gptlab.training.drills.InjectNonFinite +callbacks.nan.step=7

They are Lightning callbacks, so a config's callbacks.* names them; each is also a gptlab.run.resume.Drill, which
is how a resume knows it may move or disarm one (callbacks.nan.step=1000): rehearsal gear, not the run's computation.
"""
from __future__ import annotations

import math
import os
import zlib

import torch
from lightning.pytorch import Callback

from gptlab.run.resume import Drill


class BatchTrace(Drill, Callback):
    """Drill: appends `pid step k crc32` to `path` for every training micro batch, where step is the optimizer step
    it belongs to, k the stream position the datamodule counted (data.py: batch k is a pure function of k) and
    crc32 the checksum of its input tokens. One O_APPEND write per line: a SIGKILL loses at most the line in flight."""

    def __init__(self, path: str):
        self.path = str(path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        k = trainer.datamodule.train_batches - 1 if trainer.datamodule is not None else -1
        crc = zlib.crc32(batch[0].detach().cpu().contiguous().numpy().tobytes())
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{os.getpid()} {trainer.global_step} {k} {crc}\n".encode())
        finally:
            os.close(fd)


class InjectNonFinite(Drill, Callback):
    """Drill: at optimizer step `step`, fills the final LayerNorm's gain with `value` (nan or inf), as a diverging run
    would, so the loss turns non-finite from that step on."""

    def __init__(self, step: int, value: str = "nan"):
        self.step, self.value = int(step), float(value)
        if math.isfinite(self.value):
            raise ValueError(f"InjectNonFinite: value must be nan or inf, got {value!r}")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.model.transformer.ln_f.weight.fill_(self.value)


class SaveTrace(Drill, Callback):
    """Drill: appends `rank step` to `path` each time a checkpoint is made (every rank takes part in each save; rank
    0 writes the file), so a test can count the saves a stop makes."""

    def __init__(self, path: str):
        self.path = str(path)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{trainer.global_rank} {trainer.global_step}\n".encode())
        finally:
            os.close(fd)
