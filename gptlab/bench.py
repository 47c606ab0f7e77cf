"""Speed of one model in one process: training tokens/s through gptlab's Lightning path and a bare PyTorch loop,
their ratio, FLOP/s and MFU, peak memory, loader share, eval tokens/s, generation tokens/s with and without the
KV cache. Prints a table and writes JSON.

    python -m gptlab.bench model=30m                          # CPU, 8 x 512, fp32: about 8 minutes on 2 cores
    python -m gptlab.bench model=tiny rounds=2 steps=5        # seconds
    python -m gptlab.bench model=30m measure=[lightning,bare] generate.repeats=0   # no nanoGPT reference, no sampling
    python -m gptlab.bench model=gpt2 trainer.precision=bf16-mixed trainer.compile=true data.num_workers=2   # a GPU
    python -m gptlab.bench model=30m synthetic=true out=/tmp/bench.json   # random tokens: no prepared dataset needed
    python -m gptlab.bench model=30m trainer.peak_flops=2.5e11            # MFU against a peak you state
    GPTLAB_JEMALLOC=0 python -m gptlab.bench model=30m         # glibc malloc instead of jemalloc (gptlab.perf)
    bash benchmarks/gpu.sh                                     # an NVIDIA GPU: 30m and gpt2, bf16 + compile, study ETA

Training paths, each on its own copy of the same initial weights and the same batch stream (TrainWindows, seed):
  lightning  GPTModule under L.Trainer with the callbacks and CSV logger that `python -m gptlab.train` uses
             (validation and checkpoints off: they are not per-step costs)
  bare       forward and loss as training computes them (gptlab.model.chunk_rows: chunked on CPUs, full logits on
             CUDA), backward, clip, AdamW step, LR schedule: a plain loop, same autocast and compile
  nanogpt    the bare loop as nanoGPT's train.py runs it: full [B, T, vocab] logits returned, then F.cross_entropy,
             and AdamW fused on CUDA only (nanoGPT's choice; gptlab fuses on CPU too)
After `warmup` untimed steps each, the paths alternate rounds of `steps` timed steps: Lightning drives, and a callback
runs the other paths' rounds between its own (their order reversed every other round), so load from other processes
hits all alike. Reported per path: median and best tokens/s over rounds, CPU seconds per step (the work done, which
other processes hardly move); ratios round by round (median and best). CUDA syncs happen at round ends only.
MFU = tokens/s x model.flops_per_token(T) / peak (trainer.peak_flops, else gptlab.callbacks.peak_flops). Loader
share = time blocked fetching batches / round time. Peak memory: on CUDA per path (its weights and optimizer state +
the round's transient peak); on CPU the process's max RSS. Eval: no-grad forward and loss on val windows.
Generation: gptlab.sample.sample from a 1-token prompt, as `python -m gptlab.sample` runs it (fp32 weights, a .item()
per token), cached and uncached runs alternating.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from contextlib import nullcontext
from itertools import cycle, islice
from pathlib import Path
from types import SimpleNamespace

import hydra
from omegaconf import DictConfig, OmegaConf

from gptlab.config import ConfigError, human, resolve_micro_batch, validate
from gptlab.perf import reexec_with_jemalloc

PATHS = ("lightning", "bare", "nanogpt")
PRECISIONS = ("auto", "32-true", "bf16-mixed")
def fail(msg: str):
    raise ConfigError(msg)


def check(cfg: DictConfig) -> None:
    """The bench's own keys; train keys go through gptlab.config.validate. Raises ConfigError naming the key."""
    measure = list(cfg.measure)
    if not measure or len(set(measure)) != len(measure) or not set(measure) <= set(PATHS):
        fail(f"measure={measure} must be distinct names out of {list(PATHS)}")
    for key, low in (("warmup", 1), ("steps", 1), ("rounds", 1), ("eval_batches", 0), ("generate.new_tokens", 1),
                     ("generate.repeats", 0), ("project_tokens", 0)):
        v = OmegaConf.select(cfg, key)
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            fail(f"{key}={v!r} must be an integer >= {low}")
    for key in ("synthetic", "sync_debug"):
        if not isinstance(cfg[key], bool):
            fail(f"{key}={cfg[key]!r} must be true or false")
    if str(cfg.trainer.devices) != "1" or cfg.trainer.num_nodes != 1:
        fail(f"trainer.devices={cfg.trainer.devices}, trainer.num_nodes={cfg.trainer.num_nodes}: the bench times one "
             "device (trainer.devices=1, trainer.num_nodes=1)")
    if cfg.trainer.precision not in PRECISIONS:
        fail(f"trainer.precision={cfg.trainer.precision!r}: the bench times {', '.join(PRECISIONS)}")


