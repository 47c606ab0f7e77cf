"""Training callbacks: a step progress bar (loss, val ppl, tokens/s, ETA) and throughput/MFU logging.

    python -m gptlab.train trainer.log_every_n_steps=1     # tokens/s and MFU on every optimizer step
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback
from tqdm.auto import tqdm

from gptlab.run.folder import kept_name
from gptlab.training.hardware import device_peak, mfu_refusal


class Throughput(Callback):
    """Logs tokens/s and MFU every `log_every_n_steps` optimizer steps, validation time excluded. An MFU above 1 is
    never logged: it says the peak is wrong (a faster clock than cpuinfo shows, wider units), which a warning says
    once, naming the peak and how it was found."""

    def __init__(self, tokens_per_step: int, flops_per_token: int, peak: float | None = None,
                 precision: str = "32-true"):
        self.tokens_per_step, self.flops_per_token = tokens_per_step, flops_per_token
        self.peak, self.precision = peak, precision
        self.how, self.refused = f"trainer.peak_flops={peak:.4g} (given)" if peak else "", False

    def on_train_start(self, trainer, pl_module):
        if self.peak is None:
            self.peak, self.how = device_peak(pl_module.device, self.precision)
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
        achieved, peak = tps * self.flops_per_token, (self.peak or 0) * trainer.world_size
        if peak and achieved <= peak:
            pl_module.log("mfu", achieved / peak)
        elif peak and not self.refused and trainer.is_global_zero:
            self.refused = True
            how = self.how + (f", x {trainer.world_size} devices" if trainer.world_size > 1 else "")
            logging.getLogger("gptlab").warning(mfu_refusal(achieved, peak, how, "trainer.peak_flops"))
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

    def on_exception(self, trainer, pl_module, exception):
        self.on_train_end(trainer, pl_module)  # a failure: its line starts on a line of its own


class RankReport(Callback):
    """Prints `val-by-rank {"rank": r, "step": s, "val_loss": x}` from every rank after each validation: a check
    that DDP ranks agree:
    python -m gptlab.train trainer=ddp_cpu +callbacks.ranks._target_=gptlab.training.callbacks.RankReport"""

    def on_validation_end(self, trainer, pl_module):
        import json
        loss = trainer.callback_metrics.get("val/loss")
        if loss is not None:
            env = trainer.strategy.cluster_environment  # who assigned the ranks: SLURM, torchrun, Lightning
            line = "val-by-rank " + json.dumps({"rank": trainer.global_rank, "step": trainer.global_step,
                                                 "val_loss": float(loss), "local_rank": trainer.local_rank,
                                                 "node_rank": trainer.node_rank, "world_size": trainer.world_size,
                                                 "environment": type(env).__name__ if env else None})
            # one write of the whole line: two ranks share the pipe, and print writes text and newline apart
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


class Clocks(Callback):
    """One clock per kind of time, each summed over the run's invocations (a checkpoint holds them up to its own
    write; a resume adds its own):

    - `train_s`: the training loop: forward, backward, optimizer steps, data loading, logging; time to a target;
    - `val_s`: validation (the one before training included) and any evaluation in the loop;
    - `ckpt_s`: writing checkpoints (last, best, kept), wherever the trainer saves one;
    - `startup_s`: from the process's start (imports, compose, data, model) to the training loop, less the above;
      a second fit in the same process counts from the end of the first.

    Exactly one clock runs at a time, so the four add up to the invocation's time up to the end of training. A
    checkpoint holds the clocks as they stood when its write began: the last write of an invocation that stops is in
    its summary, and not in what a resume restores. Each validation row of metrics.csv carries train_s and val_s as
    they stand then. On a GPU each switch waits for the device, so that a kernel queued by one kind of work is not
    timed as the next.
    """

    KINDS = ("train_s", "val_s", "ckpt_s", "startup_s")

    def __init__(self):
        self.seconds = dict.fromkeys(self.KINDS, 0.0)
        self.kind, self.since, self.stack = "startup_s", startup_origin(), []
        self.cuda = False

    def _switch(self, kind: str | None) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        now = now_s()
        if self.kind is not None:
            self.seconds[self.kind] += now - self.since
        self.kind, self.since = kind, now

    def _enter(self, kind: str) -> None:
        self.stack.append(self.kind)
        self._switch(kind)

    def _leave(self) -> None:
        self._switch(self.stack.pop() if self.stack else None)

    def read(self) -> dict:
        """The clocks as they stand now (the running one included), rounded to the millisecond."""
        out = dict(self.seconds)
        if self.kind is not None:
            out[self.kind] += now_s() - self.since
        return {k: round(v, 3) for k, v in out.items()}

    def setup(self, trainer, pl_module, stage):
        self.cuda = pl_module.device.type == "cuda"
        save = trainer.save_checkpoint
        if getattr(save, "_clocked", False):
            return

        def timed_save(*args, **kwargs):  # every save goes through here: ModelCheckpoint, last.ckpt, kept steps
            self._enter("ckpt_s")
            try:
                return save(*args, **kwargs)
            finally:
                self._leave()
        timed_save._clocked = True
        trainer.save_checkpoint = timed_save

    def on_validation_start(self, trainer, pl_module):
        self._enter("val_s")

    def on_validation_end(self, trainer, pl_module):
        self._leave()

    def on_validation_epoch_end(self, trainer, pl_module):
        clocks = self.read()  # the val row's clocks: time to a target is train_s, interpolated between rows
        pl_module.log("train_s", clocks["train_s"])
        pl_module.log("val_s", clocks["val_s"])

    def on_train_start(self, trainer, pl_module):
        self._switch("train_s")

    def on_train_end(self, trainer, pl_module):
        self._switch(None)
        finished_fit()

    def on_exception(self, trainer, pl_module, exception):
        self.on_train_end(trainer, pl_module)

    def state_dict(self) -> dict:
        return {"clocks": self.read()}

    def load_state_dict(self, state: dict) -> None:
        """Adds the checkpoint's clocks to this invocation's, which started before the restore (a checkpoint made
        before the clocks were split holds one unsplit wall time: it is not guessed apart, so not counted)."""
        for k, v in state.get("clocks", {}).items():
            if k in self.seconds:
                self.seconds[k] += float(v)


_LAST_FIT_END: list[float] = []  # when the last fit in this process ended: the next one's start-up starts there


def now_s() -> float:
    """Seconds on the clock the process start is read on (CLOCK_BOOTTIME on Linux; monotonic elsewhere)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


