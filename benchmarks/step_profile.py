"""Where a CPU training step's time goes: torch.profiler over a few steps of the model, its self time grouped by kind
(matmuls, attention, the fused loss's elementwise passes, norms and activations, the optimizer, the rest), and the
FLOP/s the matmuls alone reach against the derived peak: the gap between a step's MFU and the peak, accounted.

    .venv/bin/python benchmarks/step_profile.py                          # 30m, 8 x 512, fp32, every core
    .venv/bin/python benchmarks/step_profile.py --batch 2 --steps 2      # quicker
    .venv/bin/python benchmarks/step_profile.py --set pos=rope --set logit_softcap=30 --no-flush   # subnormals kept
"""
import argparse
import time
from collections import defaultdict

import torch
import yaml
from torch.profiler import ProfilerActivity, profile

from gptlab.config import GPTConfig
from gptlab.model.gpt import GPT
from gptlab.training.hardware import cpu_fast_math, this_cpu_peak

KINDS = (("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::addmm_", "aten::linear", "aten::matmul")),
         ("attention", ("scaled_dot_product", "flash_attention")),
         ("optimizer", ("adamw", "_foreach", "muon", "Optimizer")),
         ("norm, activation", ("layer_norm", "rms_norm", "gelu", "relu", "silu", "tanh", "pow")),
         ("loss elementwise", ("exp", "amax", "sub_", "sum", "log", "addcmul", "index", "where", "mul_")),
         ("memory", ("fill_", "copy_", "zero_", "empty", "clone", "cat", "contiguous", "to")))

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=8, help="sequences a micro batch (30m's CPU micro batch is 8)")
p.add_argument("--steps", type=int, default=3, help="profiled steps, after one unprofiled")
p.add_argument("--set", action="append", default=[], help="a model option key=value (repeatable)")
p.add_argument("--no-flush", action="store_true", help="keep subnormal floats (gptlab.train flushes them)")
args = p.parse_args()

if not args.no_flush:
    cpu_fast_math()
keys = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}  # 30 -> 30, true -> True
cfg = GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=512, vocab_size=50304, bias=False, dropout=0.0, **keys)
torch.manual_seed(0)
model = GPT(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=6e-4, fused=True)
x, y = (torch.randint(0, 50257, (args.batch, 512)) for _ in range(2))


def step():
    _, loss = model(x, y, return_logits=False)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


step()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    began = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - began
by_kind, others = defaultdict(float), []
for e in prof.key_averages():
    kind = next((k for k, names in KINDS if any(n.lower() in e.key.lower() for n in names)), "other")
    by_kind[kind] += e.self_cpu_time_total / 1e6
    if kind == "other":
        others.append((e.self_cpu_time_total / 1e6, e.key))
total = sum(by_kind.values())
peak = this_cpu_peak()
tokens = args.steps * args.batch * 512
flops = tokens * model.flops_per_token(512)
mfu = flops / seconds / peak.flops
print(f"30m {args.batch} x 512, {torch.get_num_threads()} threads, subnormals {'kept' if args.no_flush else 'flushed'}"
      f"{', ' + ' '.join(args.set) if args.set else ''}: {tokens / seconds:,.0f} tokens/s, MFU {mfu:.1%} of "
      f"{peak.flops:.3g} FLOP/s ({peak.how}); profiled self time {total:.2f} s of {seconds:.2f} s")
print("| kind | seconds | share |\n|---|---:|---:|")
for kind, s in sorted(by_kind.items(), key=lambda kv: -kv[1]):
    print(f"| {kind} | {s:.2f} | {s / total:.1%} |")
print("largest in other: " + ", ".join(f"{k} {t:.2f} s" for t, k in sorted(others, reverse=True)[:4]))
print(f"if every matmul ran at the peak and all else took no time: the step's FLOPs at "
      f"{flops / (by_kind['matmul'] or 1e-9) / peak.flops:.0%} of the peak in the matmuls' own time")
