"""Training callbacks: a step progress bar (loss, val ppl, tokens/s, ETA) and throughput/MFU logging.

    python -m gptlab.train trainer.log_every_n_steps=1     # tokens/s and MFU on every optimizer step
"""
from __future__ import annotations

import time

import torch
from lightning.pytorch import Callback
from tqdm.auto import tqdm

from gptlab.training.hardware import peak_flops


class Throughput(Callback):
    """Logs tokens/s and MFU every `log_every_n_steps` optimizer steps, validation time excluded."""

    def __init__(self, tokens_per_step: int, flops_per_token: int, peak: float | None = None,
                 precision: str = "32-true"):
        self.tokens_per_step, self.flops_per_token = tokens_per_step, flops_per_token
        self.peak, self.precision = peak, precision

    def on_train_start(self, trainer, pl_module):
        if self.peak is None:
            self.peak = peak_flops(pl_module.device, self.precision)
        self.last_step, self.last_time, self.paused = trainer.global_step, time.perf_counter(), 0.0

    def on_validation_start(self, trainer, pl_module):
        self.val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if hasattr(self, "val_start") and hasattr(self, "paused"):
            self.paused += time.perf_counter() - self.val_start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step == self.last_step or step % trainer.log_every_n_steps:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()  # only at logging steps: the queue must drain for honest timing
        now = time.perf_counter()
        tps = (step - self.last_step) * self.tokens_per_step / max(now - self.last_time - self.paused, 1e-9)
        pl_module.log("tokens_per_s", tps)  # no prog_bar: Lightning would convert it after every batch (a sync)
        if self.peak:
            pl_module.log("mfu", tps * self.flops_per_token / (self.peak * trainer.world_size))
        self.last_step, self.last_time, self.paused = step, now, 0.0


class Progress(Callback):
    """One bar over optimizer steps with loss, val ppl, tokens/s and ETA (Lightning's own bar counts micro batches
    of an endless stream and so has no ETA)."""

    def __init__(self, refresh_every: int = 1):
        self.refresh_every = refresh_every
        self.bar = None

    def on_train_start(self, trainer, pl_module):
        if trainer.is_global_zero:
            self.bar = tqdm(total=trainer.max_steps, initial=trainer.global_step, unit="step", dynamic_ncols=True,
                            desc="train")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.bar is None or trainer.global_step == self.bar.n:
            return
        self.bar.update(trainer.global_step - self.bar.n)
        if trainer.global_step % max(self.refresh_every, trainer.log_every_n_steps) == 0:
            self._postfix(trainer)

    def on_validation_end(self, trainer, pl_module):
        if self.bar is not None:
            self._postfix(trainer)

    def _postfix(self, trainer):
        m = trainer.callback_metrics  # device tensors; float() syncs, so only at refresh steps
        fmt = {"train/loss": ("loss", "{:.3f}"), "val/ppl": ("val_ppl", "{:.1f}"), "tokens_per_s": ("tok/s", "{:,.0f}")}
        self.bar.set_postfix({name: f.format(float(m[k])) for k, (name, f) in fmt.items() if k in m}, refresh=True)

    def on_train_end(self, trainer, pl_module):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RankReport(Callback):
    """Prints `val-by-rank {"rank": r, "step": s, "val_loss": x}` from every rank after each validation: a check
    that DDP ranks agree:
    python -m gptlab.train trainer=ddp_cpu +callbacks.ranks._target_=gptlab.training.callbacks.RankReport"""

    def on_validation_end(self, trainer, pl_module):
        import json
        loss = trainer.callback_metrics.get("val/loss")
        if loss is not None:
            print("val-by-rank " + json.dumps({"rank": trainer.global_rank, "step": trainer.global_step,
                                               "val_loss": float(loss)}), flush=True)


class StopAfter(Callback):
    """Ends fit after `steps` optimizer steps while the schedule still spans max_steps: a planned preemption."""

    def __init__(self, steps: int):
        self.steps = steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.steps:
            trainer.should_stop = True
