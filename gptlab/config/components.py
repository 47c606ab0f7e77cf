"""What can be said about a component before torch is imported: every `_target_` in a config, whether its package may
be instantiated at all, and whether an argument keeps the type its group's preset file gives it. Imports no torch.

    python -m gptlab.train +callbacks.x._target_=os.system        # -> refused, exit 2: only gptlab.*, torch.*, ...
    python -m gptlab.train optim.lr=abc                           # -> refused: optim.lr must be a number

gptlab/training/components.py imports what a target names and builds it.
"""
from __future__ import annotations

from omegaconf import DictConfig, ListConfig, OmegaConf

from gptlab.config.checks import ConfigError

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


def component_class(target) -> object | None:
    """What `target` names, imported only from a package a _target_ may name; None for anything else, or nothing."""
    if not isinstance(target, str) or target.split(".")[0] not in ALLOWED_ROOTS:
        return None
    from hydra.utils import get_object
    try:
        return get_object(target)
    except Exception:
        return None


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
