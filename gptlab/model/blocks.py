"""The transformer block and its parts, GPT-2's by default and the modern options the speedruns use, each off unless
its GPTConfig key turns it on: rotary positions, QK-norm, RMSNorm, ReLU² or SwiGLU MLPs, zero-initialised
projections. Module names are GPT-2's (attn.c_attn, mlp.c_fc, ln_1), so weights map by name.

    python -c "from gptlab import GPTConfig; from gptlab.model.blocks import Block; \
               print(Block(GPTConfig(n_layer=1, n_head=2, n_embd=32, pos='rope', qk_norm=True, mlp='swiglu'), 0))"

RoPE rotates each head's query and key by its position as Llama does (rotate_half: the first and second halves of
the head's channels are a pair), so a model with pos=rope, norm=rmsnorm and mlp=swiglu is Llama's function, and with
qk_norm Qwen3's (gptlab/model/convert.py exports them).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.config import GPTConfig
from gptlab.model.mup import Multipliers

RMS_EPS = 1e-6  # RMSNorm's epsilon, as Llama's and Qwen3's rms_norm_eps


def norm(cfg: GPTConfig, dim: int) -> nn.Module:
    """GPT-2's LayerNorm (with a bias when cfg.bias), or RMSNorm (a gain only)."""
    return RMSNorm(dim, eps=RMS_EPS) if cfg.norm == "rmsnorm" else nn.LayerNorm(dim, bias=cfg.bias)


def mlp_width(cfg: GPTConfig) -> int:
    """The MLP's hidden width: model.mlp_hidden, else 4 x n_embd, or for SwiGLU's three matrices 8/3 x n_embd
    rounded to a multiple of 8, so its parameters match the two-matrix MLPs'."""
    if cfg.mlp_hidden:
        return cfg.mlp_hidden
    return 8 * round(8 * cfg.n_embd / 3 / 8) if cfg.mlp == "swiglu" else 4 * cfg.n_embd


def rope_tables(cfg: GPTConfig, start: int, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, signed sin) [length, head_dim] for positions start .. start + length - 1, Llama's frequencies
    base^(-2i / head_dim) repeated over the two halves; the sine's first half negated, so that rotate() needs no
    negation pass over q and k (rotate_half(x) sin = cat(b, a) signed_sin)."""
    hd = cfg.n_embd // cfg.n_head
    inv = 1.0 / (cfg.rope_base ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd))
    angles = torch.outer(torch.arange(start, start + length, device=device, dtype=torch.float32), inv)
    sin = angles.sin()
    return torch.cat((angles, angles), dim=-1).cos().to(dtype), torch.cat((-sin, sin), dim=-1).to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, hd] rotated by its position: x cos + rotate_half(x) sin (Llama's apply_rotary_pos_emb), in three
    passes over x (a product, the halves swapped, one fused multiply-add) instead of five."""
    a, b = x.chunk(2, dim=-1)
    return torch.addcmul(x * cos, torch.cat((b, a), dim=-1), signed_sin)


class FusedRMSNorm(torch.autograd.Function):
    """RMSNorm over the last dim with ATen's fused forward and a backward in five passes: torch's own CPU backward is
    composed of about ten elementwise ops (3.5x LayerNorm's time over 8 x 512 x 384 floats; docs/speed.md)."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        y, rstd = torch.ops.aten._fused_rms_norm(x, [x.size(-1)], weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, rstd = ctx.saved_tensors
        xhat = x * rstd  # the normalised input, recomputed rather than kept
        gw = (gy * xhat).flatten(0, -2).sum(0) if ctx.needs_input_grad[1] else None
        g = gy * weight
        dot = (g * xhat).mean(-1, keepdim=True)  # d/dx of x rstd: rstd (g - xhat mean(g xhat))
        return g.sub_(xhat.mul_(dot)).mul_(rstd), gw, None


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm (same parameters and state dict) with FusedRMSNorm on the CPU, where autograd's backward is slow."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not torch.is_grad_enabled() or not hasattr(torch.ops.aten, "_fused_rms_norm"):
            return super().forward(x)
        return FusedRMSNorm.apply(x, self.weight, self.eps)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.n_head, self.n_embd, self.dropout, self.layer = cfg.n_head, cfg.n_embd, cfg.dropout, layer
        self.scale = Multipliers.of(cfg).attn_scale(cfg.n_embd // cfg.n_head)  # None: SDPA's 1/sqrt(d_head)
        if cfg.qk_norm:  # RMSNorm over each head's channels, before the rotation (Qwen3's q_norm, k_norm)
            self.q_norm = RMSNorm(cfg.n_embd // cfg.n_head, eps=RMS_EPS)
            self.k_norm = RMSNorm(cfg.n_embd // cfg.n_head, eps=RMS_EPS)

    def forward(self, x: torch.Tensor, cache=None, rope=None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.c_attn(x).split(self.n_embd, dim=2))
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        past = cache.pos if cache is not None else 0
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        mask = None
        if past and T > 1:  # a chunk after cached tokens: row i sees all the past and itself
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=(past == 0 and T > 1),
                                           dropout_p=self.dropout if self.training else 0.0, scale=self.scale)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class MLP(nn.Module):
    """gelu: GPT-2's (tanh approximation unless model.gelu=none); relu2: ReLU(x)^2 (Primer, modded-nanogpt);
    swiglu: SiLU(gate) x up, both halves of c_fc's output (Llama's gate_proj and up_proj)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        width, self.kind = mlp_width(cfg), cfg.mlp
        self.c_fc = nn.Linear(cfg.n_embd, 2 * width if cfg.mlp == "swiglu" else width, bias=cfg.bias)
        self.gelu = nn.GELU(approximate=cfg.gelu)  # GPT-2 used the tanh approximation
        self.c_proj = nn.Linear(width, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        h = self.c_fc(x)
        if self.kind == "relu2":
            h = F.relu(h).square()
        elif self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = self.gelu(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = norm(cfg, cfg.n_embd)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln_2 = norm(cfg, cfg.n_embd)
        self.mlp = MLP(cfg)
        self.branch = Multipliers.of(cfg).branch  # depth-muP's 1/sqrt(n_layer / base depth); 1 otherwise

    def forward(self, x, cache=None, rope=None):
        if self.branch != 1.0:
            x = x + self.branch * self.attn(self.ln_1(x), cache, rope)
            return x + self.branch * self.mlp(self.ln_2(x))
        x = x + self.attn(self.ln_1(x), cache, rope)
        return x + self.mlp(self.ln_2(x))