def synthetic_dataset(root: Path, train_tokens: int, val_tokens: int, seed: int) -> Path:
    """A dataset folder of uniformly random GPT-2 token ids, in the shard format prepare writes."""
    import numpy as np
    from gptlab.shards import DTYPE, VERSION, write_manifest, write_shard
    from gptlab.tokenizer import NAME, N_VOCAB
    rng, out, splits = np.random.default_rng(seed), root / "synthetic", {}
    for split, n in (("train", train_tokens), ("val", val_tokens)):
        entry = write_shard(out / f"{split}_000000.bin", rng.integers(0, N_VOCAB, n, dtype=np.uint16), NAME, N_VOCAB)
        splits[split] = {"docs": 1, "tokens": n, "shards": [entry]}
    write_manifest(out, {"format_version": VERSION, "tokenizer": NAME, "vocab_size": N_VOCAB, "dtype": DTYPE,
                         "name": "synthetic", "source": "synthetic", "splits": splits})
    return out


class Setup:
    """What every path shares: device, precision, compile, initial weights, batch stream, optimizer config."""

    def __init__(self, cfg: DictConfig, data_dir: Path, batch: int):
        import torch
        from gptlab.config import GPTConfig, OptimConfig, SchedConfig
        from gptlab.model import GPT
        from gptlab.perf import cuda_fast_math, use_compile, use_cuda
        from gptlab.train import precision
        self.cuda = use_cuda(cfg.trainer.accelerator)
        self.device = torch.device("cuda" if self.cuda else "cpu")
        if self.cuda:
            cuda_fast_math()
        else:
            torch.set_num_threads(cfg.trainer.threads or len(os.sched_getaffinity(0)))
        self.precision = precision(cfg)
        self.compile = use_compile(cfg.trainer.compile, cfg.trainer.accelerator)
        self.model_cfg, self.optim_cfg, self.sched_cfg = (OmegaConf.to_container(cfg[k])
                                                          for k in ("model", "optim", "sched"))
        self.optim, self.sched = OptimConfig(**self.optim_cfg), SchedConfig(**self.sched_cfg)
        self.block = cfg.data.block_size or cfg.model.block_size
        self.batch, self.data_dir, self.seed, self.num_workers = batch, data_dir, cfg.seed, cfg.data.num_workers
        self.max_steps = cfg.trainer.max_steps  # the schedule's length: warmup and decay as a real run has them
        self.val_tokens = max(cfg.eval_batches, 1) * batch * self.block
        torch.manual_seed(cfg.seed)
        self.state = GPT(GPTConfig(**self.model_cfg)).state_dict()

    def new_model(self):
        from gptlab.config import GPTConfig
        from gptlab.model import GPT
        model = GPT(GPTConfig(**self.model_cfg)).to(self.device)
        model.load_state_dict(self.state)
        return model

    def datamodule(self):
        from gptlab.data import TokenDataModule
        return TokenDataModule(str(self.data_dir), self.block, self.batch, self.val_tokens, self.num_workers, self.seed)

    def autocast(self):
        import torch
        if self.precision == "bf16-mixed":  # as Lightning's bf16-mixed plugin does
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def sync(self):
        import torch
        if self.cuda:
            torch.cuda.synchronize()


