"""The output layer + cross-entropy, fused and chunked: the [B, T, vocab] logits never exist whole on CPUs.

    python benchmarks/loss_chunk.py        # full logits against chunk sizes (how CHUNK was picked)
    python -c "import torch; from gptlab.model.loss import chunked_cross_entropy as ce; \
               print(ce(torch.randn(8, 16), torch.randn(100, 16), torch.randint(0, 100, (8,))))"
"""
from __future__ import annotations

import torch

# Rows per chunk of the fused output layer + loss by device type, None = full logits then F.cross_entropy, as
# benchmarks/loss_chunk.py measured them for 30m/gpt2 widths: on 2 Zen 3 cores 1024 rows ran 1.06x full logits under
# jemalloc and 1.73x under glibc (256 rows: 0.90x, 1.42x); on an H200 compiled full logits ran 1.2x faster than
# compiled 8192-row chunks, in less memory (inductor fuses the fp32 upcast and softmax into one pass).
CHUNK = {"cpu": 1024, "cuda": None}


def chunk_rows(device: torch.device) -> int | None:
    """Rows per chunk of the fused loss on this device, None for the plain path."""
    return CHUNK.get(device.type, CHUNK["cpu"])


def _chunk_buffers(rows: int, vocab: int, mm: torch.dtype, device, slope: bool):
    """(logits, slope) buffers of [rows, vocab] fp32 that every chunk reuses, when the matmul is fp32 (else None:
    the chunk's logits are a cast copy anyway). A fresh [1024, 50304] block per chunk is 206 MB that glibc maps and
    the kernel zero-fills and page-faults in, twice a chunk with the softcap's slope (docs/speed.md)."""
    if mm != torch.float32:
        return None, None
    logits = torch.empty(rows, vocab, dtype=torch.float32, device=device)
    return logits, torch.empty_like(logits) if slope else None


def _nll_and_grads(h, w, targets, chunk: int, need_grad: bool, row_nll: torch.Tensor | None = None,
                   softcap: float | None = None):
    """(mean NLL, d/dh, d/dw) of (h @ w.T) against targets, a chunk of rows at a time; no gradients unless need_grad.
    Under autocast the three matmuls run in its dtype (bf16), as they would in the plain path; softmax and the sums
    stay fp32. row_nll, when given, receives each row's NLL (0 for ignored targets). softcap c: the logits are
    c tanh(z / c), and the gradient takes tanh's derivative 1 - (logit / c)^2."""
    valid = targets != -1
    n_valid = valid.sum().clamp(min=1)
    kind = h.device.type
    mm = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else h.dtype  # matmul dtype
    if mm == torch.float16:  # fp16 would flush the softmax/N gradients to zero (GradScaler scales only later)
        mm = torch.float32
    wm = w.to(mm)  # cast once, not per chunk
    wz = wm / softcap if softcap else wm  # softcap: z / c from the matmul itself, one pass fewer over the logits
    grad_h = torch.empty_like(h) if need_grad else None
    grad_w = torch.zeros_like(w, dtype=torch.float32) if need_grad else None
    total = torch.zeros((), dtype=torch.float32, device=h.device)
    with torch.autocast(kind, enabled=False):  # every dtype below is explicit
        rows = torch.arange(min(chunk, h.size(0)), device=h.device)
        ones = torch.ones((), device=h.device)
        logits_buf, slope_buf = _chunk_buffers(rows.numel(), w.size(0), mm, h.device, softcap and need_grad)
        for s in range(0, h.size(0), chunk):
            hs, ts, vs = h[s:s + chunk].to(mm), targets[s:s + chunk].clamp(min=0), valid[s:s + chunk]
            r, n = rows[:hs.size(0)], hs.size(0)
            logits = (hs @ wz.T).float() if logits_buf is None else torch.mm(hs, wz.T, out=logits_buf[:n])
            if softcap:  # logits = c tanh(z / c); dlogits/dz = 1 - tanh^2, one fused pass (addcmul)
                t = logits.tanh_()
                slope = (None if not need_grad else torch.addcmul(ones, t, t, value=-1) if slope_buf is None
                         else torch.addcmul(ones, t, t, value=-1, out=slope_buf[:n]))
                logits = t.mul_(softcap)
            target_logit = logits[r, ts]
            peak = logits.amax(dim=-1, keepdim=True)
            e = logits.sub_(peak).exp_()  # one pass of exp serves both the loss and its gradient
            total_exp = e.sum(dim=-1)
            nll = total_exp.log() + peak.squeeze(1) - target_logit
            kept = torch.where(vs, nll, 0.0)
            total += kept.sum()
            if row_nll is not None:
                row_nll[s:s + chunk] = kept
            if need_grad:  # d(sum nll)/d logits = softmax - onehot, rows of ignored targets zero
                g = e.mul_((vs.float() / n_valid / total_exp)[:, None])
                g[r, ts] -= vs.float() / n_valid
                if softcap:
                    g.mul_(slope)
                g = g.to(mm)
                grad_h[s:s + chunk] = g @ wm
                if mm == torch.float32:
                    grad_w.addmm_(g.T, hs)  # in place: no [V, C] temporary per chunk
                else:
                    grad_w += g.T @ hs
    return total / n_valid, grad_h, (grad_w.to(w.dtype) if need_grad else None)


class _ChunkedLinearCE(torch.autograd.Function):
    """The fused output layer + loss with its gradients computed in the forward pass (as Liger-Kernel's fused linear
    cross-entropy does), so the [N, V] logits never exist whole: memory and allocator traffic drop, FLOPs stay those
    of the plain path."""

    @staticmethod
    def forward(ctx, h, w, targets, chunk, softcap):
        loss, grad_h, grad_w = _nll_and_grads(h, w, targets, chunk, need_grad=True, softcap=softcap)
        ctx.save_for_backward(grad_h, grad_w)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out, grad_w * grad_out, None, None, None


def chunked_cross_entropy(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, chunk: int | None = None,
                          softcap: float | None = None):
    """F.cross_entropy(h @ w.T, targets, ignore_index=-1) without materialising all logits (softcap c: of
    c tanh(h @ w.T / c))."""
    chunk = chunk or chunk_rows(h.device) or h.size(0)
    if not (torch.is_grad_enabled() and (h.requires_grad or w.requires_grad)):  # evaluation: no gradient work
        with torch.no_grad():
            return _nll_and_grads(h, w, targets, chunk, need_grad=False, softcap=softcap)[0]
    return _ChunkedLinearCE.apply(h, w, targets, chunk, softcap)


def loss_and_row_nll(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, chunk: int | None = None,
                     softcap: float | None = None):
    """(mean NLL, each row's NLL with 0 for ignored targets), without gradients: the mean is the very number
    chunked_cross_entropy gives, and the rows let a caller score parts of a batch (the val halves) in the same pass."""
    chunk = chunk or chunk_rows(h.device) or h.size(0)
    rows = torch.empty(h.size(0), dtype=torch.float32, device=h.device)
    with torch.no_grad():
        return _nll_and_grads(h, w, targets, chunk, need_grad=False, row_nll=rows, softcap=softcap)[0], rows
