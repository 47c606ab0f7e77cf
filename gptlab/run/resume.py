"""A resume continues the run's own config: the saved config.yaml, with only the keys a resume may change. A requeued
job (its own command run again into its own folder) is a resume too.

    python -m gptlab.train resume=runs/2026-11-27/21-00-00                        # the run's own config, as saved
    python -m gptlab.train resume=runs/2026-11-27/21-00-00 trainer.max_steps=4000 # extend it
    python -m gptlab.train resume=runs/2026-11-27/21-00-00 optim.lr=1               # refused: names saved and given

Any other key given on the command line must equal the saved value (a fault drill's keys may change); a group choice
(sched=constant) must give the same settings as the run's. Imports no torch.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from gptlab.config.checks import ConfigError, within
from gptlab.config.overrides import IGNORED, given_keys, hydra_quote
from gptlab.config.presets import CONF
from gptlab.run.folder import CONFIG, flat, upgraded
from gptlab.run.lock import launcher_rank, previous_run

SAFE = ("trainer.max_steps", "trainer.stop_after", "trainer.ckpt_every_minutes", "trainer.devices",
        "trainer.num_nodes", "trainer.strategy", "trainer.threads", "trainer.accelerator", "device",
        "data.num_workers", "logger.wandb.mode")  # what a resume may change: length, where and how fast it runs
WHERE = ("trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.accelerator", "device")
NOT_THE_RUN = ("resume", "choices", "sweep", "name", "arm", "derived", "paths.run_dir")  # bookkeeping, not the run


class Drill:
    """A fault drill (gptlab/training/drills.py): rehearsal gear, not the run's computation, so a resume may move or
    disarm it (callbacks.nan.step=1000). A callback is one when its class derives from this."""


def task_keys() -> list[str]:
    """The config keys this command line's overrides touch ('sched' for sched=constant)."""
    from hydra.core.hydra_config import HydraConfig
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return given_keys(task, lambda k: (CONF / k).is_dir())


def drill(cfg: DictConfig, key: str) -> bool:
    """Whether `key` lies in a callbacks.* entry whose class is a Drill. The class is imported only when a resume
    changes a callbacks.* key, and only from a package a _target_ may name."""
    parts = key.split(".")
    if parts[0] != "callbacks" or len(parts) < 2:
        return False
    target = OmegaConf.select(cfg, ".".join(parts[:2] + ["_target_"]), default=None)
    from gptlab.config.components import component_class
    obj = component_class(target)
    return isinstance(obj, type) and issubclass(obj, Drill)


def may_change(key: str, saved: DictConfig | None = None) -> bool:
    """Whether a resume, or a requeued job, may change `key`: a SAFE key (or one inside it), the resume's own
    bookkeeping, or a fault drill's setting in the saved config."""
    return within(key, SAFE + IGNORED) or (saved is not None and drill(saved, key))


def _value(cfg: DictConfig, key: str):
    v = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v


def resumed_config(composed: DictConfig, saved: DictConfig, keys: list[str]) -> tuple[DictConfig, list[str]]:
    """(the saved config with the safe changes the command line made, 'key: old -> new' for each), or ConfigError
    naming the first key a resume may not change, its saved value and the value given."""
    out, changes = saved.copy(), []
    for key in keys:
        if key == "experiment":
            raise ConfigError("experiment= cannot change on a resume: the run keeps its own config (drop it, or "
                              "start a new run)")
        old, new = _value(saved, key), _value(composed, key)
        if old == new:
            continue
        if not may_change(key, saved):
            raise ConfigError(f"{key} cannot change on a resume: the run was trained with {old!r}, given {new!r}; "
                              f"a resume may change only {', '.join(SAFE)}")
        if key == "trainer.strategy" and "fsdp" in (old, new):
            raise ConfigError(f"trainer.strategy cannot change between fsdp and another strategy on a resume (saved "
                              f"{old!r}, given {new!r}): FSDP's optimizer state is keyed its own way. Resume with "
                              f"trainer.strategy={old}; the weights load anywhere (eval, sample, init=<run>)")
        OmegaConf.update(out, key, new, force_add=True)
        if key == "device" and _value(saved, "trainer.accelerator") == old:  # the accelerator followed the device
            OmegaConf.update(out, "trainer.accelerator", new)
        changes.append(f"{key}: {old} -> {new}")
    out.resume = composed.resume
    return out, changes


