"""The bench's timed paths: gptlab's Lightning training step, a bare PyTorch loop and a nanoGPT-style loop, on the
same weights and batches, alternating round by round; eval and generation speed. python -m gptlab.bench runs them.

    python -m gptlab.bench model=tiny rounds=2 steps=5        # seconds
    python -c "from gptlab.speed.timing import PATHS; print(PATHS)"

Training paths, each on its own copy of the same initial weights and the same batch stream (TrainWindows, seed):
  lightning  GPTModule under L.Trainer with the callbacks and CSV logger that `python -m gptlab.train` uses
             (validation and checkpoints off: they are not per-step costs)
  bare       forward and loss as training computes them (gptlab.model.loss.chunk_rows: chunked on CPUs, full logits
             on CUDA), backward, clip, AdamW step, LR schedule: a plain loop, same autocast and compile
  nanogpt    the bare loop as nanoGPT's train.py runs it: full [B, T, vocab] logits returned, then F.cross_entropy,
             and AdamW fused on CUDA only (nanoGPT's choice; gptlab fuses on CPU too)
After `warmup` untimed steps each, the paths alternate rounds of `steps` timed steps: Lightning drives, and a callback
runs the other paths' rounds between its own (their order reversed every other round), so load from other processes
hits all alike. CUDA syncs happen at round ends only. Generation: gptlab.model.sampling.sample from a 1-token prompt,
as `python -m gptlab.sample` runs it, cached and uncached runs alternating.
"""
from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from types import SimpleNamespace

PATHS = ("lightning", "bare", "nanogpt")


def synthetic_dataset(root: Path, train_tokens: int, val_tokens: int, seed: int) -> Path:
    """A dataset folder of uniformly random GPT-2 token ids, in the shard format prepare writes."""
    import numpy as np

    from gptlab.data.shards import DTYPE, VERSION, write_manifest, write_shard
    from gptlab.data.tokenizer import N_VOCAB, NAME
    rng, out, splits = np.random.default_rng(seed), root / "synthetic", {}
    for split, n in (("train", train_tokens), ("val", val_tokens)):
        entry = write_shard(out / f"{split}_000000.bin", rng.integers(0, N_VOCAB, n, dtype=np.uint16), NAME, N_VOCAB)
        splits[split] = {"docs": 1, "tokens": n, "shards": [entry]}
    write_manifest(out, {"format_version": VERSION, "tokenizer": NAME, "vocab_size": N_VOCAB, "dtype": DTYPE,
                         "name": "synthetic", "source": "synthetic", "splits": splits})
    return out


class Setup:
    """What every path shares: device, precision, compile, initial weights, batch stream, optimizer config."""

    def __init__(self, cfg, data_dir: Path, batch: int):
        import torch

        from gptlab.config import GPTConfig
        from gptlab.model.gpt import GPT
        from gptlab.optim.schedule import Schedule
        from gptlab.training.hardware import cpu_fast_math, cuda_fast_math, use_compile, use_cuda
        from gptlab.training.trainer import precision
        self.cuda = use_cuda(cfg.trainer.accelerator)
        self.device = torch.device("cuda" if self.cuda else "cpu")
        cpu_fast_math()  # as gptlab.train runs: every path (nanoGPT-style included) with glibc malloc tuned
        if self.cuda:
            cuda_fast_math()
        else:
            torch.set_num_threads(cfg.trainer.threads or len(os.sched_getaffinity(0)))
        self.precision = precision(cfg.trainer.precision, self.device.type)
        self.compile = use_compile(cfg.trainer.compile, cfg.trainer.accelerator)
        self.model_cfg, self.optim_cfg, self.sched_cfg = asdict(cfg.model), dict(cfg.optim), dict(cfg.sched)
        self.schedule, self.grad_clip = Schedule.of(cfg.sched), cfg.trainer.grad_clip
        self.block = cfg.derived.block_size
        self.batch, self.data_dir, self.seed, self.num_workers = batch, data_dir, cfg.seed, cfg.data.num_workers
        self.max_steps = cfg.trainer.max_steps  # the schedule's length: warmup and decay as a real run has them
        self.val_tokens = max(cfg.eval_batches, 1) * batch * self.block
        torch.manual_seed(cfg.seed)
        self.state = GPT(GPTConfig(**self.model_cfg)).state_dict()

    def new_model(self):
        from gptlab.config import GPTConfig
        from gptlab.model.gpt import GPT
        model = GPT(GPTConfig(**self.model_cfg)).to(self.device)
        model.load_state_dict(self.state)
        return model

    def datamodule(self):
        from gptlab.data.datamodule import TokenDataModule
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
        import torch

        from gptlab.optim.optimizer import build_optimizer, lr_scheduler
        self.s, self.full_logits = s, nanogpt
        self.model = s.new_model()
        self.forward = torch.compile(self.model) if s.compile else self.model
        optim = {**s.optim_cfg, "fused": s.cuda} if nanogpt and "fused" in s.optim_cfg else s.optim_cfg
        self.optimizer = build_optimizer(optim, self.model)
        self.scheduler = lr_scheduler(self.optimizer, s.schedule, s.max_steps)
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
            if s.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
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