def state_bytes(model, optimizer) -> int:
    """Bytes of the weights and the optimizer state: what a path holds between steps."""
    import torch
    tensors = list(model.parameters()) + [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    return sum(t.numel() * t.element_size() for t in tensors)


class BareLoop:
    """The training step without Lightning: forward, backward, clip, AdamW step, schedule, on its own model copy.
    nanogpt: as nanoGPT does it, all [B, T, vocab] logits then F.cross_entropy, AdamW fused on CUDA only."""

    def __init__(self, s: Setup, nanogpt: bool):
        import dataclasses
        import torch
        from gptlab.module import make_optimizer
        self.s, self.full_logits = s, nanogpt
        self.model = s.new_model()
        self.forward = torch.compile(self.model) if s.compile else self.model
        optim = dataclasses.replace(s.optim, fused=s.cuda) if nanogpt else s.optim
        self.optimizer, self.scheduler = make_optimizer(self.model, optim, s.sched, s.max_steps, s.device.type)
        self.batches = iter(s.datamodule().train_dataloader())

    def run(self, n: int) -> float:
        """n training steps; returns the seconds spent waiting for batches."""
        import torch
        waited, s = 0.0, self.s
        for _ in range(n):
            t = time.perf_counter()
            x, y = next(self.batches)
            waited += time.perf_counter() - t
            x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
            with s.autocast():
                _, loss = self.forward(x, y, return_logits=self.full_logits)
            loss.backward()
            if s.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.optim.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
        return waited

    def held_bytes(self) -> int:
        return state_bytes(self.model, self.optimizer)


class Rounds:
    """Timed rounds per path: wall seconds, CPU seconds of this process (the work done, whatever else runs on a
    shared machine), seconds waiting for batches, and on CUDA the transient memory peak."""

    def __init__(self, s: Setup, steps: int):
        self.s, self.steps, self.log, self.t0, self.cpu0, self.base = s, steps, {}, 0.0, 0.0, 0

    def start(self):
        import torch
        self.s.sync()
        if self.s.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()

    def stop(self, name: str, waited: float) -> None:
        import torch
        self.s.sync()
        seconds, cpu = time.perf_counter() - self.t0, time.process_time() - self.cpu0
        transient = torch.cuda.max_memory_allocated() - self.base if self.s.cuda else 0
        self.log.setdefault(name, []).append({"seconds": seconds, "cpu_s": cpu, "loader_s": waited,
                                              "transient_bytes": transient})
        from tqdm.auto import tqdm
        tqdm.write(f"round {len(self.log[name])}: {name:>9} {self.tokens_per_s(name)[-1]:12,.0f} tokens/s")

    def tokens_per_s(self, name: str) -> list[float]:
        return [self.steps * self.s.batch * self.s.block / r["seconds"] for r in self.log[name]]


class Interleave:
    """Runs the non-Lightning paths: their warm-up first, then one timed round each per call, in reversed order
    every other call (L B N, L N B, ...), so no path always follows the same one (caches, allocator state)."""

    def __init__(self, paths: dict, rounds: Rounds, warmup: int, steps: int):
        self.paths, self.rounds, self.warmup, self.steps, self.calls = paths, rounds, warmup, steps, 0

    def __call__(self):
        order = list(self.paths.items())
        for name, path in order if self.calls % 2 else order[::-1]:
            if not self.calls:
                path.run(self.warmup)
                continue
            self.rounds.start()
            waited = path.run(self.steps)
            self.rounds.stop(name, waited)
        self.calls += 1


def loader_clock():
    """A Lightning profiler that only adds up the seconds spent fetching training batches (Lightning's own hook)."""
    from lightning.pytorch.profilers import Profiler

    class LoaderClock(Profiler):
        def __init__(self):
            super().__init__()
            self.total, self._t = 0.0, None

        def start(self, action_name: str) -> None:
            if action_name.endswith("train_dataloader_next"):
                self._t = time.perf_counter()

        def stop(self, action_name: str) -> None:
            if self._t is not None and action_name.endswith("train_dataloader_next"):
                self.total += time.perf_counter() - self._t
                self._t = None

        def summary(self) -> str:
            return ""

    return LoaderClock()


def run_lightning(s: Setup, others: Interleave, rounds: Rounds, cfg: DictConfig, run_dir: Path):
    """Lightning's fit drives: its steps are timed in rounds, and after its warm-up and each round the callback runs
    the other paths. Returns its model (for eval and generation), the bytes it holds between steps, and with
    sync_debug on CUDA the host-device syncs counted in its timed steps (else None)."""
    import warnings
    import lightning as L
    import torch
    from gptlab.train import step_callbacks
    from gptlab.logs import AppendingCSVLogger
    from gptlab.module import GPTModule

    tokens = s.batch * s.block
    module = GPTModule(model=s.model_cfg, optim=s.optim_cfg, sched=s.sched_cfg, max_steps=s.max_steps,
                       tokens_per_step=tokens, compile=s.compile)
    module.model.load_state_dict(s.state)
    clock = loader_clock()

    class Driver(L.Callback):
        seen, fetched = 0, 0.0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.seen += 1
            if self.seen < cfg.warmup or (self.seen - cfg.warmup) % cfg.steps:
                return
            if self.seen > cfg.warmup:
                sync_debug(False)
                rounds.stop("lightning", clock.total - self.fetched)
            others()
            if self.seen < trainer.max_steps:  # another Lightning round follows
                rounds.start()
                self.fetched = clock.total
                sync_debug(True)

    def sync_debug(on: bool):
        if cfg.sync_debug and s.cuda:
            torch.cuda.set_sync_debug_mode("warn" if on else 0)

    trainer = L.Trainer(
        accelerator=s.device.type, devices=1, precision=s.precision, max_steps=cfg.warmup + cfg.rounds * cfg.steps,
        gradient_clip_val=s.optim.grad_clip or None, logger=AppendingCSVLogger(run_dir), profiler=clock,
        callbacks=step_callbacks(tokens, module.model.flops_per_token(s.block), cfg.trainer.peak_flops,
                                 s.precision) + [Driver()],
        log_every_n_steps=cfg.trainer.log_every_n_steps, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, use_distributed_sampler=False,
        default_root_dir=str(run_dir))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, datamodule=s.datamodule())
    syncs = sum("synchroniz" in str(w.message) for w in caught) if cfg.sync_debug and s.cuda else None
    for w in caught:  # everything else is shown as usual
        if "synchroniz" not in str(w.message) and "does not have many workers" not in str(w.message):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return module.model, state_bytes(module.model, trainer.optimizers[0]), syncs


