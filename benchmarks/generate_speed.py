"""Generation speed of the 30m model with the KV cache and without it (nanoGPT: the whole context every token).

    python benchmarks/generate_speed.py                              # cuda if available, else cpu; float32
    python benchmarks/generate_speed.py --device cuda --dtype bfloat16 --repeats 5
    python benchmarks/generate_speed.py --device cpu --threads 2 --repeats 1     # the uncached runs take minutes

model=30m (GPTConfig(6, 6, 384, 512, 50304, bias=False)), random init. Each run is gptlab.sample.sample from a
one-token prompt for --new tokens (512: the whole context) at temperature 0.8, top_k 200, never stopping at
<|endoftext|>: the path `python -m gptlab.sample` streams, a .item() per token included. After a short warm-up of
each, cached and uncached runs alternate, so load from other processes hits both alike; best and median tokens/s
of N runs each, and the ratio of the bests.
"""
import argparse
import statistics
import time

import torch

from gptlab.model import GPT, GPTConfig
from gptlab.sample import sample
from gptlab.tokenizer import EOT, get_tokenizer

p = argparse.ArgumentParser()
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
p.add_argument("--new", type=int, default=512, help="tokens generated per run")
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--threads", type=int, default=None, help="torch CPU threads; default torch's choice")
args = p.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)

enc = get_tokenizer()
torch.manual_seed(1337)
model = GPT(GPTConfig(6, 6, 384, 512, 50304, bias=False)).to(args.device, getattr(torch, args.dtype)).eval()


def sync():
    if torch.device(args.device).type == "cuda":
        torch.cuda.synchronize()


def tokens_per_s(use_cache: bool, new: int) -> float:
    gen = torch.Generator(device=args.device).manual_seed(0)  # same draws for both: same sequence, same work
    sync()
    t0 = time.perf_counter()
    out = sample(model, enc, [EOT], new, 0.8, 200, generator=gen, stop_at_eot=False, use_cache=use_cache)
    sync()
    assert len(out) == new
    return new / (time.perf_counter() - t0)


for use_cache in (True, False):  # warm-up: kernels, allocator, lazy init
    tokens_per_s(use_cache, 8)
runs = {True: [], False: []}
for _ in range(args.repeats):
    for use_cache in (True, False):
        runs[use_cache].append(tokens_per_s(use_cache, args.new))

print(f"30m ({model.num_params() / 1e6:.2f}M params), {args.device} {args.dtype}, threads {torch.get_num_threads()}, "
      f"1-token prompt, {args.new} new tokens, {args.repeats} runs each")
for use_cache, name in ((True, "KV cache"), (False, "no cache")):
    r = runs[use_cache]
    print(f"{name:>9}: best {max(r):8.1f} tok/s   median {statistics.median(r):8.1f} tok/s")
print(f"    ratio: {max(runs[True]) / max(runs[False]):.2f}x (best cached / best uncached)")
