"""Typed configs and their validation. Imports no torch, so a bad config fails in well under a second.

    python -m gptlab.train model.n_embd=100          # -> model.n_embd=100 must be divisible by model.n_head=6
    python -m gptlab.train optim.lr=0                # -> optim.lr must be > 0, got 0.0

Schemas are plain dataclasses; `validate(cfg)` merges each concern of the composed Hydra config into its
schema (unknown keys and wrong types fail with the key's name) and then checks the relations between keys.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config value is wrong; the message names the key, the value and what is allowed."""


@dataclass
class GPTConfig:
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # residual stream width
    block_size: int = 1024  # maximum context length (position embeddings)
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for speed
    bias: bool = True  # biases in Linear and LayerNorm, as GPT-2 has
    dropout: float = 0.0  # 0 for pretraining, try 0.1 for fine-tuning
    gelu: str = "tanh"  # "tanh" (GPT-2's approximation, exact parity) or "none" (erf)


@dataclass
class OptimConfig:
    lr: float = 6e-4  # peak learning rate
    weight_decay: float = 0.1  # on 2-D weights only
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    fused: bool | None = None  # fused AdamW; None = when the device allows


@dataclass
class SchedConfig:
    name: str = "cosine"  # cosine | linear | constant | wsd
    warmup_steps: int = 100  # linear warmup from 0 to optim.lr
    min_lr_ratio: float = 0.1  # final lr = min_lr_ratio * optim.lr
    decay_fraction: float = 0.2  # wsd only: the last fraction of steps decays


SCHEDULES = ("cosine", "linear", "constant", "wsd")
GELUS = ("tanh", "none")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true")


def _typed(cfg: DictConfig, schema: type, key: str) -> DictConfig:
    """Merge cfg[key] into its schema: wrong types and unknown keys fail with the key's full name."""
    node = cfg.get(key)
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
        raise ConfigError(f"{full}: {e.msg if hasattr(e, 'msg') else e}") from None


def _require(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def validate_model(m) -> None:
    _require(m.n_layer >= 1, f"model.n_layer must be >= 1, got {m.n_layer}")
    _require(m.n_head >= 1, f"model.n_head must be >= 1, got {m.n_head}")
    _require(m.n_embd % m.n_head == 0,
             f"model.n_embd={m.n_embd} must be divisible by model.n_head={m.n_head} "
             f"(e.g. n_embd={m.n_head * max(1, round(m.n_embd / m.n_head))})")
    _require(m.block_size >= 1, f"model.block_size must be >= 1, got {m.block_size}")
    _require(m.vocab_size >= 50257, f"model.vocab_size must be >= 50257 (GPT-2 BPE), got {m.vocab_size}")
    _require(0.0 <= m.dropout < 1.0, f"model.dropout must be in [0, 1), got {m.dropout}")
    _require(m.gelu in GELUS, f"model.gelu={m.gelu!r} is not one of {GELUS}")


def validate(cfg: DictConfig) -> DictConfig:
    """Check a composed train config; returns it with model/optim/sched typed. Raises ConfigError."""
    model = _typed(cfg, GPTConfig, "model")
    optim = _typed(cfg, OptimConfig, "optim")
    sched = _typed(cfg, SchedConfig, "sched")
    validate_model(model)
    _require(optim.lr > 0, f"optim.lr must be > 0, got {optim.lr}")
    _require(optim.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {optim.weight_decay}")
    _require(0 <= optim.beta1 < 1 and 0 <= optim.beta2 < 1, "optim.beta1 and optim.beta2 must be in [0, 1)")
    _require(optim.grad_clip >= 0, f"optim.grad_clip must be >= 0 (0 disables), got {optim.grad_clip}")
    _require(sched.name in SCHEDULES, f"sched.name={sched.name!r} is not one of {SCHEDULES}")
    _require(sched.warmup_steps >= 0, f"sched.warmup_steps must be >= 0, got {sched.warmup_steps}")
    _require(0 <= sched.min_lr_ratio <= 1, f"sched.min_lr_ratio must be in [0, 1], got {sched.min_lr_ratio}")
    _require(0 < sched.decay_fraction <= 1, f"sched.decay_fraction must be in (0, 1], got {sched.decay_fraction}")

    data, trainer = cfg.data, cfg.trainer
    block = data.get("block_size") or model.block_size
    _require(isinstance(block, int) and 1 <= block <= model.block_size,
             f"data.block_size={block} must be between 1 and model.block_size={model.block_size}")
    _require(data.batch_size >= 1, f"data.batch_size (micro batch) must be >= 1, got {data.batch_size}")
    _require(trainer.max_steps >= 1, f"trainer.max_steps must be >= 1, got {trainer.max_steps}")
    _require(trainer.eval_interval >= 1, f"trainer.eval_interval must be >= 1, got {trainer.eval_interval}")
    _require(trainer.precision in PRECISIONS, f"trainer.precision={trainer.precision!r} is not one of {PRECISIONS}")
    accumulation(cfg, devices=int(trainer.devices) if str(trainer.devices).isdigit() else 1)
    with_types = OmegaConf.to_container(cfg, resolve=True)
    with_types.update(model=OmegaConf.to_container(model), optim=OmegaConf.to_container(optim),
                      sched=OmegaConf.to_container(sched))
    return OmegaConf.create(with_types)


def accumulation(cfg: DictConfig, devices: int) -> int:
    """Micro batches per optimizer step, from the global batch (sequences or tokens), micro batch and devices."""
    data = cfg.data
    block = data.get("block_size") or cfg.model.block_size
    seqs, toks = data.get("global_batch"), data.get("global_batch_tokens")
    _require(not (seqs and toks), "set only one of data.global_batch (sequences) and data.global_batch_tokens")
    if toks:
        _require(toks % block == 0, f"data.global_batch_tokens={toks} must be a multiple of the block size {block}")
        seqs = toks // block
    seqs = seqs or data.batch_size * devices
    per_step = data.batch_size * devices
    _require(seqs % per_step == 0,
             f"data.global_batch={seqs} sequences must be a multiple of data.batch_size x devices = "
             f"{data.batch_size} x {devices} = {per_step}")
    return seqs // per_step


def human(n: float) -> str:
    """29938560 -> '29.94M'."""
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:g}" if not math.isnan(n) else "nan"


def hydra_quote(s: str) -> str:
    """s as a Hydra quoted value that OmegaConf reads back verbatim: quotes, ${ and the backslashes before them
    escaped."""
    s = re.sub(r"(\\+)(?='|\$\{|\Z)", r"\1\1", s)
    return "'" + s.replace("'", "\\'").replace("${", "\\${") + "'"


def cli_argv(argv: list[str], verbatim=(), lists=()) -> list[str]:
    """Command-line arguments for the eval and sample entries: to Hydra, model= names the conf/model group, so it
    becomes spec=; keys in `verbatim` keep their value as typed (commas, quotes, brackets are Hydra syntax
    otherwise); keys in `lists` written a,b become one string, not a sweep ([a,b] or quoted values pass as they are)."""
    out = []
    for a in argv:
        key, eq, value = a.partition("=")
        if eq and key == "model":
            a = "spec=" + value
        elif eq and (key in verbatim or (key in lists and "," in value and value[:1] not in "['\"")):
            a = f"{key}={hydra_quote(value)}"
        out.append(a)
    return out
