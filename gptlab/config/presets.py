"""The conf/ folder: Hydra's groups and their preset files, read without composing (no torch, no Hydra).

    python -c "from gptlab.config.presets import options; print(options('model'))"      # tiny, 30m, gpt2, ...
    python -c "from gptlab.config.presets import prepare_command as p; \
               print(p({'name': 'mine', 'source': 'text', 'source_args': {'paths': '???'}}))"
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "conf"


def options(group: str) -> list[str]:
    """The preset names of a config group (conf/<group>/*.yaml)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def preset(group: str, name: str) -> dict:
    """A group's preset file as a plain dict ({} when there is none)."""
    from omegaconf import OmegaConf
    path = CONF / group / f"{name}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}


def arg(value) -> str:
    """A value as a command-line override writes it: [a,b] for lists, null/true/false, numbers and text as they are."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(arg(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


PLACEHOLDERS = {"paths": "[FILES] (your .txt or .jsonl files or folders)"}  # what an unset source argument asks for


def prepare_command(data: Mapping) -> str:
    """The `python -m gptlab.prepare` command that makes the dataset a data config names: its source's preset
    (data=<source>), its name, and each source argument that differs from the preset's (a placeholder in capitals
    where one is unset)."""
    from omegaconf import OmegaConf
    if OmegaConf.is_config(data):
        data = OmegaConf.to_container(data, resolve=True, throw_on_missing=False)  # an unset ??? stays "???"
    source, name = data.get("source"), data.get("name")
    words = [f"python -m gptlab.prepare data={source}"] + ([f"data.name={name}"] if name != source else [])
    default = preset("data", str(source)).get("source_args") or {}
    for key, value in (data.get("source_args") or {}).items():
        if value == "???":
            words.append(f"data.source_args.{key}={PLACEHOLDERS.get(key, key.upper())}")
        elif default.get(key) != value:
            words.append(f"data.source_args.{key}={arg(value)}")
    return " ".join(words)
