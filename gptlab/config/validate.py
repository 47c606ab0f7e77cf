"""Validation of a composed config, and the typed RunConfig built from it. Imports no torch, so a bad config fails
in well under a second.

    python -m gptlab.train model.n_embd=100          # -> model.n_embd=100 must be divisible by model.n_head=6
    python -m gptlab.train optim.lr=0                # -> optim.lr must be > 0, got 0.0

`validate(cfg)` merges each concern of the composed Hydra config into its schema (gptlab/config/schema.py: unknown
keys and wrong types fail with the key's name) and then checks the relations between keys; `run_config(cfg)` returns
the typed RunConfig with every derived value (device, block size, world size, micro batch, accumulation) resolved once.
"""
from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

from gptlab.config.batch import accumulation, block_size, devices_per_node, world_size
from gptlab.config.checks import finite, int_at, is_int, is_number, require, to_object, typed
from gptlab.config.cooldown import check_source
from gptlab.config.schema import (
    DECAY_SHAPES,
    GELUS,
    PRECISIONS,
    SCHEDULES,
    CooldownConfig,
    DataConfig,
    Derived,
    GPTConfig,
    LoggerConfig,
    OptimConfig,
    PathsConfig,
    RunConfig,
    SampleConfig,
    SchedConfig,
    StudyConfig,
    TrainerConfig,
)
from gptlab.devices import ACCELERATORS, resolve_device


def validate_model(m) -> None:
    require(m.n_layer >= 1, f"model.n_layer must be >= 1, got {m.n_layer}")
    require(m.n_head >= 1, f"model.n_head must be >= 1, got {m.n_head}")
    require(m.n_embd % m.n_head == 0,
            f"model.n_embd={m.n_embd} must be divisible by model.n_head={m.n_head} "
            f"(e.g. n_embd={m.n_head * max(1, round(m.n_embd / m.n_head))})")
    require(m.block_size >= 1, f"model.block_size must be >= 1, got {m.block_size}")
    require(m.vocab_size >= 50257, f"model.vocab_size must be >= 50257 (GPT-2 BPE), got {m.vocab_size}")
    require(0.0 <= m.dropout < 1.0, f"model.dropout must be in [0, 1), got {m.dropout}")
    require(m.gelu in GELUS, f"model.gelu={m.gelu!r} is not one of {GELUS}")
    for key in ("mup_base_width", "mup_base_depth"):
        base = getattr(m, key)
        require(base is None or (is_int(base) and base >= 1),
                f"model.{key} must be null (off) or a positive integer, got {base!r}")


