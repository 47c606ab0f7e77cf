"""Sampling speed: 16 samples of one prompt drawn by the plain model.generate loop (one sample at a time, KV cache)
against gptlab.evaluation.samples.generate at batch 1 and batch 16 (one generator a row, KV cache), in one
process, variants alternating repeat by repeat so machine load hits all alike.

    .venv/bin/python benchmarks/generation_speed.py                          # the make-train model's shape, random
    .venv/bin/python benchmarks/generation_speed.py --model runs/2026-12-01/21-15-15 --tokens 128 --repeats 5
    python3 benchmarks/generation_speed.py --model hf:gpt2 --device cuda    # a GPU

Prints tokens/s per variant (median of --repeats) and each one's speed-up over the plain loop.
"""
import argparse
import statistics
import time

import torch

from gptlab.evaluation.samples import generate
from gptlab.model.gpt import GPT, GPTConfig

p = argparse.ArgumentParser()
p.add_argument("--model", help="run folder, .ckpt or hf:<name>; default: a random model of the tiny preset's shape")
p.add_argument("--samples", type=int, default=16)
p.add_argument("--tokens", type=int, default=64, help="new tokens per sample (no early stop: <|endoftext|> is banned)")
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--device", default="cpu")
args = p.parse_args()

if args.model:
    from gptlab.model.load import load_model
    model, _ = load_model(args.model, args.device)
else:
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=64, block_size=64, vocab_size=50304, bias=False))
    model = model.to(args.device).eval()
prompt = [464, 2003, 286, 9552, 318]  # "The future of AI is"
prompts = [{"ids": prompt}]


def plain_loop():
    g = torch.Generator(device=args.device).manual_seed(0)
    x = torch.tensor([prompt], device=args.device)
    for _ in range(args.samples):
        model.generate(x, args.tokens, temperature=0.8, top_k=200, generator=g)


def batched(size):
    def run():
        generate(model, prompts, args.samples, args.tokens, 0.8, 200, None, seed=0, batch_size=size, n_vocab=50256)
    return run


variants = {"model.generate loop (batch 1)": plain_loop, "generate, batch 1": batched(1),
            f"generate, batch {args.samples}": batched(args.samples)}
times = {k: [] for k in variants}
with torch.no_grad():
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for k, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
tokens = args.samples * args.tokens
base = statistics.median(times["model.generate loop (batch 1)"])
print(f"{tokens} tokens per variant ({args.samples} samples x {args.tokens}), device {args.device}, "
      f"{torch.get_num_threads()} threads, median of {args.repeats}")
for k, ts in times.items():
    m = statistics.median(ts)
    print(f"  {k:32s} {tokens / m:10,.0f} tokens/s   {base / m:5.2f}x the plain loop")
