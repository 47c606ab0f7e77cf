"""A resume continues the run's own config: the saved config.yaml, with only the keys a resume may change.

    python -m gptlab.train resume=runs/2026-11-27/21-00-00                        # the run's own config, as saved
    python -m gptlab.train resume=runs/2026-11-27/21-00-00 trainer.max_steps=4000 # extend it
    python -m gptlab.train resume=runs/2026-11-27/21-00-00 optim.lr=1               # refused: names saved and given

Any other key given on the command line must equal the saved value (a fault drill's keys may change); a group choice
(sched=constant) must give the same settings as the run's. Imports no torch.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from gptlab.config.checks import ConfigError, within

SAFE = ("trainer.max_steps", "trainer.stop_after", "trainer.ckpt_every_minutes", "trainer.devices",
        "trainer.num_nodes", "trainer.strategy", "trainer.threads", "trainer.accelerator", "device",
        "data.num_workers", "logger.wandb.mode")  # what a resume may change: length, where and how fast it runs
IGNORED = ("resume", "paths.run_dir")  # the resume itself, and the folder it writes into (the run's)


def given_keys(overrides: list[str], is_group) -> list[str]:
    """The config keys a command line's overrides touch ('sched' for sched=constant), Hydra's own left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    keys = []
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.key_or_group.lstrip("+~")
        if not key.startswith("hydra") and key not in IGNORED:
            keys.append(key if not is_group(key) else key.split("@")[0])
    return keys


def drill(cfg: DictConfig, key: str) -> bool:
    """Whether `key` lies in a callbacks.* fault drill (gptlab.training.drills): rehearsal gear, not the run's
    computation, so a resume may move or disarm it (callbacks.nan.step=1000)."""
    parts = key.split(".")
    target = OmegaConf.select(cfg, ".".join(parts[:2] + ["_target_"]), default=None) if len(parts) >= 2 else None
    return parts[0] == "callbacks" and str(target).startswith("gptlab.training.drills.")


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
