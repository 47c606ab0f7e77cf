"""Hydra override syntax, read and written: the keys a command line's overrides touch, a value quoted so that
OmegaConf reads it back verbatim, and the rewrites and messages the command line's compose makes of them (a
component's unlisted argument, a whole number in scientific notation, a preset named by its file). Imports no torch.

    python -c "from gptlab.config.overrides import hydra_quote; print(hydra_quote('a,b'))"      # 'a,b'
"""
from __future__ import annotations

import math
import re

from gptlab.config.presets import CONF, options

# keys that may be added: the arguments of what a component builds, and a recipe's tuned rates (recipe.lr.muon)
COMPONENTS = ("optim.", "sched.", "logger.", "callbacks.", "data.source_args.", "recipe.")
IGNORED = ("resume", "paths.run_dir")  # a resume itself, and the folder it writes into (the run's)


def hydra_quote(s: str) -> str:
    """s as a Hydra quoted value that OmegaConf reads back verbatim: quotes, ${ and the backslashes before them
    escaped."""
    s = re.sub(r"(\\+)(?='|\$\{|\Z)", r"\1\1", s)
    return "'" + s.replace("'", "\\'").replace("${", "\\${") + "'"


def given_keys(overrides: list[str], is_group) -> list[str]:
    """The config keys a command line's overrides touch ('sched' for sched=constant), Hydra's own and a resume's
    bookkeeping left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    keys = []
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.key_or_group.lstrip("+~")
        if not key.startswith("hydra") and key not in IGNORED:
            keys.append(key if not is_group(key) else key.split("@")[0])
    return keys


def preset_message(group: str, value: str) -> str | None:
    """The refusal of `group=value` when value is not one of conf/<group>/'s presets but names one by its file
    (tiny.yaml, conf/model/tiny.yaml), its case (30M) or a near miss: 'did you mean model=tiny?'. None when value is
    a preset, or when nothing is close (Hydra's own message lists the options)."""
    import difflib
    from pathlib import PurePosixPath
    if group.startswith("hydra") or not (CONF / group).is_dir():
        return None
    names = options(group)
    if value in names:
        return None
    stem = PurePosixPath(value).name.removesuffix(".yaml").removesuffix(".yml")
    close = [n for n in names if n.lower() == stem.lower()] or difflib.get_close_matches(stem, names, n=1, cutoff=0.6)
    if not close:
        return None
    why = "a preset is named without its folder or .yaml" if stem != value else "no such preset"
    return (f"{group}={value}: {why}; did you mean {group}={close[0]}? (presets in conf/{group}: "
            f"{', '.join(names)})")


def override_at(overrides: list[str], key: str) -> int | None:
    """The index of the override that sets `key` (with or without Hydra's + or ++), or None."""
    return next((i for i, o in enumerate(overrides) if o.split("=", 1)[0].lstrip("+") == key), None)


def typed_value(overrides: list[str], e: BaseException) -> str | None:
    """What the command line typed for the key OmegaConf refused (1e-3, not its 0.001)."""
    key = getattr(e.__cause__, "full_key", None) or getattr(e, "full_key", None)
    i = override_at(overrides, key) if key else None
    return None if i is None else overrides[i].split("=", 1)[1]


def integral_value(overrides: list[str], e: BaseException) -> bool:
    """An integer key given a float that is a whole number (trainer.max_steps=1e3, 1.5e3, 64.0): rewritten in place
    to the integer (1000) for the compose to try again; False for anything else."""
    cause = e.__cause__ if getattr(e.__cause__, "full_key", None) else e
    key, text = getattr(cause, "full_key", None), typed_value(overrides, e)
    if not key or text is None or "to Integer" not in str(getattr(cause, "msg", "")):
        return False
    try:
        number = float(text)
    except ValueError:
        return False
    if not (math.isfinite(number) and number.is_integer()):
        return False
    i = override_at(overrides, key)
    overrides[i] = f"{overrides[i].split('=', 1)[0]}={int(number)}"
    return True


def adds_argument(overrides: list[str], key: str) -> bool:
    """optim.eps=1e-6 when the optim preset does not list eps: rewritten in place to Hydra's +optim.eps=1e-6 (the
    optimizer, schedule, logger or data source itself then accepts or refuses it). False for any other key."""
    if not key.startswith(COMPONENTS):
        return False
    for i, o in enumerate(overrides):
        if o.split("=", 1)[0] == key:
            overrides[i] = "+" + o
            return True
    return False


def flat_keys(cfg, prefix: str = "") -> list[str]:
    """The dotted keys of a config's leaves (and of its inner nodes, which a command line may set as a whole)."""
    from omegaconf import DictConfig
    out = []
    for k in cfg.keys():
        node = cfg._get_node(k)
        out.append(f"{prefix}{k}")
        if isinstance(node, DictConfig):
            out += flat_keys(node, f"{prefix}{k}.")
    return out
