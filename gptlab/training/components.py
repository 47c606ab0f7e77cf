"""Components built from config: the optimizer, the schedule, the loggers and the callbacks are each a `_target_`
with its arguments in one YAML file of their group. This module checks them (before anything is built) and builds
the loggers and callbacks; gptlab/optim/optimizer.py builds the optimizer, gptlab/config/components.py holds the
checks that need no torch.

    python -m gptlab.train +callbacks.ranks._target_=gptlab.training.callbacks.RankReport
    python -m gptlab.train +callbacks.x._target_=os.system        # -> refused, exit 2: only gptlab.*, torch.*, ...

A `_target_` may name a class defined in gptlab, torch or lightning, or a function defined in gptlab (where it is
defined: torch.save or a module's re-export of os.system do not pass), checked before it is imported where the name
alone refuses it. An argument given for a key the group's preset file sets must have that value's type
(optim.lr=abc: "must be a number"); the optimizer is built once on a dummy tensor, so its own checks (torch's
"Invalid learning rate") refuse a bad value before the run starts.
"""
from __future__ import annotations

import math

from omegaconf import OmegaConf

from gptlab.config import ConfigError
from gptlab.config.components import (
    ALLOWED_ROOTS,
    GROUPS,
    NAMED,
    check_arguments,
    check_root,
    check_types,
    find_targets,
    numbers,
)


def check_target(where: str, target, base: type | None = None):
    """The object `target` names, when it is a class defined under ALLOWED_ROOTS (a subclass of `base` if given)
    or a function defined in gptlab; ConfigError otherwise."""
    import inspect

    from hydra.utils import get_object
    check_root(where, target)
    try:
        obj = get_object(target)
    except Exception as e:
        raise ConfigError(f"{where}._target_={target!r} cannot be found: {str(e).splitlines()[0]}") from None
    home = (getattr(obj, "__module__", None) or "").split(".")[0]
    gptlab_function = inspect.isfunction(obj) and home == "gptlab"
    if not (inspect.isclass(obj) and home in ALLOWED_ROOTS) and not gptlab_function:
        what = f"a class from {home}" if inspect.isclass(obj) else "not a class"
        raise ConfigError(f"{where}._target_={target!r} is {what}; only classes defined in "
                          f"{', '.join(f'{r}.*' for r in ALLOWED_ROOTS)} (or gptlab functions) may be instantiated")
    if base is not None and inspect.isclass(obj) and not issubclass(obj, base):
        home = {"lightning": "Lightning", "torch": "torch"}.get(base.__module__.split(".")[0], "")
        raise ConfigError(f"{where}._target_={target!r} is not a {home} {base.__name__}; {where.split('.')[0]}.* "
                          "entries must be")
    return obj


def specs(node, group: str) -> dict[str, dict]:
    """where -> spec of each component of a group: the group itself (optim, sched), or each keyed entry with a
    _target_ (logger.wandb, callbacks.best; an entry set to null is off)."""
    node = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else (node or {})
    if group not in NAMED:
        return {group: node} if node else {}
    return {f"{group}.{k}": v for k, v in node.items() if isinstance(v, dict) and "_target_" in v}


def instantiate(node, group: str, base: type) -> list:
    """Every component of a group, each target (nested ones too) checked first; each result must be a `base`."""
    from hydra.utils import instantiate as build
    found = specs(node, group)
    for where, spec in found.items():
        for key, target in find_targets(spec, where):
            check_target(key, target, base if key == where else None)
    out = []
    for where, spec in found.items():
        obj = build(spec)
        if not isinstance(obj, base):
            raise ConfigError(f"{where}._target_={spec['_target_']!r} built a {type(obj).__name__}, not a "
                              f"{base.__name__}")
        out.append(obj)
    return out


def safe_instantiate(node) -> list:
    """The callbacks.* entries, checked and built (Lightning Callbacks only)."""
    from lightning.pytorch import Callback
    return instantiate(node, "callbacks", Callback)


def loggers(node) -> list:
    """The logger.* entries, checked and built (Lightning loggers only)."""
    from lightning.pytorch.loggers import Logger
    return instantiate(node, "logger", Logger)


def check_offline(run) -> None:
    """What can be checked without importing torch: every _target_'s package, the argument types against the
    group's preset file, the schedule itself (a gptlab dataclass with its own checks)."""
    from gptlab.config.presets import preset
    from gptlab.optim.schedule import Schedule
    for group in GROUPS:
        node = getattr(run, group)
        for where, target in find_targets(node, group):
            check_root(where, target)
        check_types(node, preset(group, run.choices.get(group, "")), group)
    if "_target_" not in run.optim or "lr" not in run.optim:
        raise ConfigError("optim needs a _target_ and an lr: choose optim=adamw, optim=muon or a conf/optim/ file")
    for where, value in numbers(run.optim, "optim"):
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value}")
    lr, decay = run.optim["lr"], run.optim.get("weight_decay", 0.0)
    if not lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {lr}")
    if not (isinstance(decay, int | float) and decay >= 0):
        raise ConfigError(f"optim.weight_decay must be a number >= 0, got {decay!r}")
    Schedule.of(run.sched)


def orthogonalises(run) -> bool:
    """Whether the run's optimizer is Muon (it updates each whole matrix orthogonalised), told by its class."""
    import torch

    from gptlab.optim.muon import MuonAdamW
    cls = check_target("optim", run.optim["_target_"], None)
    return isinstance(cls, type) and issubclass(cls, (MuonAdamW, torch.optim.Muon))


def check_orthogonal(run) -> None:
    """Muon is refused with muP and with FSDP. The optimizer's class is imported only for those runs, so every other
    refusal still comes before torch; these come before the dataset's."""
    if not (run.model.mup_base_width or run.trainer.strategy == "fsdp") or not orthogonalises(run):
        return
    if run.model.mup_base_width:
        raise ConfigError("optim=muon with model.mup_base_width: Muon's orthogonalised update already sets each "
                          "matrix's step size by its shape, and muP's per-group Adam rates do not apply to it; drop "
                          "model.mup_base_width, or use optim=adamw for muP")
    raise ConfigError("optim=muon orthogonalises each whole weight matrix, and trainer.strategy=fsdp shards them; "
                      "use trainer=ddp with Muon, or optim=adamw with FSDP")


def check_components(run) -> None:
    """Every component's arguments against its typed config: the one its signature gives it (a torch or Lightning
    class's, a gptlab class's or function's), imported to read it. An unknown argument, a value of the wrong type or a
    missing one is refused naming the key (optim.betas=[0.9]: 'must be a list of 2 numbers')."""
    for group in GROUPS:
        for where, spec in specs(getattr(run, group), group).items():
            obj = check_target(where, spec["_target_"], None)
            check_arguments(where, obj, spec, supplied=1 if group == "optim" else 0, name=spec["_target_"])


def check_optimizer(run) -> None:
    """The optimizer built once over a dummy matrix, so its own checks refuse a bad value (torch's 'Invalid
    learning rate', an unknown argument) in one line before the run starts."""
    import torch

    from gptlab.optim.optimizer import optimizer_arguments
    cls = check_target("optim", run.optim["_target_"], None)
    w = torch.nn.Parameter(torch.zeros(2, 2))
    groups = [{"params": [w], "role": "hidden"}, {"params": [torch.nn.Parameter(torch.zeros(2))], "role": "gain"}]
    try:
        cls(groups, **optimizer_arguments(run.optim))
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"optim ({run.optim['_target_']}): {str(e).splitlines()[0]}") from None