def eval_tokens_per_s(s: Setup, model, n: int) -> float:
    """No-grad forward and loss (the validation path) over n val batches of the micro batch."""
    import torch
    loader = s.datamodule().val_dataloader()
    batches = [(x.to(s.device), y.to(s.device)) for x, y in islice(cycle(loader), n + 1)]
    model.eval()
    with torch.no_grad(), s.autocast():
        model(*batches[0], return_logits=False)  # warm-up
        s.sync()
        t0 = time.perf_counter()
        for x, y in batches[1:]:
            model(x, y, return_logits=False)
        s.sync()
    model.train()
    return n * s.batch * s.block / (time.perf_counter() - t0)


def generation_tokens_per_s(s: Setup, model, new_tokens: int, repeats: int) -> dict:
    """Tokens/s of gptlab.sample.sample with and without the KV cache: best of `repeats` alternating runs each."""
    import torch
    from gptlab.sample import sample
    from gptlab.tokenizer import EOT, N_VOCAB
    from tqdm.auto import tqdm
    enc = SimpleNamespace(n_vocab=N_VOCAB)  # all sample() reads of the tokenizer: no BPE ranks needed

    def one(use_cache: bool, n: int) -> float:
        gen = torch.Generator(device=s.device).manual_seed(0)  # the same draws for both: same sequence, same work
        s.sync()
        t0 = time.perf_counter()
        out = sample(model, enc, [EOT], n, 0.8, 200, generator=gen, stop_at_eot=False, use_cache=use_cache)
        s.sync()
        assert len(out) == n
        return n / (time.perf_counter() - t0)

    model.eval()
    for use_cache in (True, False):  # warm-up: kernels, allocator, lazy init
        one(use_cache, min(8, new_tokens))
    runs = {True: [], False: []}
    for r in range(repeats):
        for use_cache in (True, False):
            runs[use_cache].append(one(use_cache, new_tokens))
            tqdm.write(f"generate {r + 1}/{repeats}: {'KV cache' if use_cache else 'no cache':>8} "
                       f"{runs[use_cache][-1]:10,.1f} tokens/s")
    model.train()
    cached, uncached = max(runs[True]), max(runs[False])
    return {"new_tokens": new_tokens, "repeats": repeats, "cached_tokens_per_s": cached,
            "uncached_tokens_per_s": uncached, "cached_runs": runs[True], "uncached_runs": runs[False],
            "kv_cache_speedup": cached / uncached}


