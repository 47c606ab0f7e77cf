"""Batch arithmetic: block size, devices, micro batch and accumulation, each derived in one place. Imports no torch.

    python -m gptlab.train data.global_batch=64 data.batch_size=8     # -> 8 micro batches accumulated per step
    python -m gptlab.train data.batch_size=auto model=30m             # the preset's measured micro batch (MICRO_BATCH)
"""
from __future__ import annotations

from omegaconf import DictConfig

from gptlab.config.checks import require
from gptlab.devices import visible_gpus

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
    require(preset in MICRO_BATCH, f"data.batch_size=auto: no tuned micro batch for model={preset} (known: "
             f"{', '.join(MICRO_BATCH)}); set data.batch_size to a number")
    tuned = MICRO_BATCH[preset][int(cuda)]
    block = block_size(cfg)
    seqs = cfg.data.get("global_batch") or (cfg.data.get("global_batch_tokens") or 0) // block
    devices = world_size(cfg)
    per_device = seqs // devices if seqs and seqs % devices == 0 else 0
    cfg.data.batch_size = max(d for d in range(1, tuned + 1) if not per_device or per_device % d == 0)


def accumulation(cfg: DictConfig, devices: int) -> int:
    """Micro batches per optimizer step, from the global batch (sequences or tokens), micro batch and devices."""
    data = cfg.data
    block = block_size(cfg)
    seqs, toks = data.get("global_batch"), data.get("global_batch_tokens")
    require(not (seqs and toks), "set only one of data.global_batch (sequences) and data.global_batch_tokens")
    if toks:
        require(toks % block == 0, f"data.global_batch_tokens={toks} must be a multiple of the block size {block}")
        seqs = toks // block
    seqs = seqs or data.batch_size * devices
    per_step = data.batch_size * devices
    require(seqs % per_step == 0,
             f"data.global_batch={seqs} sequences must be a multiple of data.batch_size x devices = "
             f"{data.batch_size} x {devices} = {per_step}")
    return seqs // per_step


def block_size(cfg: DictConfig) -> int:
    """Tokens per training sequence: data.block_size, or the model's context when that is null."""
    block = cfg.data.get("block_size")
    return cfg.model.block_size if block is None else block


def world_size(cfg: DictConfig) -> int:
    """Ranks in the run: devices per node (-1 or auto: every visible GPU, at least 1) x nodes."""
    return devices_per_node(cfg) * int(cfg.trainer.get("num_nodes", 1))


def devices_per_node(cfg: DictConfig) -> int:
    """trainer.devices as a count: a number, a list's length, or every visible GPU for -1 and auto (1 on a CPU)."""
    devices = cfg.trainer.get("devices", 1)
    if isinstance(devices, int) and devices > 0:
        return devices
    if not isinstance(devices, (int, str)):  # a list of device ids
        return len(devices)
    on_cpu = cfg.trainer.get("accelerator", "auto") == "cpu"
    return 1 if on_cpu else max(visible_gpus(), 1)
