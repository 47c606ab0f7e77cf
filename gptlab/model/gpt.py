"""A GPT-2 architecture decoder whose module names match GPT-2's, so weights map by name.

    python -c "from gptlab import GPT, GPTConfig; m = GPT(GPTConfig(6, 6, 384, 512, bias=False)); print(m.num_params())"

Public API: GPT(GPTConfig(...)); model(idx, targets=None) -> (logits, loss); model.num_params();
model.flops_per_token(); model.generate(idx, max_new_tokens, temperature, top_k, top_p) with a KV cache;
model.stream(...) yields those tokens one step at a time (gptlab.model.sampling draws them and prints text).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.config import GPTConfig
from gptlab.model.blocks import Block, norm, rope_tables
from gptlab.model.loss import chunk_rows, chunked_cross_entropy, loss_and_row_nll
from gptlab.model.mup import Multipliers, is_hidden
from gptlab.model.sampling import sample_next

__all__ = ["GPT", "GPTConfig", "KVCache"]


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to the context length."""

    def __init__(self, cfg: GPTConfig, batch: int, device, dtype):
        shape = (cfg.n_layer, batch, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0  # tokens already cached; advanced by GPT.forward after all layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        parts = dict(wte=nn.Embedding(cfg.vocab_size, cfg.n_embd))
        if cfg.pos == "learned":  # GPT-2's learned positions; rope rotates q and k instead (gptlab/model/blocks.py)
            parts["wpe"] = nn.Embedding(cfg.block_size, cfg.n_embd)
        parts.update(drop=nn.Dropout(cfg.dropout), h=nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer)),
                     ln_f=norm(cfg, cfg.n_embd))
        self.transformer = nn.ModuleDict(parts)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.transformer.wte.weight = self.lm_head.weight  # weight tying, as GPT-2
        self.mult = Multipliers.of(cfg)  # all 1 unless model.mup_base_width / mup_base_depth (gptlab.model.mup)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.mult.init_layers))
            if is_hidden(name) and self.mult.hidden_std != 1.0:  # muP: hidden init variance x base / width
                with torch.no_grad():
                    p.mul_(self.mult.hidden_std)
            if cfg.zero_init and (name.endswith("c_proj.weight") or name == "lm_head.weight"):
                nn.init.zeros_(p)  # modded-nanogpt: each branch (and an untied head) starts as nothing

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The readout's input [B, T, n_embd] for token ids [B, T]: the final norm's output, times muP's output
        multiplier base / width when model.mup_base_width is set."""
        T, start = idx.size(1), cache.pos if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        x, rope = self.transformer.wte(idx), None
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(torch.arange(start, start + T, dtype=torch.long, device=idx.device))
        else:
            rope = rope_tables(self.config, start, T, idx.device, x.dtype)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, cache, rope)
        if cache is not None:
            cache.pos += T
        x = self.transformer.ln_f(x)
        return x * self.mult.output if self.mult.output != 1.0 else x

    def forward(self, idx, targets=None, return_logits: bool = True):
        """(logits [B, T, vocab], mean cross-entropy or None). Targets of -1 are ignored.

        return_logits=False (training and eval) returns (None, loss); where chunk_rows(device) is set (CPUs) it
        computes the loss in chunks without materialising [B, T, vocab]."""
        h = self.hidden(idx)
        if targets is not None and not return_logits and chunk_rows(idx.device):
            return None, chunked_cross_entropy(h.flatten(0, 1), self.lm_head.weight, targets.flatten(),
                                               softcap=self.config.logit_softcap)
        logits = self.logits(h)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
        return (logits if return_logits else None), loss

    def window_nll(self, idx, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean cross-entropy as forward gives it, summed NLL of each window [B]) in one pass, no gradients."""
        h = self.hidden(idx)
        if chunk_rows(idx.device):
            loss, rows = loss_and_row_nll(h.flatten(0, 1), self.lm_head.weight, targets.flatten(),
                                          softcap=self.config.logit_softcap)
        else:
            rows = F.cross_entropy(self.logits(h).flatten(0, 1).float(), targets.flatten(), ignore_index=-1,
                                   reduction="none")
            loss = rows.sum() / (targets != -1).sum().clamp(min=1)
        return loss, rows.view(targets.shape).sum(dim=1)

    def logits(self, h: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
        """The output layer on readout inputs h [..., n_embd] (head: its weight in another dtype), with the logit
        softcap c tanh(z / c) when model.logit_softcap is set: the one place logits are made."""
        z = F.linear(h, self.lm_head.weight if head is None else head)
        c = self.config.logit_softcap
        return c * torch.tanh(z / c) if c else z

    def param_roles(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """The model's trainable tensors by role, in parameter order, for every optimizer (optim/optimizer.py):
        embedding (wte, wpe; wte is also the tied head), hidden (the matrices inside blocks: muP's and Muon's),
        head (an untied output matrix: none while tied) and gain (LayerNorm gains and every bias)."""
        roles = {"embedding": [], "hidden": [], "head": [], "gain": []}
        tied = self.lm_head.weight is self.transformer.wte.weight
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            role = ("gain" if p.dim() < 2 else "hidden" if is_hidden(name) else
                    "head" if name == "lm_head.weight" and not tied else "embedding")
            roles[role].append((name, p))
        return roles

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, the tied wte/lm_head matrix once; non_embedding drops position embeddings (nanoGPT)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding and "wpe" in self.transformer else n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward): 6N for the weights + 12 * L * C * T for attention
        (PaLM appendix B, as nanoGPT's estimate_mfu; causal masking not discounted)."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * (seq_len or c.block_size)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, use_cache: bool = True, generator: torch.Generator | None = None):
        """Append max_new_tokens to idx [B, T]. temperature=0 is greedy. With use_cache, past keys and values
        are kept; once the sequence outgrows block_size the window slides and every step recomputes it,
        exactly as without the cache."""
        return torch.cat([idx, *self.stream(idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator)], 1)

    @torch.no_grad()
    def stream(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, use_cache: bool = True, generator: torch.Generator | None = None,
               n_vocab: int | None = None, head_dtype: torch.dtype | None = None):
        """Yield the next token ids [B, 1] one step at a time, as generate appends them. n_vocab: ids >= n_vocab
        (a vocabulary padded past the tokenizer's) are never sampled. head_dtype: compute the output layer with
        its weight in this dtype (bf16 halves the bytes a decoded token reads: a CPU decodes at memory speed)."""
        bs, cache = self.config.block_size, None
        head = self.lm_head.weight if head_dtype is None else self.lm_head.weight.detach().to(head_dtype)
        for _ in range(max_new_tokens):
            if not use_cache or idx.size(1) > bs:
                h = self.hidden(idx[:, -bs:])
            elif cache is None:
                cache = KVCache(self.config, idx.size(0), idx.device, self.lm_head.weight.dtype)
                h = self.hidden(idx, cache)
            else:
                h = self.hidden(idx[:, -1:], cache)
            logits = self.logits(h[:, -1].to(head.dtype), head).float()
            if n_vocab is not None and n_vocab < logits.size(-1):
                logits[:, n_vocab:] = float("-inf")
            nxt = sample_next(logits, temperature, top_k, top_p, generator)
            yield nxt
            idx = torch.cat((idx, nxt), dim=1)
