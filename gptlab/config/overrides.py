"""Hydra override syntax, read and written: the keys a command line's overrides touch, and a value quoted so that
OmegaConf reads it back verbatim. Imports no torch.

    python -c "from gptlab.config.overrides import hydra_quote; print(hydra_quote('a,b'))"      # 'a,b'
"""
from __future__ import annotations

import re

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
