"""A component's config and its checks: every `_target_` in a config, whether its package may be instantiated at all
(by name, nothing imported), whether an argument keeps the type its group's preset file gives it (no torch), and the
typed config a component's signature gives it (config_class), which its arguments are checked against.

    python -m gptlab.train +callbacks.x._target_=os.system        # -> refused, exit 2: only gptlab.*, torch.*, ...
    python -m gptlab.train optim.lr=abc                           # -> refused: optim.lr must be a number
    python -m gptlab.train optim.betas=[0.9]                      # -> refused: a list of 2 numbers (AdamW's signature)

gptlab/training/components.py imports what a target names and builds it.
"""
from __future__ import annotations

import functools
from pathlib import PurePath

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


def allowed(target) -> bool:
    """Whether a _target_ lies under a package whose classes a config may name, by its name alone."""
    return isinstance(target, str) and target.split(".")[0] in ALLOWED_ROOTS


def check_root(where: str, target) -> None:
    """Refused by its name alone (nothing imported) unless it lies under gptlab, torch or lightning."""
    if not allowed(target):
        raise ConfigError(f"{where}._target_={target!r}: only classes from "
                          f"{', '.join(f'{r}.*' for r in ALLOWED_ROOTS)} may be instantiated")


def component_class(target) -> object | None:
    """What `target` names, imported only from a package a _target_ may name; None for anything else, or nothing."""
    if not allowed(target):
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


HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")  # Hydra's own, not the component's


def signature(obj, supplied: int = 0) -> tuple[dict, bool]:
    """({name: inspect.Parameter} a component is configured with, whether it takes **kwargs): its signature, less the
    first `supplied` positional arguments the lab passes itself (an optimizer's parameter groups). A torch or
    Lightning class's config is this; a gptlab class's too, with its annotations."""
    import inspect
    try:
        sig = inspect.signature(obj, eval_str=True)
    except Exception:  # an annotation that names what only a type checker imports: keep them as text
        sig = inspect.signature(obj)
    params = [p for p in sig.parameters.values() if p.kind is not p.VAR_POSITIONAL]
    anything = any(p.kind is p.VAR_KEYWORD for p in params)
    named = [p for p in params if p.kind is not p.VAR_KEYWORD]
    return {p.name: p for p in named[supplied:]}, anything


@functools.cache
def config_class(obj, supplied: int = 0) -> type:
    """The typed config of a component that has no config class of its own, derived from its signature (as LitGPT
    derives one from a class_path): a dataclass of its arguments, with their annotations and defaults; `takes_more`
    when it also takes **kwargs."""
    import copy
    import dataclasses
    import inspect
    params, anything = signature(obj, supplied)
    fields = []
    for name, p in params.items():
        ann = p.annotation if p.annotation is not inspect.Parameter.empty else object
        if p.default is inspect.Parameter.empty:
            fields.append((name, ann))
        elif isinstance(p.default, list | dict | set):  # a dataclass takes a mutable default as a factory
            fields.append((name, ann, dataclasses.field(default_factory=lambda d=p.default: copy.copy(d))))
        else:
            fields.append((name, ann, dataclasses.field(default=p.default)))
    fields.sort(key=lambda f: len(f) == 3)  # a dataclass lists the arguments without defaults first
    cls = dataclasses.make_dataclass(f"{getattr(obj, '__name__', 'Component')}Config", fields)
    cls.takes_more = anything  # its **kwargs take any other argument
    return cls


def check_arguments(where: str, obj, args: dict, supplied: int = 0, name: str | None = None) -> None:
    """The arguments given against the component's typed config (config_class): each is one of its fields, of the
    type its annotation says, and every field without a default is given. ConfigError naming the key otherwise:
    'optim.betas must be a list of 2 numbers (torch.optim.AdamW's betas)'."""
    import dataclasses
    cfg = config_class(obj, supplied)
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    name = name or f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)}"
    for key, value in args.items():
        if key in HYDRA_KEYS or (key not in fields and cfg.takes_more):
            continue
        if key not in fields:
            raise ConfigError(f"{where}.{key} is not an argument of {name}; it takes {', '.join(fields) or 'none'}")
        ann = fields[key].type
        if isinstance(value, dict) and "_target_" in value:  # a nested component, built and checked as one
            continue
        if not isinstance(ann, str) and not fits_type(value, ann):
            raise ConfigError(f"{where}.{key} must be {describe(ann)} ({name}'s {key}), got {value!r}")
    for key, f in fields.items():
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and key not in args:
            raise ConfigError(f"{where}.{key} must be set: {name} takes it and has no default")


def fits_type(value, ann) -> bool:
    """Whether a config value can be `ann` (a number for a float, a list for a tuple); True where the annotation
    says nothing a config could break (an iterable of tensors, a class Hydra builds)."""
    import types
    import typing
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann in (typing.Any, object):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits_type(value, a) for a in args)
    if ann is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if origin is not None and origin not in (tuple, list, dict):  # Iterable[...], Callable[...]: nothing to check
        return True
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ann is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if ann is str:
        return isinstance(value, str)
    if ann in (tuple, list) or origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return False
        if args and not (len(args) == 2 and args[1] is Ellipsis) and origin is tuple:
            return len(value) == len(args) and all(fits_type(v, a) for v, a in zip(value, args))
        return all(fits_type(v, args[0]) for v in value) if args else True
    if ann is dict or origin is dict:
        return isinstance(value, dict)
    if isinstance(ann, type) and not issubclass(ann, PurePath):  # a tensor, a timedelta: no scalar a config writes
        return value is not None and not isinstance(value, str | int | float | bool)
    return True


def describe(ann) -> str:
    """An annotation in words: 'a number', 'null or true or false', 'a list of 2 numbers'."""
    import types
    import typing
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        words = list(dict.fromkeys(describe(a) for a in args if describe(a)))
        return " or ".join(words)
    if ann is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (tuple, list) or ann in (tuple, list):
        fixed = origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis)
        inner = describe(args[0]) if args else "values"
        return f"a list of {len(args)} {plural(inner)}" if fixed else f"a list of {plural(inner)}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text", dict: "a mapping"}.get(ann, "")


def plural(word: str) -> str:
    """'a number' -> 'numbers', 'a number or ' -> 'numbers' (the tensor of float | Tensor says nothing)."""
    word = word.split(" or ")[0]
    return {"true or false": "booleans"}.get(word, word.removeprefix("a ").removeprefix("an ") + "s")
