"""The _target_ allowlist: a config may instantiate only Lightning Callback classes defined in gptlab, torch or
lightning, checked before anything is imported or built.

    python -m gptlab.train +callbacks.ranks._target_=gptlab.training.callbacks.RankReport
    python -m gptlab.train +callbacks.x._target_=os.system        # -> refused, exit 2: only classes from gptlab.*, ...
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from gptlab.config import ConfigError

ALLOWED_ROOTS = ("gptlab", "torch", "lightning")  # packages whose classes a config's _target_ may name


def safe_instantiate(node) -> list:
    """Instantiate every callbacks.* entry with a _target_, after checking every _target_ in it (nested ones too):
    each must name a class defined in gptlab, torch or lightning (where it is defined, so torch.save or a module's
    re-export of os.system do not pass), and each entry must be a Lightning Callback. Refuses with ConfigError."""
    from hydra.utils import instantiate
    node = OmegaConf.create(node or {}) if not isinstance(node, DictConfig) else node
    specs = {key: spec for key, spec in node.items() if isinstance(spec, DictConfig) and "_target_" in spec}
    for key, spec in specs.items():
        for where, target in find_targets(spec, f"callbacks.{key}"):
            check_target(where, target, callback=where == f"callbacks.{key}")
    return [instantiate(spec) for spec in specs.values()]


def find_targets(node, where: str):
    """(dotted key, value) of every _target_ in a config subtree."""
    from omegaconf import ListConfig
    if isinstance(node, DictConfig):
        for k, v in node.items():
            if k == "_target_":
                yield where, v
            else:
                yield from find_targets(v, f"{where}.{k}")
    elif isinstance(node, ListConfig):
        for i, v in enumerate(node):
            yield from find_targets(v, f"{where}[{i}]")


def check_target(where: str, target, callback: bool) -> None:
    """SystemExit unless `target` names a class defined under ALLOWED_ROOTS (a Lightning Callback if `callback`)."""
    import inspect

    from hydra.utils import get_object
    from lightning.pytorch import Callback
    allowed = ", ".join(f"{r}.*" for r in ALLOWED_ROOTS)
    if not isinstance(target, str) or target.split(".")[0] not in ALLOWED_ROOTS:  # checked before importing anything
        raise ConfigError(f"{where}._target_={target!r}: only classes from {allowed} may be instantiated")
    try:
        obj = get_object(target)
    except Exception as e:
        raise ConfigError(f"{where}._target_={target!r} cannot be found: {str(e).splitlines()[0]}") from None
    home = getattr(obj, "__module__", None) or ""
    if not inspect.isclass(obj) or home.split(".")[0] not in ALLOWED_ROOTS:
        what = f"a class from {home}" if inspect.isclass(obj) else "not a class"
        raise ConfigError(f"{where}._target_={target!r} is {what}; only classes defined in {allowed} may be "
                          "instantiated")
    if callback and not issubclass(obj, Callback):
        raise ConfigError(f"{where}._target_={target!r} is not a Lightning Callback; callbacks.* entries must be")