def validate_optim(optim, sched) -> None:
    require(optim.lr > 0, f"optim.lr must be > 0, got {optim.lr}")
    require(optim.eps > 0, f"optim.eps must be > 0, got {optim.eps}")
    require(optim.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {optim.weight_decay}")
    require(0 <= optim.beta1 < 1 and 0 <= optim.beta2 < 1, "optim.beta1 and optim.beta2 must be in [0, 1)")
    require(optim.grad_clip >= 0, f"optim.grad_clip must be >= 0 (0 disables), got {optim.grad_clip}")
    require(sched.name in SCHEDULES, f"sched.name={sched.name!r} is not one of {SCHEDULES}")
    require(sched.warmup_steps >= 0, f"sched.warmup_steps must be >= 0, got {sched.warmup_steps}")
    require(0 <= sched.min_lr_ratio <= 1, f"sched.min_lr_ratio must be in [0, 1], got {sched.min_lr_ratio}")
    require(0 < sched.decay_fraction <= 1, f"sched.decay_fraction must be in (0, 1], got {sched.decay_fraction}")
    require(sched.decay_shape in DECAY_SHAPES, f"sched.decay_shape={sched.decay_shape!r} is not one of {DECAY_SHAPES}")


def validate(cfg: DictConfig) -> DictConfig:
    """Check a composed train config; returns it resolved, with model/optim/sched typed. Raises ConfigError."""
    check_required(cfg)
    model = typed(cfg.get("model"), GPTConfig, "model")
    optim = typed(cfg.get("optim"), OptimConfig, "optim")
    sched = typed(cfg.get("sched"), SchedConfig, "sched")
    for name, node in (("model", model), ("optim", optim), ("sched", sched)):
        finite(node, name)
    validate_model(model)
    validate_optim(optim, sched)
    block = cfg.data.get("block_size")
    block = model.block_size if block is None else block  # only null means "the model's": 0 is an error
    require(is_int(block) and 1 <= block <= model.block_size,
            f"data.block_size={block} must be between 1 and model.block_size={model.block_size}")
    int_at(cfg, "data.batch_size", 1, what=" (micro batch)")
    int_at(cfg, "trainer.max_steps", 1)
    int_at(cfg, "trainer.eval_interval", 1)
    validate_run(cfg, block)
    trainer = cfg.trainer
    require(trainer.precision in PRECISIONS, f"trainer.precision={trainer.precision!r} is not one of {PRECISIONS}")
    require(trainer.get("compile", False) in (True, False, "auto"),
            f"trainer.compile={trainer.get('compile')!r} must be true, false or auto (on a CUDA GPU)")
    require(trainer.get("accelerator", "auto") in ACCELERATORS,
            f"trainer.accelerator={trainer.get('accelerator')!r} is not one of {', '.join(ACCELERATORS)}")
    accumulation(cfg, devices=world_size(cfg))
    with_types = OmegaConf.to_container(cfg, resolve=True)
    with_types.update(model=OmegaConf.to_container(model), optim=OmegaConf.to_container(optim),
                      sched=OmegaConf.to_container(sched))
    return OmegaConf.create(with_types)


def check_required(cfg: DictConfig) -> None:
    """`required: {key: why}` in a preset (experiment=finetune: init) names keys that must not be null."""
    for key, why in (cfg.get("required") or {}).items():
        require(OmegaConf.select(cfg, key) is not None, f"{key} must be set: {why}")


def run_config(cfg: DictConfig, recipe: str = "", sweep: str | None = None) -> RunConfig:
    """The typed RunConfig of a composed train config: validated, every derived value resolved once."""
    cfg = validate(cfg)
    world, micro = world_size(cfg), cfg.data.batch_size
    accum = accumulation(cfg, world)
    block = block_size(cfg)
    derived = Derived(device=resolve_device(cfg.trainer.accelerator, "trainer.accelerator"), block_size=block,
                      devices=devices_per_node(cfg), world_size=world, micro_batch=micro, accumulation=accum,
                      tokens_per_step=accum * micro * block * world,
                      keep_steps=keep_steps(cfg, accum * micro * block * world))
    if (cfg.get("cooldown") or {}).get("branches"):  # refused now, not after the run when its branches start
        for step in derived.keep_steps:
            check_source(cfg, step, "trainer.keep_tokens")
    require(not ((cfg.get("cooldown") or {}).get("branches") and world > 1),
            "cooldown.branches=true runs its branches in this process, on one device; on several, branch each kept "
            "checkpoint with its own command: python -m gptlab.train branch=<run>/checkpoints/step-000400.ckpt")
    plain = {k: v for k, v in cfg.items() if k not in ("required", "hydra")}
    return RunConfig(
        model=to_object(cfg.model, GPTConfig, "model"), optim=to_object(cfg.optim, OptimConfig, "optim"),
        sched=to_object(cfg.sched, SchedConfig, "sched"), data=to_object(cfg.data, DataConfig, "data"),
        trainer=to_object(cfg.trainer, TrainerConfig, "trainer"),
        logger=to_object(cfg.get("logger") or {}, LoggerConfig, "logger"),
        sample=to_object(cfg.get("sample") or {}, SampleConfig, "sample"),
        paths=to_object(cfg.paths, PathsConfig, "paths"), derived=derived, seed=cfg.seed,
        resume=cfg.get("resume"), init=cfg.get("init"), callbacks=OmegaConf.to_container(cfg.get("callbacks") or {}),
        branch=cfg.get("branch"), study=to_object(cfg.get("study") or {}, StudyConfig, "study"),
        cooldown=to_object(cfg.get("cooldown") or {}, CooldownConfig, "cooldown"),
        sweep=sweep, recipe=recipe, resolved=OmegaConf.to_container(OmegaConf.create(plain)))


def validate_run(cfg: DictConfig, block: int) -> None:
    """The keys no schema types: data, trainer, seed, sample, logger, resume/init; each checked for its type and
    range, so a wrong value fails here, naming its key, instead of as a TypeError deep inside a run."""
    int_at(cfg, "data.val_tokens", block, what=f" (at least one window of the block size {block})")
    int_at(cfg, "data.num_workers", 0)
    int_at(cfg, "data.global_batch", 1, null_ok=True)
    int_at(cfg, "data.global_batch_tokens", 1, null_ok=True)
    int_at(cfg, "trainer.log_every_n_steps", 1)
    int_at(cfg, "trainer.stop_after", 1, null_ok=True)
    every = cfg.trainer.get("ckpt_every_minutes")
    require(every is None or (is_number(every) and every > 0),
            f"trainer.ckpt_every_minutes must be a number > 0 (minutes) or null, got {every!r}")
    int_at(cfg, "trainer.threads", 1, null_ok=True)
    int_at(cfg, "trainer.num_nodes", 1)
    devices = cfg.trainer.devices
    require((is_int(devices) and (devices >= 1 or devices == -1)) or devices == "auto"
            or (OmegaConf.is_list(devices) and len(devices) > 0 and all(is_int(d) and d >= 0 for d in devices)),
            f"trainer.devices must be a count >= 1, -1 or auto (all), or a list of device ids, got {devices!r}")
    int_at(cfg, "seed", 0, hi=2**32 - 1)  # seed_everything and numpy take uint32 only (else a traceback later)
    if cfg.get("sample") is not None:
        int_at(cfg, "sample.max_new_tokens", 0)
        int_at(cfg, "sample.prompt_tokens", 1)
        t = cfg.sample.get("temperature")
        require(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t >= 0,
                f"sample.temperature must be a finite number >= 0 (0 = greedy), got {t!r}")
        int_at(cfg, "sample.top_k", 1, null_ok=True)
    logger = cfg.get("logger")
    if logger:
        require(logger.get("mode", "auto") in ("auto", "online", "offline"),
                f"logger.mode={logger.get('mode')!r} is not one of auto, online, offline")
        t = logger.get("init_timeout", 30)
        require(is_number(t) and t > 0, f"logger.init_timeout must be a number of seconds > 0, got {t!r}")
    validate_study(cfg)
    for key in ("resume", "init", "branch"):
        v = cfg.get(key)
        require(v is None or (isinstance(v, str) and v.strip() != ""),
                f"{key} must be a path (run folder or .ckpt){' or hf:<name>' if key == 'init' else ''}, got {v!r}")


def validate_study(cfg: DictConfig) -> None:
    """study.* (replicates, the baseline arm), cooldown.* and trainer.keep_tokens: types and ranges."""
    study = typed(cfg.get("study") or {}, StudyConfig, "study")
    require(is_int(study.seeds) and study.seeds >= 1, f"study.seeds must be a count >= 1, got {study.seeds!r}")
    cool = typed(cfg.get("cooldown") or {}, CooldownConfig, "cooldown")
    require(0 < cool.fraction < 1,
            f"cooldown.fraction must be in (0, 1) (0.2 decays the last 20%), got {cool.fraction}")
    require(cool.shape in DECAY_SHAPES, f"cooldown.shape={cool.shape!r} is not one of {DECAY_SHAPES}")
    require(0 <= cool.min_lr_ratio <= 1, f"cooldown.min_lr_ratio must be in [0, 1], got {cool.min_lr_ratio}")
    keep = cfg.trainer.get("keep_tokens") or []
    require(OmegaConf.is_list(keep) or isinstance(keep, list),
            f"trainer.keep_tokens must be a list of token budgets ([25K, 50K]), got {keep!r}")
    for budget in keep:
        require(count(budget) is not None, f"trainer.keep_tokens: {budget!r} is not a token count (51200 or 50K)")
    require(not cool.branches or keep, "cooldown.branches=true needs trainer.keep_tokens: the budgets to branch from")


def count(value) -> int | None:
    """A token count given as 51200 or '50K'; None when it is not one."""
    from gptlab.units import parse_count
    if is_int(value):
        return value if value >= 1 else None
    try:
        n = parse_count(str(value))
    except ValueError:
        return None
    return int(n) if n >= 1 else None


def keep_steps(cfg: DictConfig, tokens_per_step: int) -> list[int]:
    """trainer.keep_tokens as optimizer steps: each budget's nearest eval step (the kept checkpoint is written right
    after its validation, so a branch starts from a scored point); refused when that falls outside the run."""
    every, last = cfg.trainer.eval_interval, cfg.trainer.max_steps
    steps = []
    for budget in cfg.trainer.get("keep_tokens") or []:
        step = max(1, round(count(budget) / tokens_per_step / every)) * every
        require(step <= last, f"trainer.keep_tokens: {budget} is step {step}, past trainer.max_steps={last} "
                f"({last * tokens_per_step:,} tokens); keep budgets the run reaches")
        require(step not in steps, f"trainer.keep_tokens: {budget} falls on eval step {step}, as an earlier budget "
                f"does (trainer.eval_interval={every}, {tokens_per_step:,} tokens a step); space the budgets or lower "
                "trainer.eval_interval")
        steps.append(step)
    return sorted(steps)


