"""Run-folder records: metrics.csv that survives a resume, and summary.json built from it.

    python -m gptlab.train          # writes <run>/metrics.csv and summary.json (gptlab/run/folder.py reads them)
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from gptlab.fs import atomic_write_bytes, atomic_write_json
from gptlab.run.folder import SUMMARY, read_metrics


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv. Ours keeps it: a fresh run never lands in a used folder
    (lock.py), so a file here is this run's own (the validation before fit, or a ddp_spawn process opening it
    again) or a resumed run's; after a resume the rows logged after the checkpoint (by their `tokens` column: tokens
    trained when the row was logged) are dropped, as the resumed run logs them again."""

    def __init__(self, log_dir: str, resume_tokens: int | None):
        self.resume_tokens = resume_tokens
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = self.metrics_file_path
        if not os.path.isfile(path):
            return
        with open(path, newline="") as f:
            text = f.read()
        if not text.endswith("\n"):  # a row cut short by a kill mid-write: drop it (the resumed run logs it again)
            text = text[:text.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(text, newline=""))
        keys, rows = list(reader.fieldnames or []), list(reader)
        self.metrics_keys = keys
        if self.resume_tokens is None:  # this run's own rows: appended to as they are
            return
        rows = [r for r in rows if r.get("tokens") and float(r["tokens"]) <= self.resume_tokens]
        out = io.StringIO(newline="")
        w = csv.DictWriter(out, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(path, out.getvalue().encode())  # a kill here leaves the old file, not half of it


class AppendingCSVLogger(CSVLogger):
    """CSV metrics in <run_dir>/metrics.csv, appended across resumes."""

    def __init__(self, run_dir, resume_tokens: int | None = None, flush_logs_every_n_steps: int = 1):
        super().__init__(save_dir=str(run_dir), name="", version="", flush_logs_every_n_steps=flush_logs_every_n_steps)
        self.resume_tokens = resume_tokens

    @property
    @rank_zero_experiment  # one writer, on rank 0: under DDP the other ranks get a no-op (as Lightning's own)
    def experiment(self):
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(self.log_dir, self.resume_tokens)
        return self._experiment


def write_summary(run_dir, params: int, tokens_per_step: int, steps: int, clocks: dict,
                  target: float | None = None, **extra) -> dict:
    """summary.json from metrics.csv: the numbers a report needs, each traceable to a logged row (the val loss
    before training is the val row at 0 tokens) and named with the step it was measured at, so a resumed run's
    summary is an uninterrupted one's. `clocks` are the run's seconds by kind, summed over its invocations
    (train_s, val_s, ckpt_s, startup_s: gptlab/training/callbacks.py Clocks). `extra` adds finished (the run reached
    trainer.max_steps) and stopped (why an invocation ended before that)."""
    rows = read_metrics(run_dir)
    val = [r for r in rows if "val/loss" in r]
    val_before = next((r["val/loss"] for r in val if r.get("tokens") == 0), None)
    train = [r for r in rows if "train/loss" in r]
    best = min(val, key=lambda r: r["val/loss"]) if val else None
    summary = {
        "params": params,
        "tokens_per_step": tokens_per_step,
        "steps": steps,
        "tokens": steps * tokens_per_step,
        "tokens_per_param": steps * tokens_per_step / params,
        **{k: round(v, 2) for k, v in clocks.items()},  # train_s is the time a run took to train
        "val_before_loss": val_before,
        "val_tokens": int(val[-1]["val/tokens"]) if val and "val/tokens" in val[-1] else None,  # scored, per eval
        "final_train_loss": train[-1]["train/loss"] if train else None,
        "final_train_step": _step(train[-1], tokens_per_step) if train else None,
        "final_val_loss": val[-1]["val/loss"] if val else None,
        "final_val_step": _step(val[-1], tokens_per_step) if val else None,
        "final_val_ppl": math.exp(val[-1]["val/loss"]) if val else None,
        "final_val_loss_a": _finite(val[-1].get("val/loss_a")) if val else None,  # the first half of the val windows
        "final_val_loss_b": _finite(val[-1].get("val/loss_b")) if val else None,  # the second half
        "best_val_loss": best["val/loss"] if best else None,
        "best_val_ppl": math.exp(best["val/loss"]) if best else None,
        "best_val_step": _step(best, tokens_per_step) if best else None,
        "plateau_extrapolated": plateau(val),
        **({"target": time_to(val, target)} if target is not None else {}),
        **{k: _plain(v) for k, v in extra.items()},
    }
    atomic_write_json(Path(run_dir) / SUMMARY, summary)
    return summary


def time_to(val_rows: list[dict], target: float) -> dict:
    """When the val loss first reached `target`: the tokens and training seconds (the train_s clock: validation,
    checkpoints and start-up not counted) interpolated linearly (in the loss) between the validation before and the
    one at or below it; reached false when none got there."""
    out = {"loss": target, "reached": False, "tokens": None, "train_s": None}
    for before, row in zip([None, *val_rows], val_rows):
        if row["val/loss"] > target:
            continue
        if before is None or before["val/loss"] == row["val/loss"]:
            return {**out, "reached": True, "tokens": row["tokens"], "train_s": row.get("train_s")}
        f = (before["val/loss"] - target) / (before["val/loss"] - row["val/loss"])  # the share of the way down
        seconds = (before["train_s"] + f * (row["train_s"] - before["train_s"])
                   if "train_s" in row and "train_s" in before else None)
        return {**out, "reached": True, "tokens": before["tokens"] + f * (row["tokens"] - before["tokens"]),
                "train_s": seconds}
    return out


def plateau(val_rows: list[dict]):
    """The single-curve fit L(t) = L_inf + A t^-alpha over the evals after step 0 (curves.py): an
    extrapolation, as its name says; 'refused: why' when the curve cannot support one."""
    from gptlab.run.curves import FitError, fit_power_law
    pts = {r["tokens"]: r["val/loss"] for r in val_rows if r.get("tokens", 0) > 0}
    try:
        fit = fit_power_law(list(pts), list(pts.values()))
    except FitError as e:
        return f"refused: {e}"
    return {"L_inf": fit.c, "L_inf_err": _finite(fit.c_err), "alpha": fit.b, "alpha_err": _finite(fit.b_err),
            "evals": fit.n}


def _step(row: dict, tokens_per_step: int) -> int:
    """The optimizer step a row was measured at, from its tokens (its `step` column is Lightning's logging counter,
    one behind on train rows and shared by the validation before training with the first step)."""
    return round(row["tokens"] / tokens_per_step)


def _finite(v):
    return v if v is not None and math.isfinite(v) else None  # an empty val half logs NaN; JSON has no NaN


def _plain(v):
    from omegaconf import DictConfig, OmegaConf
    return OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
