"""The schemas in Hydra's ConfigStore, and the builder that turns a composed config into them. Imports no torch.

    python -c "from gptlab.config.store import comments; print(comments()['model.n_layer'])"   # transformer blocks

Each entry point's conf/<name>.yaml starts its defaults list with `<name>_schema`: the dataclass that holds every
key's default, type, comment and check (schema.py for train, commands.py for the others). Hydra merges the presets
into it, so a mistyped key or a value of the wrong type fails while composing; build() then makes the dataclass,
whose check() refuses a value out of range, naming its key.
"""
from __future__ import annotations

import functools
import inspect
import io
import tokenize
import typing
from dataclasses import fields, is_dataclass

from gptlab.config.checks import ConfigError


def schemas() -> dict[str, type]:
    """conf/<name>.yaml -> the dataclass that is its schema."""
    from gptlab.config import commands
    from gptlab.config.schema import RunConfig
    return {"train": RunConfig, "eval": commands.EvalCommand, "sample": commands.SampleCommand,
            "prepare": commands.PrepareCommand, "report": commands.ReportCommand, "hf": commands.HfCommand,
            "bench": commands.BenchCommand, "generations": commands.GenerationsCommand}


def register() -> None:
    """Every schema as `<name>_schema` in Hydra's ConfigStore (the first entry of conf/<name>.yaml's defaults)."""
    from hydra.core.config_store import ConfigStore
    store = ConfigStore.instance()
    for name, schema in schemas().items():
        store.store(name=f"{name}_schema", node=schema)


def plain(cfg) -> dict:
    """A composed config as a plain dict, interpolations resolved, without Hydra's own node (and its ${now:})."""
    from omegaconf import OmegaConf
    if not OmegaConf.is_config(cfg):
        return dict(cfg)
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in cfg if k != "hydra" and not OmegaConf.is_missing(cfg, k)}


def build(schema: type, data: dict, prefix: str = ""):
    """The dataclass `schema` from a plain dict (a composed config's container): nested schemas built first, then
    each check(); a failing check's key is prefixed with where it sits (n_layer -> model.n_layer)."""
    hints = typing.get_type_hints(schema)
    names = {f.name for f in fields(schema)}
    unknown = sorted(set(data) - names - {"hydra"})
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]} is not a key; allowed: {', '.join(sorted(names))}")
    kwargs = {}
    for f in fields(schema):
        if f.name not in data:
            continue
        value, kind = data[f.name], hints[f.name]
        if is_dataclass(kind) and isinstance(value, dict):
            value = build(kind, value, f"{prefix}{f.name}.")
        kwargs[f.name] = value
    try:
        return schema(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}") from None


@functools.cache
def field_comments(schema: type) -> dict[str, str]:
    """field -> the comment after it in the dataclass's source: the one place a key is described."""
    out = {}
    source = inspect.getsource(schema)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            line = source.splitlines()[tok.start[0] - 1].strip()
            name = line.split(":")[0].strip()
            if name.isidentifier() and line.startswith(f"{name}:"):
                out[name] = tok.string.lstrip("# ").strip()
    return out


def comments(schema: type | None = None, prefix: str = "") -> dict[str, str]:
    """dotted key -> comment for a schema and the schemas nested in it (train's RunConfig by default)."""
    from gptlab.config.schema import RunConfig
    schema = schema or RunConfig
    out, hints = {}, typing.get_type_hints(schema)
    for name, text in field_comments(schema).items():
        out[f"{prefix}{name}"] = text
    for f in fields(schema):
        if is_dataclass(hints[f.name]):
            out.update(comments(hints[f.name], f"{prefix}{f.name}."))
    return out
