"""Tokenize a document source into uint16 shards + manifest.json under ${paths.data_dir}/${data.name}.

    python -m gptlab.prepare data=shakespeare                 # ~1.6M tokens, seconds (fetches the texts once)
    python -m gptlab.prepare data=openwebtext workers=16      # ~9B tokens, as nanoGPT's prepare.py
    python -m gptlab.prepare data=text data.name=notes data.source_args.paths=[notes/]
    GPTLAB_DATA=/big/disk python -m gptlab.prepare data=shakespeare force=true
    python -m gptlab.prepare --help

Pipeline (gptlab/data/pipeline.py): source -> documents -> tiktoken on `workers` threads -> EOT after each document
-> shards of data.shard_tokens -> manifest.json, written last. A rerun whose manifest verifies and whose settings are
unchanged does nothing; an interrupted run leaves no manifest, so no reader trusts its shards. A hub dataset that is
neither cached nor reachable is refused at once (exit 2), saying what to download.
"""
from __future__ import annotations

from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from gptlab import cli
from gptlab.config.checks import ConfigError


def check(cfg):
    """The data group fully set (its ??? keys given), workers a count; returns the plain settings."""
    try:
        data = OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:  # a ??? in conf/data/*.yaml: the user must set it
        key = e.full_key if e.full_key.startswith("data.") else f"data.{e.full_key}"
        raise ConfigError(f"{key} must be set: python -m gptlab.prepare "
                          f"data={cfg.hydra.runtime.choices.get('data')} {key}=...") from None
    p = cli.typed(cfg, "prepare")  # every key's type and range (gptlab/config/commands.py PrepareCommand)
    return data, p.paths.data_dir, p.workers, p.force


def work(checked) -> None:
    from gptlab.data.pipeline import prepare
    data, data_dir, workers, force = checked
    prepare(data, data_dir, workers=workers, force=force)


ENTRY = cli.Entry("prepare", check, work)

if __name__ == "__main__":
    cli.run(ENTRY)