def process_start() -> float | None:
    """When this process started, on now_s()'s clock: /proc/self/stat's starttime (clock ticks since boot; an exec,
    as jemalloc's re-exec, keeps it), None where there is no /proc."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def startup_origin() -> float:
    """Where this fit's start-up began: the end of this process's previous fit, else the process's start."""
    if _LAST_FIT_END:
        return _LAST_FIT_END[-1]
    start = process_start()
    return start if start is not None and hasattr(time, "CLOCK_BOOTTIME") else now_s()


def finished_fit() -> None:
    _LAST_FIT_END[:] = [now_s()]


class TargetLoss(Callback):
    """Stops the run at the first validation whose loss reaches `target` (trainer.target_val_loss): Lightning ends
    the fit after that step, its checkpoints written, and summary.json records the tokens and time to the target."""

    def __init__(self, target: float):
        self.target = target

    def on_validation_end(self, trainer, pl_module):
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.state.fn == "fit" and trainer.global_step > 0 and loss is not None and float(loss) <= self.target:
            trainer.should_stop = True


class LastCheckpoint(Callback):
    """last.ckpt between evaluations: every `every_minutes`, and before this invocation stops, when it has run
    `stop_after` steps or caught SIGTERM, SIGUSR1 (sbatch --signal), SIGUSR2 (submitit) or Ctrl-C. Saved at an
    optimizer-step boundary (metrics.csv is written through: it holds every row up to there, and the step's own row
    follows at once). A step that validates is saved by the 'last' ModelCheckpoint right after its validation, and
    so is trainer.max_steps, which always validates: setting should_stop there makes Lightning validate, so every
    finished run's summary, best.ckpt and last.ckpt describe its last step. A stop before the end sets should_stop
    too, and at a step that does not validate tells Lightning's epoch loop to skip the validation it would add
    (`_skip_next_val`, the flag Lightning's own restart uses): the records stay an uninterrupted run's, and the fit
    returns normally under every strategy, ddp_spawn's workers included. `stopped` says why: 'trainer.stop_after=N',
    'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGINT' or 'another rank'."""

    SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")  # SIGUSR2: submitit's warning before a time limit

    def __init__(self, path, eval_interval: int, stop_after: int | None = None, every_minutes: float | None = None):
        self.path, self.eval_interval, self.stop_after = str(path), eval_interval, stop_after
        self.every_s = every_minutes * 60 if every_minutes else None
        self.caught, self.stopped, self.previous, self.start, self.seen, self.saved_at = None, None, {}, 0, 0, 0.0

    def on_train_start(self, trainer, pl_module):
        self.start = self.seen = trainer.global_step
        self.saved_at = time.monotonic()
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self.previous[sig] = signal.signal(sig, self._catch)

    def _catch(self, signum, frame):
        if self.caught is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.caught = signal.Signals(signum).name

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.seen:  # inside an accumulation: no step boundary yet
            return
        self.seen = step = trainer.global_step
        why = self._stop_now(trainer, step)
        if step >= trainer.max_steps:
            trainer.should_stop = True  # Lightning validates a run that stops: every finished run ends validated
        validates = step % self.eval_interval == 0 or step >= trainer.max_steps
        timely = self.every_s and time.monotonic() - self.saved_at >= self.every_s
        if why and step < trainer.max_steps:
            self.stopped = why  # before the save: the checkpoint says why (ddp_spawn's parent reads it there)
        if (why or timely) and not validates:
            trainer.save_checkpoint(self.path)  # metrics.csv is written through: it holds every row up to here
            self.saved_at = time.monotonic()
        if why and step < trainer.max_steps:  # this step's row is still logged; then the loop ends
            trainer.should_stop = True
            if step % trainer.log_every_n_steps:
                forget_logged_values(trainer)
            if not validates:  # else the 'last' ModelCheckpoint writes after the step's own validation
                trainer.fit_loop.epoch_loop._skip_next_val = True  # no validation a stop would add

    def on_validation_end(self, trainer, pl_module):
        self.saved_at = time.monotonic()  # the 'last' ModelCheckpoint writes right after

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["stopped"] = self.stopped  # why this invocation stopped (None: it has not): a plain string

    def _stop_now(self, trainer, step: int) -> str | None:
        if self.stop_after is not None and step - self.start >= self.stop_after:
            return f"trainer.stop_after={self.stop_after}"  # the same step on every rank
        if trainer.world_size == 1:
            return self.caught
        if step % trainer.log_every_n_steps:  # ranks agree on a signal at log steps only, which sync anyway
            return None
        mine = self.caught  # read once: a signal landing during the reduction must not make this rank differ
        anyone = trainer.strategy.reduce_boolean_decision(bool(mine), all=False)  # every rank calls it
        return (mine or "another rank") if anyone else None

    def on_train_end(self, trainer, pl_module):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def on_exception(self, trainer, pl_module, exception):
        self.on_train_end(trainer, pl_module)


def forget_logged_values(trainer) -> None:
    """Lightning writes a row at any step that stops the fit, of every on-step value still held from the last logged
    step; at a step that logs nothing that row would repeat the last one. Marked reset, those values are left out,
    and a row with nothing in it is not written: the records stay an uninterrupted run's."""
    for metric in trainer.fit_loop.epoch_loop._results.values():
        if metric.meta.on_step and not metric.meta.on_epoch:
            metric.has_reset = True


class KeptCheckpoints(Callback):
    """checkpoints/step-000400.ckpt at each of `steps` (eval steps: written right after that validation), kept for
    cooldown branches (python -m gptlab.train branch=<run>/checkpoints/step-000400.ckpt)."""

    def __init__(self, dirpath, steps):
        self.dirpath, self.steps = Path(dirpath), set(steps)

    def on_validation_end(self, trainer, pl_module):
        step = trainer.global_step
        if trainer.state.fn == "fit" and step in self.steps:
            trainer.save_checkpoint(self.dirpath / kept_name(step))

