"""The checks every config validation is built from: each raises ConfigError naming the key. Imports no torch.

    python -c "from gptlab.config.checks import int_at; from omegaconf import OmegaConf; \
               int_at(OmegaConf.create({'a': 0}), 'a', 1)"        # ConfigError: a must be an integer >= 1, got 0
"""
from __future__ import annotations

import math
import re

from omegaconf import DictConfig, OmegaConf

from gptlab.errors import Refused


class ConfigError(Refused, ValueError):
    """A config value is wrong; the message names the key, the value and what is allowed."""


def require(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def within(key: str, prefixes) -> bool:
    """Whether the dotted `key` is one of `prefixes` or lies inside one ('trainer.devices' is within 'trainer')."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def must(ok: bool, key: str, what: str, value) -> None:
    """ConfigError "<key> must be <what>, got <value>" unless ok (a schema's check names its own key; the builder
    puts the group in front: model.n_layer)."""
    if not ok:
        raise ConfigError(f"{key} must be {what}, got {value!r}")


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


KINDS = {"Float": "a number", "float": "a number", "Integer": "an integer", "int": "an integer",
         "Boolean": "true or false", "bool": "true or false", "String": "text", "str": "text"}


def value_message(key: str, msg: str, typed: str | None = None) -> str:
    """OmegaConf's type error as the key's rule: "optim.lr must be a number, got 'abc'" (`typed`, the value as the
    command line wrote it, where known); other messages as they are."""
    m = re.search(r"Value '(.*)' (?:of type '\w+' could not be converted to (\w+)|is not a valid (\w+))", msg)
    if m:
        got = m.group(1) if typed is None else typed
        return f"{key} must be {KINDS.get(m.group(2) or m.group(3), m.group(2) or m.group(3))}, got {got!r}"
    return f"{key}: {msg}"
