"""Output layer + cross-entropy, forward and backward: full logits then F.cross_entropy (nanoGPT) against gptlab's
fused chunked path at several chunk sizes, eager and compiled, on this device. It picks model.CHUNK per device.

    .venv/bin/python benchmarks/loss_chunk.py                          # CPU, fp32: 4096 rows (30m at 8 x 512)
    .venv/bin/python benchmarks/loss_chunk.py --chunks 256 1024 4096 --repeats 7
    python3 benchmarks/loss_chunk.py --rows 32768 --width 384 768 --compile --out /tmp/loss.json   # a GPU, bf16

Every variant gets the same inputs; times are medians of --repeats timed runs after 2 warm-ups, variants alternating
run by run so machine load hits all alike. Each is checked against a float64 reference of the loss and both
gradients (max relative error over the three). CUDA: bf16 autocast, TF32, peak memory per variant.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from gptlab.model.loss import CHUNK, chunk_rows, chunked_cross_entropy
from gptlab.training.hardware import cuda_fast_math

p = argparse.ArgumentParser()
p.add_argument("--rows", type=int, default=4096, help="tokens per micro batch (B x T)")
p.add_argument("--width", type=int, nargs="+", default=[384], help="n_embd values")
p.add_argument("--vocab", type=int, default=50304)
p.add_argument("--chunks", type=int, nargs="+", default=[256, 1024, 4096], help="rows per chunk")
p.add_argument("--compile", action="store_true", help="also time each variant under torch.compile")
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--out", help="JSON file")
args = p.parse_args()

cuda = torch.cuda.is_available()
dev = torch.device("cuda" if cuda else "cpu")
if cuda:
    cuda_fast_math()


def full(h, w, t):
    return F.cross_entropy((h @ w.T).float(), t, ignore_index=-1)


def variants():
    out = {"full": full}
    out.update({f"chunk {c}": (lambda h, w, t, c=c: chunked_cross_entropy(h, w, t, c)) for c in args.chunks})
    if args.compile:
        out.update({f"{k} compiled": torch.compile(f) for k, f in list(out.items())})
    return out


def step(fn, h, w, t):
    h.grad = w.grad = None
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
        loss = fn(h, w, t)
    loss.backward()
    return loss


def sync():
    if cuda:
        torch.cuda.synchronize()


def rel_err(got, ref):
    return ((got.double() - ref).norm() / ref.norm().clamp(min=1e-30)).item()


rows = []
for width in args.width:
    torch.manual_seed(0)
    h = torch.randn(args.rows, width, device=dev, requires_grad=True)
    w = (0.02 * torch.randn(args.vocab, width, device=dev)).requires_grad_()
    t = torch.randint(0, args.vocab, (args.rows,), device=dev)
    t[::97] = -1  # some ignored targets, as padded chat batches have
    h64, w64 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.cross_entropy(h64 @ w64.T, t, ignore_index=-1)
    ref.backward()
    fns, times, mem, err = variants(), {}, {}, {}
    for name, fn in fns.items():  # warm-up (compiles), correctness, peak memory
        for _ in range(2):
            loss = step(fn, h, w, t)
        err[name] = max(rel_err(loss, ref.detach()), rel_err(h.grad, h64.grad), rel_err(w.grad, w64.grad))
        if cuda:
            sync()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step(fn, h, w, t)
            sync()
            mem[name] = (torch.cuda.max_memory_allocated() - base) / 1e9
    for r in range(args.repeats):
        for name, fn in (fns.items() if r % 2 else reversed(fns.items())):
            sync()
            t0 = time.perf_counter()
            step(fn, h, w, t)
            sync()
            times.setdefault(name, []).append(time.perf_counter() - t0)
    flops = 6 * args.rows * width * args.vocab  # forward matmul + two backward matmuls
    for name in fns:
        s = statistics.median(times[name])
        rows.append({"width": width, "rows": args.rows, "variant": name, "median_s": s, "best_s": min(times[name]),
                     "tflops": flops / s / 1e12, "vs_full": statistics.median(times["full"]) / s,
                     "transient_gb": mem.get(name), "max_rel_err": err[name]})

device = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
print(f"\nloss head on {device}, torch {torch.__version__}, {'bf16 autocast' if cuda else 'fp32'}, "
      f"{args.rows} rows x vocab {args.vocab}; gptlab.model.loss.chunk_rows here: {chunk_rows(dev)} (CHUNK = {CHUNK})")
print("| n_embd | variant | median ms | best ms | TFLOP/s | speed vs full | transient GB | max rel err |\n"
      "|---:|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    gb = "n/a" if r["transient_gb"] is None else f"{r['transient_gb']:.2f}"
    print(f"| {r['width']} | {r['variant']} | {1e3 * r['median_s']:.1f} | {1e3 * r['best_s']:.1f} | {r['tflops']:.2f} "
          f"| {r['vs_full']:.2f}x | {gb} | {r['max_rel_err']:.1e} |")
if args.out:
    with open(args.out, "w") as f:
        json.dump({"device": device, "torch": torch.__version__, "rows": rows}, f, indent=2)
