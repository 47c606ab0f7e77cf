"""The run folder contract: what a run leaves, and how its records read back. Imports no torch.

    python -c "from gptlab.run.folder import read_metrics; print(read_metrics('runs/2026-11-27/21-00-00')[-1])"

<run>/config.yaml the resolved config; metrics.csv one row per logged step and per eval; summary.json the numbers a
report needs; machine.json what the run started on; checkpoints/{last,best}.ckpt; wandb/. Writers (gptlab/training)
and readers (eval, report) meet here.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from gptlab.config.checks import ConfigError

CONFIG, METRICS, SUMMARY = "config.yaml", "metrics.csv", "summary.json"
MACHINE = "machine.json"  # the machine facts of the run's first invocation (gptlab/machine.py)
RECORDS = (METRICS, SUMMARY, "checkpoints/last.ckpt", "checkpoints/best.ckpt")  # a run was here


def kept_name(step: int) -> str:
    """A checkpoint kept at `step` (trainer.keep_tokens): <run>/checkpoints/step-000400.ckpt."""
    return f"step-{step:06d}.ckpt"


def read_metrics(run_dir) -> list[dict]:
    """metrics.csv rows as dicts of floats (empty cells dropped)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def read_summary(run_dir) -> dict:
    """summary.json, or {} while the run has none."""
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else {}


def read_machine(run_dir) -> dict | None:
    """machine.json: the facts of the machine a run started on; None for a run made before it was recorded."""
    path = Path(run_dir) / MACHINE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def resume_paths(resume: str | None, run_dir: str) -> tuple[Path, Path | None]:
    """(run folder to write into, checkpoint to resume from). Resuming a run folder continues in that folder."""
    if not resume:
        return Path(run_dir), None
    p = Path(resume).resolve() if Path(resume).is_symlink() else Path(resume)  # runs/last: the run it names now
    ckpt = p / "checkpoints" / "last.ckpt" if p.is_dir() else p
    if not p.exists():
        raise ConfigError(f"resume={resume}: no such run folder or .ckpt file")
    from gptlab.model.spec import may_be_checkpoint, sweep_message, sweep_runs  # no torch
    if p.is_file() and not may_be_checkpoint(p):
        raise ConfigError(f"resume={resume}: {resume} is not a run folder or a checkpoint; resume= takes a run folder "
                          "(runs/last, runs/<date>/<time>) or a checkpoints/last.ckpt written by gptlab.train")
    if sweep_runs(p):
        raise ConfigError(f"resume={resume}: {sweep_message(Path(resume), 'resume')}")
    if not ckpt.is_file():
        raise ConfigError(f"resume={resume}: no checkpoint at {ckpt} (give a run folder or a .ckpt file)")
    return (p if p.is_dir() else ckpt.parent.parent), ckpt


def flat(node, prefix: str = "") -> dict:
    """A nested config dict as {dotted key: leaf}: how run configs are compared (resume, requeue, report arms)."""
    if not isinstance(node, dict):
        return {prefix.rstrip("."): node}
    out = {}
    for k, v in node.items():
        out.update(flat(v, f"{prefix}{k}."))
    return out


def label(overrides: list[str]) -> str:
    """Overrides as a run's name: 'model.n_layer=4 model.n_embd=128' -> 'n_layer=4 n_embd=128' (keys shortened to
    their last part where that stays unambiguous). W&B names and the report's legends both use it."""
    keys = [o.split("=", 1)[0] for o in overrides]
    short = [k.rsplit(".", 1)[-1] for k in keys]
    unique = {s for s in short if short.count(s) == 1}
    return " ".join((s if s in unique else k) + o[len(k):] for o, k, s in zip(overrides, keys, short))


MOVED = {"gptlab.config.schedule.": "gptlab.optim.schedule.", "gptlab.training.muon.": "gptlab.optim.muon."}  # renamed


def moved_targets(node):
    """A saved config with every _target_ that names a renamed module (MOVED) named as today."""
    if isinstance(node, list):
        return [moved_targets(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: moved_targets(v) for k, v in node.items()}
    target = out.get("_target_")
    for old, new in MOVED.items():
        if isinstance(target, str) and target.startswith(old):
            out["_target_"] = new + target[len(old):]
    return out


def upgraded(saved):
    """A config.yaml written before components came from config, in today's shape: optim as torch.optim.AdamW's
    arguments (grad_clip to trainer), sched as a Schedule, logger as its components. Today's come back as they are."""
    from omegaconf import OmegaConf, open_dict

    from gptlab.optim.schedule import TARGET
    data = OmegaConf.to_container(saved)
    optim, sched, logger = data.get("optim") or {}, data.get("sched") or {}, data.get("logger")
    if optim and "_target_" not in optim:
        data.setdefault("trainer", {})["grad_clip"] = optim.get("grad_clip", 1.0)
        data["optim"] = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": optim["lr"],
                         "weight_decay": optim.get("weight_decay", 0.1), "eps": optim.get("eps", 1e-8),
                         "betas": [optim.get("beta1", 0.9), optim.get("beta2", 0.95)],
                         "fused": True if optim.get("fused") is None else optim["fused"]}
    if sched and "_target_" not in sched:
        name = sched.get("name", "cosine")
        decay = {"constant": "none", "wsd": sched.get("decay_shape", "linear")}.get(name, name)
        data["sched"] = {"_target_": TARGET, "warmup_steps": sched.get("warmup_steps", 100),
                         "decay": decay, "decay_fraction": sched.get("decay_fraction", 0.2) if name == "wsd" else 1.0,
                         "min_lr_ratio": sched.get("min_lr_ratio", 0.1)}
    if isinstance(logger, dict) and "project" in logger:
        data["logger"] = {}
        if logger.get("project"):
            data["logger"]["wandb"] = {"_target_": "gptlab.training.loggers.wandb_logger", "tags": [],
                                       "save_dir": data.get("paths", {}).get("run_dir"), "init_timeout": 30,
                                       **{k: logger.get(k) for k in ("project", "group", "name", "job_type", "mode")}}
        if logger.get("tensorboard"):
            data["logger"]["tensorboard"] = {"_target_": "lightning.pytorch.loggers.TensorBoardLogger",
                                             "save_dir": data.get("paths", {}).get("run_dir"), "name": "tensorboard",
                                             "version": "", "default_hp_metric": False}
    out = OmegaConf.create(moved_targets(data))
    with open_dict(out):
        out.pop("resolved", None)
    return out


def recorded(saved: dict) -> dict:
    """A run's derived values as its config.yaml records them (block_size, micro_batch, accumulation, world_size,
    tokens_per_step). Records written before they were recorded get them from their data and model keys, here only."""
    if saved.get("derived"):
        return dict(saved["derived"])
    data, model = saved.get("data") or {}, saved.get("model") or {}
    block = data.get("block_size") or model.get("block_size")
    return {"block_size": block, "micro_batch": data.get("batch_size")}
