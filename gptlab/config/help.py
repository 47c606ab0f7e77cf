"""An entry point's --help: its commands, then every key with the value this command line would run with (the
composed config, not a group file's default) and its comment from its one source. Imports no torch.

    python -m gptlab.train --help                      # a plain run's values: lr 0.002, 1200 steps, ...
    python -m gptlab.train model=30m sched=wsd --help  # the values of the run this line describes
"""
from __future__ import annotations

import re
from pathlib import Path

from gptlab.config.presets import CONF, options

HIDDEN = ("hydra", "required", "choices", "sweep", "name", "arm", "derived")  # set at start


def comments(name: str, choices: dict) -> dict[str, str]:
    """dotted key -> comment, each from its one source: the entry point's schema (gptlab/config/schema.py,
    commands.py) for its keys, the chosen preset file for a component's arguments (conf/optim/adamw.yaml: lr), and
    conf/<name>.yaml's defaults list for the groups ('group:<g>')."""
    from gptlab.config.store import comments as schema_comments
    from gptlab.config.store import schemas
    out = dict(schema_comments(schemas()[name])) if name in schemas() else {}
    for key, _, comment in yaml_keys(CONF / f"{name}.yaml"):
        if key.startswith("group:") and comment:
            out.setdefault(key, comment)
    files = [(g, CONF / g / f"{c}.yaml") for g, c in choices.items() if (CONF / g / f"{c}.yaml").is_file()]
    is_global = lambda path: path.read_text().startswith("# @package _global_")  # noqa: E731
    for group, path in sorted(files, key=lambda f: is_global(f[1])):  # components' own comments before experiments'
        glob = is_global(path)
        for key, _, comment in yaml_keys(path):
            if comment and not key.startswith("group:"):
                out.setdefault(key if glob else f"{group}.{key}", comment)
    return out


def text(name: str, doc: str, cfg, aliases: dict[str, str], positional: tuple[str, ...]) -> str:
    """The help text of entry point `name`: its docstring's first line, usage, the groups and the keys."""
    from omegaconf import OmegaConf
    back = {v: k for k, v in aliases.items()}
    choices = {g: c for g, c in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
               if not g.startswith("hydra") and c is not None}
    notes = comments(name, choices)
    words = " ".join(f"[{p.rstrip('*')}{' ...' if p.endswith('*') else ''}]" for p in positional)
    lines = [doc.strip().splitlines()[0], "", f"usage: python -m gptlab.{name} {words + ' ' if words else ''}"
             "key=value ...", "", "the values below are the ones this command line would run with", ""]
    for top in cfg.keys():
        if top in HIDDEN:
            continue
        if top in choices:
            lines.append(group_line(top, choices[top], notes))
        node, indent = cfg._get_node(top), "    " if top in choices else "  "
        if OmegaConf.is_dict(node):
            pairs = leaves(node) + schema_defaults(node, top, notes)
            lines += [line(f"{top}.{k}", v, notes, indent, back) for k, v in pairs]
        else:
            lines.append(line(top, value(cfg, top), notes, "  ", back))
    lines += [group_line(g, c, notes) for g, c in choices.items() if g not in cfg]  # experiment, ...
    return "\n".join(lines)

TORCH_FREE = ("gptlab.config.", "gptlab.optim.schedule.")  # modules --help may import for a component's fields


def schema_defaults(node, top: str, notes: dict) -> list[tuple[str, object]]:
    """A component that is a gptlab config dataclass (sched: Schedule): its fields the preset leaves at their
    defaults, with the comments from the class, its one source."""
    import dataclasses

    from gptlab.config.schema import Schema
    from gptlab.config.store import field_comments
    target = node.get("_target_") if "_target_" in node else None
    if not isinstance(target, str) or not target.startswith(TORCH_FREE):  # --help imports no torch
        return []
    from hydra.utils import get_object
    cls = get_object(target)
    if not (isinstance(cls, type) and issubclass(cls, Schema)):
        return []
    for name, text in field_comments(cls).items():
        notes.setdefault(f"{top}.{name}", text)
    return [(f.name, f.default) for f in dataclasses.fields(cls) if f.name not in node]


def group_line(group: str, choice: str, notes: dict) -> str:
    note = notes.get(f"group:{group}")
    return f"  {group}={choice}  ({'|'.join(options(group))}){'  # ' + note if note else ''}"


def line(key: str, v, notes: dict, indent: str, back: dict) -> str:
    note = notes.get(key)
    return f"{indent}{back.get(key, key)}: {show(v)}" + (f"  # {note}" if note else "")


def leaves(node, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) of a config node's leaves, interpolations resolved where they can be."""
    from omegaconf import OmegaConf
    out = []
    for k in node.keys():
        child = node._get_node(k)
        if OmegaConf.is_dict(child) and len(child):
            out += leaves(child, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", value(node, k)))
    return out


def value(node, key):
    """A key's value: '???' when unset, the interpolation itself where it resolves only inside a run."""
    from omegaconf import OmegaConf
    if OmegaConf.is_missing(node, key):
        return "???"
    try:
        v = node[key]
    except Exception:  # ${hydra:...} and ${now:...} resolve only inside a running job
        return node._get_node(key)._value()
    return OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v


def show(v) -> str:
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {show(x)}" for k, x in v.items()) + "}"
    return str(v)


def yaml_keys(path: Path) -> list[tuple[str, str, str]]:
    """(dotted key, value, comment) of a config file's leaves, read as text so the comments survive; defaults-list
    entries come back as ('group:<name>', option, comment)."""
    out, stack, in_defaults = [], [], False
    for raw in path.read_text().splitlines():
        body, _, comment = raw.partition(" #")
        if not body.strip() or body.lstrip().startswith("#"):
            continue
        indent = len(body) - len(body.lstrip())
        m = re.match(r"\s*(- )?([\w/@.\-]+):\s*(.*)$", body)
        if not m:
            continue
        dash, key, val = m.groups()
        if dash and in_defaults:
            if not key.startswith(("override", "hydra")) and val not in ("null", ""):
                out.append((f"group:{key}", val.strip(), comment.strip()))
            continue
        stack = [s for s in stack if s[0] < indent]
        in_defaults = indent == 0 and key == "defaults"
        if val.strip() == "" and not in_defaults:
            stack.append((indent, key))
            continue
        if not in_defaults:
            out.append((".".join([s[1] for s in stack] + [key]), val.strip(), comment.strip()))
    return out
