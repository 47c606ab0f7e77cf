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
    fused: bool | None = None  # fused AdamW; None = on CUDA and CPU


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
    for name, node in (("model", model), ("optim", optim), ("sched", sched)):
        _finite(node, name)
    validate_model(model)
    _require(optim.lr > 0, f"optim.lr must be > 0, got {optim.lr}")
    _require(optim.eps > 0, f"optim.eps must be > 0, got {optim.eps}")
    _require(optim.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {optim.weight_decay}")
    _require(0 <= optim.beta1 < 1 and 0 <= optim.beta2 < 1, "optim.beta1 and optim.beta2 must be in [0, 1)")
    _require(optim.grad_clip >= 0, f"optim.grad_clip must be >= 0 (0 disables), got {optim.grad_clip}")
    _require(sched.name in SCHEDULES, f"sched.name={sched.name!r} is not one of {SCHEDULES}")
    _require(sched.warmup_steps >= 0, f"sched.warmup_steps must be >= 0, got {sched.warmup_steps}")
    _require(0 <= sched.min_lr_ratio <= 1, f"sched.min_lr_ratio must be in [0, 1], got {sched.min_lr_ratio}")
    _require(0 < sched.decay_fraction <= 1, f"sched.decay_fraction must be in (0, 1], got {sched.decay_fraction}")

    data, trainer = cfg.data, cfg.trainer
    block = data.get("block_size")
    block = model.block_size if block is None else block  # only null means "the model's": 0 is an error
    _require(_is_int(block) and 1 <= block <= model.block_size,
             f"data.block_size={block} must be between 1 and model.block_size={model.block_size}")
    _int(cfg, "data.batch_size", 1, what=" (micro batch)")
    _int(cfg, "trainer.max_steps", 1)
    _int(cfg, "trainer.eval_interval", 1)
    validate_run(cfg, block)
    _require(trainer.precision in PRECISIONS, f"trainer.precision={trainer.precision!r} is not one of {PRECISIONS}")
    _require(trainer.get("compile", False) in (True, False, "auto"),
             f"trainer.compile={trainer.get('compile')!r} must be true, false or auto (on a CUDA GPU)")
    accumulation(cfg, devices=stated_devices(cfg))
    with_types = OmegaConf.to_container(cfg, resolve=True)
    with_types.update(model=OmegaConf.to_container(model), optim=OmegaConf.to_container(optim),
                      sched=OmegaConf.to_container(sched))
    return OmegaConf.create(with_types)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(cfg: DictConfig, key: str, lo: int, null_ok: bool = False, hi: int | None = None, what: str = ""):
    """The integer at dotted `key`, checked lo <= v (<= hi); None passes with null_ok. ConfigError names the key."""
    v = OmegaConf.select(cfg, key)
    if v is None and null_ok:
        return None
    bound = f">= {lo}" + (f" and <= {hi}" if hi is not None else "")
    _require(_is_int(v) and v >= lo and (hi is None or v <= hi),
             f"{key}{what} must be an integer {bound}{' or null' if null_ok else ''}, got {v!r}")
    return v


def _finite(node, prefix: str) -> None:
    """Every float of a typed group is finite: optim.lr=inf or weight_decay=nan would train on NaNs."""
    for k, v in node.items():
        _require(not isinstance(v, float) or math.isfinite(v), f"{prefix}.{k} must be a finite number, got {v}")


def validate_run(cfg: DictConfig, block: int) -> None:
    """The keys no schema types: data, trainer, seed, sample, logger, resume/init; each checked for its type and
    range, so a wrong value fails here, naming its key, instead of as a TypeError deep inside a run."""
    _int(cfg, "data.val_tokens", block, what=f" (at least one window of the block size {block})")
    _int(cfg, "data.num_workers", 0)
    _int(cfg, "data.global_batch", 1, null_ok=True)
    _int(cfg, "data.global_batch_tokens", 1, null_ok=True)
    _int(cfg, "trainer.log_every_n_steps", 1)
    _int(cfg, "trainer.stop_after", 1, null_ok=True)
    _int(cfg, "trainer.threads", 1, null_ok=True)
    _int(cfg, "trainer.num_nodes", 1)
    devices = cfg.trainer.devices
    _require((_is_int(devices) and (devices >= 1 or devices == -1)) or devices == "auto"
             or (OmegaConf.is_list(devices) and len(devices) > 0 and all(_is_int(d) and d >= 0 for d in devices)),
             f"trainer.devices must be a count >= 1, -1 or auto (all), or a list of device ids, got {devices!r}")
    _int(cfg, "seed", 0, hi=2**32 - 1)  # seed_everything and numpy take uint32 only (they fail later, with a traceback)
    if cfg.get("sample") is not None:
        _int(cfg, "sample.max_new_tokens", 0)
        t = cfg.sample.get("temperature")
        _require(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t >= 0,
                 f"sample.temperature must be a finite number >= 0 (0 = greedy), got {t!r}")
        _int(cfg, "sample.top_k", 1, null_ok=True)
    logger = cfg.get("logger")
    if logger and "project" in logger:
        _require(logger.get("mode") in ("auto", "online", "offline"),
                 f"logger.mode={logger.get('mode')!r} is not one of auto, online, offline")
    for key in ("resume", "init"):
        v = cfg.get(key)
        _require(v is None or (isinstance(v, str) and v.strip() != ""),
                 f"{key} must be a path (run folder or .ckpt){' or hf:<name>' if key == 'init' else ''}, got {v!r}")


def unset_mandatory(cfg: DictConfig, choices: dict, conf_dir) -> list[str]:
    """Keys a chosen preset marks ??? (must be set) that are still null in cfg. OmegaConf's merge keeps the earlier
    value where the later one is ???, so experiment=finetune's `init: ???` alone leaves train.yaml's `init: null`
    and the "fine-tune" would silently start from random weights. choices: Hydra's {group: option}."""
    from pathlib import Path
    found = []
    for group, option in choices.items():
        path = Path(conf_dir) / group / f"{option}.yaml"
        if group.startswith("hydra") or not isinstance(option, str) or not path.is_file():
            continue
        prefix = "" if "@package _global_" in path.read_text() else group.replace("/", ".") + "."
        for key in _missing_leaves(OmegaConf.to_container(OmegaConf.load(path), resolve=False)):
            # None: an earlier null the ??? did not replace; still ??? (select's default) is left to whoever reads it
            full = prefix + key
            if full.split(".")[0] != "defaults" and OmegaConf.select(cfg, full, default="???") is None:
                found.append((full, f"{group}={option}"))
    return [f"{key} must be set: {preset} marks it ??? (required)" for key, preset in found]


def _missing_leaves(node: dict, prefix: str = ""):
    """Dotted keys of the ??? values in a config file's tree (read unresolved)."""
    for key, value in node.items():
        if value == "???":
            yield prefix + str(key)
        elif isinstance(value, dict):
            yield from _missing_leaves(value, f"{prefix}{key}.")


# data.batch_size=auto: micro batch per model preset, (CPU, CUDA). CPU: what this repo's CPU runs use (tiny 4, 30m 8
# as the study), halved per GPT-2 size. CUDA, bf16 + flash attention + compile: measured on an H200 for 30m (64 x 512,
# 6.5 GB peak) and gpt2 (32 x 1024, 19 GB; benchmarks/results/h200-2026-11-28); the larger sizes are scaled from gpt2 to
# stay well inside an 80 GB card (estimates). A preset changed by overrides (model.n_layer=...) keeps its entry.
MICRO_BATCH = {"tiny": (4, 64), "30m": (8, 64), "gpt2": (4, 32), "gpt2-medium": (2, 16), "gpt2-large": (1, 8),
               "gpt2-xl": (1, 4)}


def resolve_micro_batch(cfg: DictConfig, preset: str | None, cuda: bool) -> None:
    """data.batch_size=auto becomes the preset's tuned micro batch for this device type, lowered to the largest that
    divides the global batch per device, so accumulation reaches exactly the same global batch everywhere."""
    if cfg.data.get("batch_size") != "auto":
        return
    _require(preset in MICRO_BATCH, f"data.batch_size=auto: no tuned micro batch for model={preset} (known: "
             f"{', '.join(MICRO_BATCH)}); set data.batch_size to a number")
    tuned = MICRO_BATCH[preset][int(cuda)]
    block = cfg.data.get("block_size") or cfg.model.block_size
    seqs = cfg.data.get("global_batch") or (cfg.data.get("global_batch_tokens") or 0) // block
    devices = stated_devices(cfg)
    per_device = seqs // devices if seqs and seqs % devices == 0 else 0
    cfg.data.batch_size = max(d for d in range(1, tuned + 1) if not per_device or per_device % d == 0)


def stated_devices(cfg: DictConfig) -> int:
    """trainer.devices when it is a count, else 1 (auto and -1 are known only once the GPUs are seen)."""
    return int(cfg.trainer.devices) if str(cfg.trainer.get("devices", 1)).isdigit() else 1


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