def device_name(s: Setup) -> str:
    import torch
    if s.cuda:
        return torch.cuda.get_device_name(s.device)
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "CPU"
    return f"{model}, {torch.get_num_threads()} threads"


def peak(s: Setup, configured) -> tuple[float | None, str]:
    """(peak FLOP/s, where it comes from)."""
    from gptlab.callbacks import peak_flops
    if configured:
        return float(configured), "trainer.peak_flops"
    value = peak_flops(s.device, s.precision)
    if s.cuda:
        return value, f"dense table for {device_name(s)}" if value else f"unknown GPU {device_name(s)}"
    return value, f"{len(os.sched_getaffinity(0))} cores x clock x 32 FLOP/cycle (fp32 AVX2 FMA)"


def ratio(a: list[float], b: list[float], a_cpu: list[float], b_cpu: list[float]) -> dict:
    """Tokens/s a/b round by round (rounds alternate, so neighbours saw the same machine), and of the medians;
    by_cpu_time: the same from CPU seconds per round (b's over a's), which other processes' load hardly moves."""
    per_round, by_cpu = [x / y for x, y in zip(a, b)], [y / x for x, y in zip(a_cpu, b_cpu)]
    return {"median": statistics.median(per_round), "best": max(per_round), "of_medians":
            statistics.median(a) / statistics.median(b), "rounds": per_round,
            "by_cpu_time": {"median": statistics.median(by_cpu), "rounds": by_cpu}}


