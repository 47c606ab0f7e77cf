"""Components built from config: the optimizer, the schedule, the loggers and the callbacks are each a `_target_`
with its arguments in one YAML file of their group. This module checks them (before anything is built) and builds
the loggers and callbacks; optimizers.py builds the optimizer.

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

from omegaconf import DictConfig, ListConfig, OmegaConf

from gptlab.config import ConfigError

ALLOWED_ROOTS = ("gptlab", "torch", "lightning")  # packages whose classes a config's _target_ may name
GROUPS = ("optim", "sched", "logger", "callbacks")  # the component groups of a run
NAMED = ("logger", "callbacks")  # groups holding several components, one per key


def find_targets(node, where: str):
    """(dotted key, value) of every _target_ in a config subtree."""
    if isinstance(node, (dict, DictConfig)):
        for k, v in node.items():
            if k == "_target_":
                yield where, v
            else:
                yield from find_targets(v, f"{where}.{k}")
    elif isinstance(node, (list, ListConfig)):
        for i, v in enumerate(node):
            yield from find_targets(v, f"{where}[{i}]")


def check_root(where: str, target) -> None:
    """Refused by its name alone (nothing imported) unless it lies under gptlab, torch or lightning."""
    if not isinstance(target, str) or target.split(".")[0] not in ALLOWED_ROOTS:
        raise ConfigError(f"{where}._target_={target!r}: only classes from "
                          f"{', '.join(f'{r}.*' for r in ALLOWED_ROOTS)} may be instantiated")


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


def kind(value) -> str | None:
    """What a preset value says about the values that may replace it; None: anything (a null in the preset)."""
    if isinstance(value, str) and value.startswith("${oc.select:") and "," in value:  # its fallback's kind
        value = OmegaConf.create(f"v: {value[len('${oc.select:'):-1].split(',', 1)[1]}").v  # as Hydra reads YAML
    if value is None:
        return None
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "an integer" if isinstance(value, int) else "a number"
    return {str: "text", list: "a list", dict: "a mapping"}.get(type(value))


def fits(value, want: str) -> bool:
    if want == "a number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if want == "an integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return want == {bool: "true or false", str: "text", list: "a list", dict: "a mapping"}.get(type(value), want)


def check_types(spec, preset, where: str) -> None:
    """Every key the preset sets keeps its type: optim.lr=abc -> 'optim.lr must be a number, got 'abc''."""
    for key, value in (spec or {}).items():
        if key not in (preset or {}) or key.startswith("_"):
            continue
        if isinstance(value, dict) and isinstance(preset[key], dict):
            check_types(value, preset[key], f"{where}.{key}")
            continue
        want = kind(preset[key])
        if want and value is not None and not fits(value, want):
            raise ConfigError(f"{where}.{key} must be {want}, got {value!r}")


def check_offline(run) -> None:
    """What can be checked without importing torch: every _target_'s package, the argument types against the
    group's preset file, the schedule itself (a gptlab dataclass with its own checks)."""
    from gptlab.config.presets import preset
    from gptlab.config.schedule import Schedule
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


def numbers(node, where: str):
    """(dotted key, value) of every int or float in a component's arguments."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from numbers(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from numbers(v, f"{where}[{i}]")
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield where, node


def check_optimizer(run) -> None:
    """The optimizer built once over a dummy matrix, so its own checks refuse a bad value (torch's 'Invalid
    learning rate', an unknown argument) in one line before the run starts."""
    import torch

    from gptlab.training.optimizers import optimizer_arguments
    check_target("optim", run.optim["_target_"], None)
    if run.optim["_target_"].endswith("MuonAdamW") and run.model.mup_base_width:
        raise ConfigError("optim=muon with model.mup_base_width: Muon's orthogonalised update already sets each "
                          "matrix's step size by its shape, and muP's per-group Adam rates do not apply to it; drop "
                          "model.mup_base_width, or use optim=adamw for muP")
    from hydra.utils import get_object
    w = torch.nn.Parameter(torch.zeros(2, 2))
    groups = [{"params": [w], "role": "hidden"}, {"params": [torch.nn.Parameter(torch.zeros(2))], "role": "gain"}]
    try:
        get_object(run.optim["_target_"])(groups, **optimizer_arguments(run.optim))
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"optim ({run.optim['_target_']}): {str(e).splitlines()[0]}") from None