def run_lightning(s: Setup, others: Interleave, rounds: Rounds, cfg, run_dir: Path):
    """Lightning's fit drives: its steps are timed in rounds, and after its warm-up and each round the callback runs
    the other paths. Returns its model (for eval and generation), the bytes it holds between steps, and with
    sync_debug on CUDA the host-device syncs counted in its timed steps (else None)."""
    import warnings

    import lightning as L
    import torch

    from gptlab.run.records import AppendingCSVLogger
    from gptlab.training.module import GPTModule
    from gptlab.training.trainer import step_callbacks

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
        gradient_clip_val=s.grad_clip or None, logger=AppendingCSVLogger(run_dir), profiler=clock,
        callbacks=step_callbacks(tokens, module.model.flops_per_token(s.block),
                                 cfg.peak_flops or cfg.trainer.peak_flops, s.precision) + [Driver()],
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


def eval_tokens_per_s(s: Setup, model, n: int, rounds: int = 3) -> dict:
    """The same val tokens scored two ways, alternating `rounds` times (best of each): the validation path (the val
    DataLoader's batches of the micro batch through the no-grad forward and loss, as training validates) and
    gptlab.evaluation.perplexity (what `python -m gptlab.eval` runs), windows built from the raw tokens included."""
    import torch

    from gptlab.data.shards import first_tokens, open_split
    from gptlab.evaluation.perplexity import perplexity
    dm = s.datamodule()
    dm.val_tokens = n * s.batch * s.block  # the same tokens both ways
    loader = dm.val_dataloader()
    tokens = first_tokens(open_split(s.data_dir, "val"), n * s.batch * s.block + 1)
    model.eval()

    def validation() -> float:  # as Lightning's val loop runs it: the DataLoader's batches, inference mode
        s.sync()
        t0 = time.perf_counter()
        with torch.inference_mode(), s.autocast():
            for x, y, _ in islice(loader, n):
                model(x.to(s.device), y.to(s.device), return_logits=False)
        s.sync()
        return n * s.batch * s.block / (time.perf_counter() - t0)

    def evaluation() -> float:
        with s.autocast():
            return perplexity(model, tokens, s.block, None, s.batch, s.device)["tokens_per_s"]

    validation(), evaluation()  # warm-up
    runs = {"validation": [], "eval": []}
    for _ in range(rounds):
        runs["validation"].append(validation())
        runs["eval"].append(evaluation())
    model.train()
    best = {k: max(v) for k, v in runs.items()}
    return {"validation_tokens_per_s": best["validation"], "eval_tokens_per_s": best["eval"],
            "eval_vs_validation": best["eval"] / best["validation"], "rounds": runs}


def generation_tokens_per_s(s: Setup, model, new_tokens: int, repeats: int) -> dict:
    """Tokens/s of gptlab.model.sampling.sample with and without the KV cache: best of `repeats` alternating runs."""
    import torch
    from tqdm.auto import tqdm

    from gptlab.data.tokenizer import EOT, N_VOCAB
    from gptlab.model.sampling import sample
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


def quiet_lightning() -> None:
    """Lightning's INFO lines and its few-workers hint off; the bench's own first line says what they would."""
    import logging
    import warnings

    import lightning  # noqa: F401  (importing it sets its loggers to INFO, so it comes first)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")


def time_training(cfg, s: Setup, run_dir: Path):
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
