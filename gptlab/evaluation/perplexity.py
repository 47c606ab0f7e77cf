"""Perplexity and bits per byte of a GPT on a token sequence, in fixed or strided windows.

    python -m gptlab.eval model=hf:gpt2 ctx=1024 stride=512      # the command line over this module (gptlab/eval.py)
    python -c "from gptlab.evaluation.perplexity import perplexity; from gptlab import load_model; import numpy as np; \
               m, _ = load_model('hf:gpt2'); print(perplexity(m, np.arange(2049) % 50000, ctx=1024))"

Of n + 1 tokens, every token but the first is predicted exactly once: n tokens are scored. Windows hold ctx
inputs; non-overlapping by default (stride = ctx); with stride < ctx each window after the first scores only its
last `stride` tokens, as the transformers docs "Perplexity of fixed-length models" do (the last window may be
shorter). Reported: loss (token-mean NLL, nats), ppl = exp(loss), bpb = sum NLL / ln 2 / bytes, where bytes are the
UTF-8 bytes of the scored tokens' text (<|endoftext|> separates documents and counts 0 bytes). Log-probs use only
the 50257 real GPT-2 logits.
"""
from __future__ import annotations

import math
import time
from itertools import takewhile

import numpy as np
import torch
from tqdm import tqdm

from gptlab.data.tokenizer import EOT, N_VOCAB, get_tokenizer
from gptlab.model.checkpoint import check_compatible


def windows(n: int, ctx: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """(begin, end, scored) over n (input, target) pairs: inputs [begin, end), its last `scored` targets
    scored; every target exactly once (the transformers docs' loop)."""
    stride = stride or ctx
    if not 0 < stride <= ctx:
        raise ValueError(f"stride must be in [1, ctx={ctx}], got {stride}")
    out, prev = [], 0
    for begin in range(0, n, stride):
        end = min(begin + ctx, n)
        out.append((begin, end, end - prev))
        prev = end
        if end == n:
            break
    return out


def text_bytes(ids) -> int:
    """UTF-8 bytes of the text the tokens decode to; EOT separates documents and is no text: 0 bytes."""
    ids = np.asarray(ids, dtype=np.int64)
    return len(get_tokenizer().decode_bytes(ids[ids != EOT].tolist()))


def bits_per_byte(nll_sum: float, nbytes: int) -> float:
    return nll_sum / math.log(2) / nbytes


def perplexity(model, tokens, ctx: int | None = None, stride: int | None = None, batch_size: int = 8,
               device=None, progress: bool = False, keep=None) -> dict:
    """Score tokens[1:] given what precedes each within windows of ctx; dict(loss, ppl, tokens, nll_sum, bytes,
    bpb, tokens_per_s). tokens: a 1-D array or tensor of GPT-2 ids; keep: a 0/1 mask of the same length (the
    chat loss mask), only the targets it marks are scored; model in eval mode (as load_model gives). The loss is
    the model's own (its forward with targets), so a run's validation and this agree to float rounding."""
    tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    keep = torch.ones(len(tokens), dtype=torch.bool) if keep is None else torch.as_tensor(np.asarray(keep)).bool()
    ctx = ctx or model.config.block_size
    check_compatible(model, N_VOCAB, ctx)
    if tokens.ndim != 1 or len(tokens) < 2 or keep.shape != tokens.shape:
        raise ValueError(f"need a 1-D sequence of at least 2 tokens (and a mask as long), got {tuple(tokens.shape)}")
    device = device or model.lm_head.weight.device
    wins = windows(len(tokens) - 1, ctx, stride)
    scored = torch.zeros(len(tokens), dtype=torch.bool)
    for _, e, k in wins:  # each target once: the last k of its window
        scored[e - k + 1:e + 1] = True
    scored &= keep
    scored[0] = False
    t0 = time.perf_counter()
    bar = tqdm(total=len(tokens) - 1, unit="tok", unit_scale=True, desc="perplexity", disable=not progress)
    nll = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode():  # as Lightning validates: no autograd bookkeeping at all
        for x, y in _batches(tokens, keep, wins, batch_size, bool(keep.all())):
            y = y.to(device)
            loss = model(x.to(device), y, return_logits=False)[1]  # mean over targets != -1
            nll += loss.double() * (y != -1).sum()  # as the validation metric sums it (TokenNLL); no host sync
            bar.update(y.numel())
    bar.close()
    nll, n = float(nll), int(scored.sum())
    if n == 0:
        raise ValueError("no target to score: the loss mask keeps none of these tokens")
    nbytes = text_bytes(tokens[scored])
    return {"loss": nll / n, "ppl": math.exp(nll / n), "tokens": n, "nll_sum": nll, "bytes": nbytes,
            "bpb": bits_per_byte(nll, nbytes) if nbytes else float("nan"),
            "tokens_per_s": n / (time.perf_counter() - t0)}


def _batches(tokens, keep, wins, batch_size: int, keep_all: bool):
    """(inputs [B, w], targets [B, w]) for runs of same-width windows; targets not scored are -1."""
    i = 0
    while i < len(wins):
        width = wins[i][1] - wins[i][0]  # a batch holds windows of one length: all but maybe the last
        batch = list(takewhile(lambda w, width=width: w[1] - w[0] == width, wins[i:i + batch_size]))
        x = torch.stack([tokens[b:e] for b, e, _ in batch])
        y = torch.stack([tokens[b + 1:e + 1] for b, e, _ in batch])
        for r, (_, _, k) in enumerate(batch):  # only each window's last k targets are its own
            if k < width:
                y[r, :width - k] = -1
        if not keep_all:
            y = y.masked_fill(~torch.stack([keep[b + 1:e + 1] for b, e, _ in batch]), -1)
        i += len(batch)
        yield x, y
