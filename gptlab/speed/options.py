"""What each model option costs a training step: the bare training loop (gptlab/speed/timing.py's BareLoop) of the
configured block and of one variant per option, interleaved round by round in one process, as a ratio.

    python -m gptlab.bench model=30m options=[all]                 # every option alone, and all together
    python -m gptlab.bench model=30m options=[pos=rope,mlp=swiglu] rounds=5
    python -m gptlab.bench model=30m options=[together] rounds=8          # the block against all options at once

Each variant starts from its own initial weights (an option can change their shapes) on the same batches. The
ratio is the variant's median step time over the block's in the same rounds: 1.10 is 10% slower a step.
"""
from __future__ import annotations

import copy
import statistics
from dataclasses import asdict, replace


def every() -> dict[str, dict]:
    """name -> model keys: each option alone at each value it is tried at (the schema's `tried`), named as written
    on the command line (pos=rope, mlp=swiglu, logit_softcap=30), in the schema's order."""
    from gptlab.config.schema import GPTConfig
    return {f"{key}={written(v)}": {key: v} for key, values in GPTConfig.tried().items() for v in values}


def together() -> dict:
    """Every option at once, each at the first value it is tried at."""
    from gptlab.config.schema import GPTConfig
    return {key: values[0] for key, values in GPTConfig.tried().items()}


def written(v) -> str:
    """A value as a command line writes it: true, false, 30 (a whole float without its .0), rope."""
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:g}" if isinstance(v, float) else str(v)


def variants(options: list[str]) -> dict[str, dict]:
    """name -> model keys: the block as configured first, then each option asked for ([all]: every one, and all;
    [together]: all at once alone, for many rounds of the one ratio)."""
    from omegaconf import OmegaConf
    out = {"block as configured": {}}
    if "all" in options:
        return {**out, **every(), "all together": together()}
    if "together" in options:
        return {**out, "all together": together()}
    for opt in options:
        key, _, value = opt.partition("=")
        out[opt] = {key: OmegaConf.create(f"v: {value}").v}
    return out


def setup_of(s, keys: dict):
    """A copy of the bench's Setup whose model has `keys` changed, with initial weights of its own."""
    import torch

    from gptlab.config import GPTConfig
    from gptlab.model.gpt import GPT
    v = copy.copy(s)
    v.model_cfg = asdict(replace(GPTConfig(**s.model_cfg), **keys))  # the config's checks refuse a bad option
    torch.manual_seed(s.seed)
    v.state = GPT(GPTConfig(**v.model_cfg)).state_dict()
    return v


def time_options(cfg, s) -> dict:
    """{variant: {tokens_per_s, step_s, ratio}} from cfg.rounds interleaved rounds of cfg.steps bare steps each."""
    from gptlab.speed.timing import BareLoop, Interleave, Rounds
    loops = {name: BareLoop(setup_of(s, keys), nanogpt=False) for name, keys in variants(list(cfg.options)).items()}
    rounds = Rounds(s, cfg.steps)
    run = Interleave(loops, rounds, cfg.warmup, cfg.steps)
    for _ in range(cfg.rounds + 1):  # the warm-up, then the rounds
        run()
    step = {n: statistics.median(r["seconds"] for r in rounds.log[n]) / cfg.steps for n in loops}
    base = step["block as configured"]
    return {n: {"tokens_per_s": s.batch * s.block / t, "step_s": t, "ratio": t / base} for n, t in step.items()}


def options_table(costs: dict) -> str:
    lines = ["| model | step (s) | tokens/s | step time vs the block |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {c['step_s']:.3f} | {c['tokens_per_s']:,.0f} | {c['ratio']:.2f}x |" for n, c in costs.items()]
    return "\n".join(lines)