def resume_config(cfg: DictConfig) -> tuple[DictConfig, list[str]]:
    """The resumed run's own config.yaml with the command line's safe changes; a bare checkpoint without its run
    folder's config keeps the config as composed."""
    saved = Path(cfg.paths.run_dir) / CONFIG
    if not saved.is_file():
        print(f"note: {saved} not found: resuming with the config as composed from the command line")
        return cfg, []
    out, changes = resumed_config(cfg, upgraded(OmegaConf.load(saved)), task_keys())
    return keep_global_batch(out, changes)


def keep_global_batch(out: DictConfig, changes: list[str]) -> tuple[DictConfig, list[str]]:
    """A resume on another number of ranks keeps the run's global batch (its accumulation adjusts): a run that left
    it implicit (one micro batch per device) gets it written out, from what its config.yaml recorded."""
    d = out.get("derived") or {}
    moved = any(c.split(":")[0] in WHERE for c in changes)
    if moved and d and not (out.data.get("global_batch") or out.data.get("global_batch_tokens")):
        seqs = d["micro_batch"] * d["accumulation"] * d["world_size"]
        out.data.global_batch = seqs
        changes = changes + [f"data.global_batch: None -> {seqs} (the run's global batch, kept)"]
    return out, changes


def differences(saved: dict, given: dict) -> list[str]:
    """'key: saved -> given' for every key that differs, but for bookkeeping and what a resume may change."""
    a, b = flat(saved), flat(given)
    keep = lambda k: not within(k, NOT_THE_RUN) and not may_change(k)  # noqa: E731
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if keep(k) and a.get(k) != b.get(k)]


def requeued(cfg: DictConfig, record: dict) -> bool:
    """Whether this is a job's own command run again into its own folder (Lightning's SLURM auto-requeue, submitit's
    checkpoint on timeout): the same run, to continue from its last.ckpt, when the saved config equals `record` (the
    run as composed); cfg.resume is then set to the folder. False when the folder holds no run; ConfigError when it
    holds another run, or one with no checkpoint to continue."""
    run_dir = Path(cfg.paths.run_dir)
    if cfg.get("resume") or cfg.get("branch") or not previous_run(run_dir):
        return False
    if launcher_rank() > 0 and not (run_dir / "checkpoints" / "last.ckpt").is_file():
        return False  # a rank Lightning started after rank 0 wrote config.yaml: rank 0 checked the folder
    if not (run_dir / CONFIG).is_file() or not (run_dir / "checkpoints" / "last.ckpt").is_file():
        raise ConfigError(f"run folder {run_dir} already holds a run with no config.yaml and last.ckpt to continue "
                          "from; start the new run elsewhere (hydra.run.dir=<new folder>, or delete the old one)")
    changed = differences(OmegaConf.to_container(upgraded(OmegaConf.load(run_dir / CONFIG))), record)
    if changed:
        raise ConfigError(f"run folder {run_dir} already holds a run with another config ({changed[0]}"
                          f"{f' and {len(changed) - 1} more' if len(changed) > 1 else ''}); continue it as it was "
                          f"with resume={run_dir}, or start the new run elsewhere (hydra.run.dir=<new folder>)")
    print(f"{run_dir} holds this command's own run (the same config): continuing it from its last.ckpt")
    with open_dict(cfg):
        cfg.resume = str(run_dir)
    return True


def job_argv(argv: list[str]) -> list[str]:
    """A resume writes into the run's own folder, not into a new one Hydra would make (nor its .hydra/ there); a rank
    a launcher started (torchrun, SLURM, a second node) leaves Hydra's .hydra/ and train.log to rank 0."""
    if launcher_rank() > 0 and not any(a in ("-m", "--multirun") for a in argv):
        if not any(a.startswith("hydra.output_subdir=") for a in argv):
            argv = argv + ["hydra.output_subdir=null"]
        argv = argv + ["hydra.job_logging.root.handlers=[console]"]  # train.log is rank 0's
    if any(a in ("-m", "--multirun") or a.startswith("hydra.run.dir=") for a in argv):
        return argv
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("resume=")), None)
    p = Path(resume or "")
    p = p.resolve() if p.is_symlink() else p  # runs/last: the run it names now
    if not resume or not p.exists():  # none, or refused by the checks, which name it
        return argv
    folder = p if p.is_dir() else p.parent.parent
    return argv + [f"hydra.run.dir={hydra_quote(str(folder))}", "hydra.output_subdir=null"]
