"""The checks every config validation is built from: each raises ConfigError naming the key. Imports no torch.

    python -c "from gptlab.config.checks import int_at; from omegaconf import OmegaConf; \
               int_at(OmegaConf.create({'a': 0}), 'a', 1)"        # ConfigError: a must be an integer >= 1, got 0
"""
from __future__ import annotations

import math
import re
from dataclasses import fields

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gptlab.errors import Refused


class ConfigError(Refused, ValueError):
    """A config value is wrong; the message names the key, the value and what is allowed."""


def require(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def int_at(cfg: DictConfig, key: str, lo: int, null_ok: bool = False, hi: int | None = None, what: str = ""):
    """The integer at dotted `key`, checked lo <= v (<= hi); None passes with null_ok."""
    v = OmegaConf.select(cfg, key)
    if v is None and null_ok:
        return None
    bound = f">= {lo}" + (f" and <= {hi}" if hi is not None else "")
    require(is_int(v) and v >= lo and (hi is None or v <= hi),
            f"{key}{what} must be an integer {bound}{' or null' if null_ok else ''}, got {v!r}")
    return v


def bool_at(cfg: DictConfig, key: str) -> bool:
    v = OmegaConf.select(cfg, key)
    require(isinstance(v, bool), f"{key} must be true or false, got {v!r}")
    return v


def finite(node, prefix: str) -> None:
    """Every float of a typed group is finite: optim.lr=inf or weight_decay=nan would train on NaNs."""
    for k, v in node.items():
        require(not isinstance(v, float) or math.isfinite(v), f"{prefix}.{k} must be a finite number, got {v}")


def typed(node, schema: type, key: str) -> DictConfig:
    """Merge `node` (the config at `key`) into its schema: wrong types and unknown keys fail with the key's name."""
    if node is None:
        raise ConfigError(f"missing config group '{key}'")
    try:
        known = {f.name for f in fields(schema)}
        extra = sorted(set(node.keys()) - known)
        if extra:
            raise ConfigError(f"{key}.{extra[0]} is not a known key; allowed: {', '.join(sorted(known))}")
        return OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as e:
        full = f"{key}.{e.full_key}" if getattr(e, "full_key", None) else key
        raise ConfigError(value_message(full, e.msg if hasattr(e, "msg") else str(e))) from None


KINDS = {"Float": "a number", "float": "a number", "Integer": "an integer", "int": "an integer",
         "Boolean": "true or false", "bool": "true or false", "String": "text", "str": "text"}


def value_message(key: str, msg: str) -> str:
    """OmegaConf's type error as the key's rule: "optim.lr must be a number, got 'abc'"; other messages as they are."""
    m = re.search(r"Value '(.*)' (?:of type '\w+' could not be converted to (\w+)|is not a valid (\w+))", msg)
    if m:
        return f"{key} must be {KINDS.get(m.group(2) or m.group(3), m.group(2) or m.group(3))}, got {m.group(1)!r}"
    return f"{key}: {msg}"


def to_object(node, schema: type, key: str):
    """The dataclass instance of `node` under its schema (see typed); ??? values a source fills later stay ???."""
    return schema(**OmegaConf.to_container(typed(node, schema, key), resolve=True, throw_on_missing=False))
