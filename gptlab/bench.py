"""Speed of one model in one process: training tokens/s through gptlab's Lightning path and a bare PyTorch loop,
their ratio, FLOP/s and MFU, peak memory, loader share, eval tokens/s, generation tokens/s with and without the
KV cache. Prints a table and writes JSON.

    python -m gptlab.bench model=30m                          # CPU, 8 x 512, fp32: about 8 minutes on 2 cores
    python -m gptlab.bench model=tiny rounds=2 steps=5        # seconds
    python -m gptlab.bench model=30m measure=[lightning,bare] generate.repeats=0   # no nanoGPT reference, no sampling
    python -m gptlab.bench model=gpt2 trainer.precision=bf16-mixed trainer.compile=true data.num_workers=2   # a GPU
    python -m gptlab.bench model=30m synthetic=true out=/tmp/bench.json   # random tokens: no prepared dataset needed
    python -m gptlab.bench model=30m peak_flops=2.5e11                    # MFU against a peak you know
    GPTLAB_JEMALLOC=0 python -m gptlab.bench model=30m         # glibc malloc instead of jemalloc (training/hardware.py)
    bash benchmarks/gpu.sh                                     # an NVIDIA GPU: 30m and gpt2, bf16 + compile, study ETA
    python -m gptlab.bench --help

The paths and how they alternate: gptlab/speed/timing.py. MFU = tokens/s x model.flops_per_token(T) / peak
(peak_flops=, else trainer.peak_flops, else derived by gptlab.training.hardware.device_peak; the table says how); an
MFU above 100% is refused, naming the peak, instead of printed. Loader share = time blocked fetching batches / round
time. Peak memory: on CUDA per path (weights, optimizer state and the round's transient peak); on CPU the process's
max RSS. The figures and the table: gptlab/speed/figures.py.
"""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from gptlab import cli
from gptlab.config import ConfigError

PRECISIONS = ("auto", "32-true", "bf16-mixed")


def check(cfg):
    """The bench's keys and the train keys it shares, refused before torch is imported; (config, preset, folder)."""
    from hydra.core.hydra_config import HydraConfig

    from gptlab.config.commands import BenchCommand
    from gptlab.config.derive import derive
    from gptlab.config.presets import prepare_command
    from gptlab.config.store import build, plain
    from gptlab.data.shards import check_dataset
    hc = HydraConfig.get()
    preset = hc.runtime.choices.get("model")
    data = plain(cfg)
    run = derive(build(BenchCommand, data), preset)
    t = run.trainer
    if run.derived.world_size != 1:
        raise ConfigError(f"trainer.devices={t.devices}, trainer.num_nodes={t.num_nodes}: the bench times one device "
                          "(trainer.devices=1, trainer.num_nodes=1)")
    if t.precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={t.precision!r}: the bench times {', '.join(PRECISIONS)}")
    if not run.synthetic:
        check_dataset(Path(run.paths.data_dir) / run.data.name,
                      f"{prepare_command(data['data'])}, or bench on random tokens with synthetic=true")
    return run, preset, Path(hc.runtime.output_dir)


def work(checked) -> dict:
    return bench(*checked)


def bench(cfg, preset: str | None, run_dir: Path) -> dict:
    """Time every path, then eval and generation; print the table, write the JSON."""
    import tempfile

    import torch

    from gptlab.fs import atomic_write_json
    from gptlab.speed.figures import device_name, summarize, table
    from gptlab.speed.timing import (
        Setup,
        eval_tokens_per_s,
        generation_tokens_per_s,
        quiet_lightning,
        synthetic_dataset,
        time_training,
    )
    from gptlab.training.hardware import allocator, flash_attention_ok

    quiet_lightning()
    batch = cfg.data.batch_size
    if cfg.options:
        return bench_options(cfg, batch, run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(cfg.paths.data_dir) / cfg.data.name
        if cfg.synthetic:
            val = max(cfg.eval_batches, 1) * batch * cfg.derived.block_size + 1
            data_dir = synthetic_dataset(Path(tmp), 1 << 21, val, cfg.seed)
        s = Setup(cfg, data_dir, batch)
        s.datamodule().check()  # a missing dataset fails here, naming the prepare command
        print(f"bench: model={preset} micro batch {batch} x {s.block} on {device_name(s)}, {s.precision}, compile "
              f"{'on' if s.compile else 'off'}, allocator {allocator()}; paths {list(cfg.measure)}, {cfg.warmup} "
              f"warm-up + {cfg.rounds} x {cfg.steps} timed steps each", flush=True)
        load_start = os.getloadavg()
        rounds, held, model, syncs = time_training(cfg, s, run_dir)
        extra = {"params": model.num_params(), "allocator": allocator(), "torch": torch.__version__,
                 "malloc_conf": os.environ.get("MALLOC_CONF") if allocator() == "jemalloc" else None,
                 "flash_sdpa": flash_attention_ok(s.device, torch.bfloat16 if "bf16" in s.precision else torch.float32),
                 "syncs": syncs, "data": "synthetic" if cfg.synthetic else cfg.data.name, "load_start": load_start}
        if cfg.eval_batches:
            extra["eval"] = eval_tokens_per_s(s, model, cfg.eval_batches)
        if cfg.generate.repeats:
            extra["generate"] = generation_tokens_per_s(s, model, cfg.generate.new_tokens, cfg.generate.repeats)
        result = summarize(cfg, s, preset, rounds, held, model.flops_per_token(s.block), extra)
    result["config"] = asdict(cfg)
    out = Path(cfg.out) if cfg.out else run_dir / "bench.json"
    atomic_write_json(out, result)
    print("\n" + table(result) + f"\nJSON: {out}")
    return result


def bench_options(cfg, batch: int, run_dir: Path) -> dict:
    """options=[...]: each model option's training step against the block as configured, one process."""
    from gptlab.fs import atomic_write_json
    from gptlab.speed.options import options_table, time_options
    from gptlab.speed.timing import Setup
    s = Setup(cfg, Path(cfg.paths.data_dir) / cfg.data.name, batch)
    s.datamodule().check()
    print(f"bench: model options, micro batch {batch} x {s.block}, {s.precision}, {cfg.rounds} x {cfg.steps} steps")
    costs = time_options(cfg, s)
    out = Path(cfg.out) if cfg.out else run_dir / "bench_options.json"
    atomic_write_json(out, {"options": costs, "config": asdict(cfg)})
    print("\n" + options_table(costs) + f"\nJSON: {out}")
    return costs


ENTRY = cli.Entry("bench", check, work)

if __name__ == "__main__":
    from gptlab.training.hardware import reexec_with_jemalloc
    reexec_with_jemalloc()  # CPU steps spend much of their time in glibc malloc; jemalloc when installed
    cli.run_app(ENTRY)
