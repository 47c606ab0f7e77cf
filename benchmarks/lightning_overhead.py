"""Training tokens/s through gptlab's Lightning path against a bare PyTorch loop, same model, batches, process.

    python benchmarks/lightning_overhead.py                          # model=30m, 8 x 512, fp32, CPU (minutes)
    python benchmarks/lightning_overhead.py --preset tiny --steps 30 --rounds 2

Both paths do forward (chunked loss), backward, clip, AdamW step and the schedule, on batches drawn by the same
TrainWindows stream from data/shakespeare. They alternate for --rounds rounds so drift on a shared machine hits
both; the figure is the ratio of median step times. Lightning runs with the CSV logger, the throughput and progress
callbacks, as `python -m gptlab.train` does (no checkpoints, no validation).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import yaml

from gptlab.callbacks import Progress, Throughput
from gptlab.data import TokenDataModule, TrainWindows
from gptlab.logs import AppendingCSVLogger
from gptlab.module import GPTModule
from gptlab.schedules import lr_at

ROOT = Path(__file__).resolve().parents[1]


class StepTimer(L.Callback):
    def __init__(self):
        self.times = []

    def on_train_batch_end(self, trainer, *args):
        self.times.append(time.perf_counter())


def lightning_steps(model_cfg, data_dir, batch, steps, log_dir, state):
    module = GPTModule(model_cfg, optim=dict(lr=6e-4), sched=dict(warmup_steps=10), max_steps=10_000,
                       tokens_per_step=batch * model_cfg["block_size"])
    module.model.load_state_dict(state)
    dm = TokenDataModule(str(data_dir), model_cfg["block_size"], batch, seed=0)
    timer = StepTimer()
    flops = module.model.flops_per_token()
    trainer = L.Trainer(accelerator="cpu", max_steps=steps + 2, gradient_clip_val=1.0, logger=AppendingCSVLogger(log_dir),
                        callbacks=[Throughput(batch * model_cfg["block_size"], flops), Progress(), timer],
                        log_every_n_steps=10, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    return [b - a for a, b in zip(timer.times[2:], timer.times[3:])]  # two warm-up steps dropped


def bare_steps(model_cfg, data_dir, batch, steps, state):
    from gptlab.model import GPT, GPTConfig
    from gptlab.shards import open_split
    model = GPT(GPTConfig(**model_cfg))
    model.load_state_dict(state)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=0.1), dict(params=rest, weight_decay=0.0)],
                            lr=6e-4, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, "cosine", 1.0, 10_000, 10))
    stream = TrainWindows([m.filename for m in open_split(data_dir, "train")], model_cfg["block_size"], batch, 0, 0)
    times = [time.perf_counter()]
    for k in range(steps + 2):
        x, y = stream.batch_at(k)
        _, loss = model(x, y, return_logits=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        times.append(time.perf_counter())
    return [b - a for a, b in zip(times[3:], times[4:])] or [times[-1] - times[-2]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="30m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per round and path")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default=os.environ.get("GPTLAB_DATA", "data") + "/shakespeare")
    args = ap.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    cfg = {k: v for k, v in yaml.safe_load((ROOT / "conf/model" / f"{args.preset}.yaml").read_text()).items()}
    torch.manual_seed(0)
    from gptlab.model import GPT, GPTConfig
    state = GPT(GPTConfig(**cfg)).state_dict()
    tokens = args.batch * cfg["block_size"]
    light, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            bare += bare_steps(cfg, args.data, args.batch, args.steps, state)
            light += lightning_steps(cfg, args.data, args.batch, args.steps, Path(tmp) / f"r{r}", state)
    lb, bb = statistics.median(light), statistics.median(bare)
    print(f"\nmodel={args.preset} micro batch {args.batch} x {cfg['block_size']}, fp32, {torch.get_num_threads()} threads")
    print(f"| path | median step (s) | tokens/s |\n|---|---|---|")
    print(f"| bare PyTorch loop | {bb:.3f} | {tokens / bb:,.0f} |")
    print(f"| gptlab (Lightning) | {lb:.3f} | {tokens / lb:,.0f} |")
    print(f"Lightning / bare tokens/s: {bb / lb:.3f}")


if __name__ == "__main__":
    main()
