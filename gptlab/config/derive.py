"""A composed train config as the typed RunConfig, with every derived value worked out once: the device, the block
size, devices and world size, the micro batch (auto: the preset's tuned one), the accumulation, the tokens a step
and the kept checkpoints' steps. config.yaml records them (RunConfig.derived); readers take them from there. Imports
no torch.

    python -m gptlab.train data.global_batch=64 data.batch_size=8     # -> 8 micro batches accumulated per step
    python -m gptlab.train data.batch_size=auto model=30m             # the preset's measured micro batch (MICRO_BATCH)
"""
from __future__ import annotations

from dataclasses import replace

from omegaconf import DictConfig, OmegaConf

from gptlab.config.checks import require
from gptlab.config.schema import Derived, RunConfig
from gptlab.config.store import build, plain
from gptlab.devices import resolve_device, visible_gpus

# data.batch_size=auto: micro batch per model preset, (CPU, CUDA). CPU: what this repo's CPU runs use (tiny 4, 30m 8
# as the study), halved per GPT-2 size. CUDA, bf16 + flash attention + compile: measured on an H200 for 30m (64 x 512,
# 6.5 GB peak) and gpt2 (32 x 1024, 19 GB; benchmarks/results/h200-2026-11-28); the larger sizes are scaled from gpt2 to
# stay well inside an 80 GB card (estimates). A preset changed by overrides (model.n_layer=...) keeps its entry.
MICRO_BATCH = {"tiny": (4, 64), "30m": (8, 64), "30m_modern": (8, 64), "gpt2": (4, 32), "gpt2-medium": (2, 16),
               "gpt2-large": (1, 8), "gpt2-xl": (1, 4)}


def run_config(cfg: DictConfig | dict, preset: str | None = None) -> RunConfig:
    """The typed, checked RunConfig of a composed train config (or its plain dict), its derived values filled in.
    `preset` is the model preset data.batch_size=auto looks up (default: the recorded choices' model)."""
    data = plain(cfg)
    run = build(RunConfig, data)
    for key, why in run.required.items():
        require(OmegaConf.select(OmegaConf.create(data), key) is not None, f"{key} must be set: {why}")
    return derive(run, preset or run.choices.get("model"))


def derive(run: RunConfig, preset: str | None = None) -> RunConfig:
    """A new RunConfig with `derived` filled in (and data.batch_size=auto resolved), built and so checked whole: a
    RunConfig is never changed after its check() has run."""
    key = "device" if run.trainer.accelerator == run.device else "trainer.accelerator"  # the one the user set
    device = resolve_device(run.trainer.accelerator, key)
    block = run.model.block_size if run.data.block_size is None else run.data.block_size
    per_node = devices_per_node(run.trainer.devices, device)
    world = per_node * run.trainer.num_nodes
    micro = micro_batch(run, preset, device == "cuda", block, world)
    accum = accumulation(run.data.global_batch, run.data.global_batch_tokens, micro, block, world)
    tokens = accum * micro * block * world
    derived = Derived(device=device, block_size=block, devices=per_node, world_size=world, micro_batch=micro,
                      accumulation=accum, tokens_per_step=tokens, keep_steps=keep_steps(run, tokens))
    return replace(run, data=replace(run.data, batch_size=micro), derived=derived)


def micro_batch(run: RunConfig, preset: str | None, cuda: bool, block: int, world: int) -> int:
    """data.batch_size, or for auto the preset's tuned micro batch for this device type, lowered to the largest that
    divides the global batch per device, so accumulation reaches exactly the same global batch everywhere."""
    if run.data.batch_size != "auto":
        return run.data.batch_size
    require(preset in MICRO_BATCH, f"data.batch_size=auto: no tuned micro batch for model={preset} (known: "
            f"{', '.join(MICRO_BATCH)}); set data.batch_size to a number")
    tuned = MICRO_BATCH[preset][int(cuda)]
    seqs = run.data.global_batch or (run.data.global_batch_tokens or 0) // block
    per_device = seqs // world if seqs and seqs % world == 0 else 0
    return max(d for d in range(1, tuned + 1) if not per_device or per_device % d == 0)


def accumulation(seqs: int | None, toks: int | None, micro: int, block: int, devices: int) -> int:
    """Micro batches per optimizer step, from the global batch (sequences or tokens), micro batch and devices."""
    if toks:
        require(toks % block == 0, f"data.global_batch_tokens={toks} must be a multiple of the block size {block}")
        seqs = toks // block
    per_step = micro * devices
    seqs = seqs or per_step
    require(seqs % per_step == 0, f"data.global_batch={seqs} sequences must be a multiple of data.batch_size x "
            f"devices = {micro} x {devices} = {per_step}")
    return seqs // per_step


def devices_per_node(devices, device: str) -> int:
    """trainer.devices as a count: a number, a list's length, or every visible GPU for -1 and auto (1 on a CPU)."""
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, list):
        return len(devices)
    return 1 if device == "cpu" else max(visible_gpus(), 1)


def count(value) -> int | None:
    """A token count given as 51200 or '50K'; None when it is not one."""
    from gptlab.units import parse_count
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 1 else None
    try:
        n = parse_count(str(value))
    except ValueError:
        return None
    return int(n) if n >= 1 else None


def keep_steps(run: RunConfig, tokens_per_step: int) -> list[int]:
    """trainer.keep_tokens as optimizer steps: each budget's nearest eval step (the kept checkpoint is written right
    after its validation, so a branch starts from a scored point); refused when that falls outside the run."""
    every, last = run.trainer.eval_interval, run.trainer.max_steps
    steps = []
    for budget in run.trainer.keep_tokens:
        n = count(budget)
        require(n is not None, f"trainer.keep_tokens: {budget!r} is not a token count (51200 or 50K)")
        step = max(1, round(n / tokens_per_step / every)) * every
        require(step <= last, f"trainer.keep_tokens: {budget} is step {step}, past trainer.max_steps={last} "
                f"({last * tokens_per_step:,} tokens); keep budgets the run reaches")
        require(step not in steps, f"trainer.keep_tokens: {budget} falls on eval step {step}, as an earlier budget "
                f"does (trainer.eval_interval={every}, {tokens_per_step:,} tokens a step); space the budgets or lower "
                "trainer.eval_interval")
        steps.append(step)
    return sorted(steps)