def summarize(cfg, s: Setup, preset, rounds: Rounds, held: dict, flops_per_token: int, extra: dict) -> dict:
    peak_value, peak_source = peak(s, cfg.trainer.peak_flops)
    train = {}
    for name in rounds.log:
        tps, log = rounds.tokens_per_s(name), rounds.log[name]
        med = statistics.median(tps)
        train[name] = {
            "tokens_per_s": med, "tokens_per_s_best": max(tps), "rounds_tokens_per_s": tps,
            "step_s": statistics.median(r["seconds"] for r in log) / cfg.steps,
            "cpu_s_per_step": statistics.median(r["cpu_s"] for r in log) / cfg.steps,
            "achieved_flops": med * flops_per_token, "mfu": med * flops_per_token / peak_value if peak_value else None,
            "loader_share": sum(r["loader_s"] for r in log) / sum(r["seconds"] for r in log),
            "peak_memory_gb": (held[name] + max(r["transient_bytes"] for r in log)) / 1e9 if s.cuda else None}
    out = {"model": preset, "params": extra.pop("params"), "micro_batch": s.batch, "block_size": s.block,
           "tokens_per_step": s.batch * s.block, "device": s.device.type, "device_name": device_name(s),
           "precision": s.precision, "compile": s.compile, "allocator": extra.pop("allocator"),
           "malloc_conf": extra.pop("malloc_conf"),
           "torch": extra.pop("torch"), "flash_sdpa": extra.pop("flash_sdpa"),
           "flops_per_token": flops_per_token, "peak_flops": peak_value, "peak_flops_source": peak_source,
           "warmup": cfg.warmup, "steps": cfg.steps, "rounds": cfg.rounds, "train": train}
    for a, b in (("lightning", "bare"), ("lightning", "nanogpt"), ("bare", "nanogpt")):
        if a in train and b in train:
            out[f"{a}_vs_{b}"] = ratio(train[a]["rounds_tokens_per_s"], train[b]["rounds_tokens_per_s"],
                                       [r["cpu_s"] for r in rounds.log[a]], [r["cpu_s"] for r in rounds.log[b]])
    main = train.get("lightning") or next(iter(train.values()))
    out["projection"] = {"tokens": cfg.project_tokens, "tokens_per_s": main["tokens_per_s"],
                         "hours": cfg.project_tokens / main["tokens_per_s"] / 3600}
    out["max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    out["load_avg"] = {"start": extra.pop("load_start"), "end": os.getloadavg()}  # other processes on a shared machine
    return {**out, **extra}


def table(r: dict) -> str:
    """The human-readable report."""
    gb = lambda v: "n/a" if v is None else f"{v:.2f} GB"
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"
    lines = [f"gptlab bench: model={r['model']} ({human(r['params'])} params), micro batch {r['micro_batch']} x "
             f"{r['block_size']}, {r['device_name']}, {r['precision']}, compile {'on' if r['compile'] else 'off'}, "
             f"allocator {r['allocator']}{' (' + r['malloc_conf'] + ')' if r['malloc_conf'] else ''}, "
             f"{r['rounds']} rounds x {r['steps']} steps per path",
             "", "| path | tokens/s (median) | best | step (s) | CPU s/step | TFLOP/s | MFU | loader share "
             "| peak memory |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in r["train"].items():
        lines.append(f"| {name} | {t['tokens_per_s']:,.0f} | {t['tokens_per_s_best']:,.0f} | {t['step_s']:.3f} | "
                     f"{t['cpu_s_per_step']:.2f} | "
                     f"{t['achieved_flops'] / 1e12:.3f} | {pct(t['mfu'])} | {pct(t['loader_share'])} | "
                     f"{gb(t['peak_memory_gb'])} |")
    lines.append("")
    for key in ("lightning_vs_bare", "lightning_vs_nanogpt", "bare_vs_nanogpt"):
        if key in r:
            q = r[key]
            lines.append(f"{key.replace('_vs_', ' / ')} tokens/s: {q['median']:.3f} median, {q['best']:.3f} best "
                         f"(rounds: {', '.join(f'{x:.3f}' for x in q['rounds'])}); by CPU time "
                         f"{q['by_cpu_time']['median']:.3f} median")
    lines.append(f"peak {r['peak_flops'] or 0:,.4g} FLOP/s ({r['peak_flops_source']}); "
                 f"{r['flops_per_token']:,} FLOPs per training token; max RSS {r['max_rss_gb']:.2f} GB")
    lines.append(f"load average (1, 5, 15 min) at start {', '.join(f'{x:.1f}' for x in r['load_avg']['start'])}, "
                 f"at end {', '.join(f'{x:.1f}' for x in r['load_avg']['end'])} on {os.cpu_count()} CPUs")
    if r.get("eval_tokens_per_s"):
        lines.append(f"eval (no grad): {r['eval_tokens_per_s']:,.0f} tokens/s")
    if g := r.get("generate"):
        lines.append(f"generation, {g['new_tokens']} new tokens: KV cache {g['cached_tokens_per_s']:,.1f} tokens/s, "
                     f"no cache {g['uncached_tokens_per_s']:,.1f} tokens/s, speedup {g['kv_cache_speedup']:.2f}x")
    if r.get("syncs") is not None:
        lines.append(f"host-device syncs in Lightning's timed steps: {r['syncs']} "
                     f"({r['syncs'] / (r['rounds'] * r['steps']):.2f} per step)")
    p = r["projection"]
    lines.append(f"projected wall time for {human(p['tokens'])} training tokens at {p['tokens_per_s']:,.0f} tokens/s: "
                 f"{p['hours']:.2f} h ({p['hours'] / 24:.2f} days)")
    return "\n".join(lines)


def quiet_lightning() -> None:
    """Lightning's INFO lines and its few-workers hint off; the bench's own first line says what they would."""
    import logging
    import warnings
    import lightning  # noqa: F401  (importing it sets its loggers to INFO, so it comes first)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")


def time_training(cfg: DictConfig, s: Setup, run_dir: Path):
    """Warm up and time every path in alternating rounds. Returns (rounds, bytes each path holds between steps,
    a model for eval and generation, Lightning's counted syncs or None)."""
    rounds, held, syncs = Rounds(s, cfg.steps), {}, None
    bare = {n: BareLoop(s, nanogpt=n == "nanogpt") for n in cfg.measure if n != "lightning"}
    others = Interleave(bare, rounds, cfg.warmup, cfg.steps)
    if "lightning" in cfg.measure:
        model, held["lightning"], syncs = run_lightning(s, others, rounds, cfg, run_dir)
        model.to(s.device)  # Lightning's teardown moved it back to the CPU
    else:
        for _ in range(cfg.rounds + 1):  # the warm-up, then the rounds
            others()
        model = next(iter(bare.values())).model
    held.update({n: p.held_bytes() for n, p in bare.items()})  # optimizer state exists after the first step
    rounds.log = {n: rounds.log[n] for n in cfg.measure}  # report in the configured order
    return rounds, held, model, syncs


def bench(cfg: DictConfig, preset: str | None, run_dir: Path) -> dict:
    import tempfile
    import torch
    from gptlab.assets import atomic_write_bytes
    from gptlab.perf import allocator, flash_attention_ok, use_cuda

    quiet_lightning()
    resolve_micro_batch(cfg, preset, use_cuda(cfg.trainer.accelerator))
    cfg = validate(cfg)
    batch = cfg.data.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(cfg.paths.data_dir) / cfg.data.name
        if cfg.synthetic:
            block = cfg.data.block_size or cfg.model.block_size
            data_dir = synthetic_dataset(Path(tmp), 1 << 21, max(cfg.eval_batches, 1) * batch * block + 1, cfg.seed)
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
            extra["eval_tokens_per_s"] = eval_tokens_per_s(s, model, cfg.eval_batches)
        if cfg.generate.repeats:
            extra["generate"] = generation_tokens_per_s(s, model, cfg.generate.new_tokens, cfg.generate.repeats)
        result = summarize(cfg, s, preset, rounds, held, model.flops_per_token(s.block), extra)
    result["config"] = OmegaConf.to_container(cfg, resolve=True)
    out = Path(cfg.out) if cfg.out else run_dir / "bench.json"
    atomic_write_bytes(out, (json.dumps(result, indent=2) + "\n").encode())
    print("\n" + table(result) + f"\nJSON: {out}")
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    hc = HydraConfig.get()
    from gptlab.shards import ShardError
    from gptlab.train import model_preset
    try:
        check(cfg)
        bench(cfg, model_preset(), Path(hc.runtime.output_dir))
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(2)
    except ShardError as e:
        print(f"data error: {e}; or bench on random tokens with synthetic=true", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    reexec_with_jemalloc()  # CPU steps spend much of their time in glibc malloc; jemalloc when installed
    main()
