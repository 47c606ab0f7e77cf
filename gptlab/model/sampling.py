"""Drawing tokens from a GPT: top-k / top-p filtering, one draw per step, and text out token by token.

    python -m gptlab.sample model=runs/2026-11-27/21-00-00 prompt="ROMEO:"     # the command line over this module
    python -c "from gptlab.model.sampling import sample; from gptlab import load_model; \
               from gptlab.data.tokenizer import get_tokenizer; m, _ = load_model('hf:gpt2'); enc = get_tokenizer(); \
               print(enc.decode(sample(m, enc, enc.encode_ordinary('Hello,'), max_new_tokens=20)))"

Same seed, same text: one torch.Generator on the model's device, seeded once, draws every token of every sample.
CPU and CUDA generators give different streams and kernels differ across devices and torch versions, so the
promise holds per device (and torch version). Ids past the tokenizer's 50257 (a vocabulary padded to 50304) are never
sampled.
"""
from __future__ import annotations

import codecs
import warnings

import torch

from gptlab.config.schema import SampleConfig
from gptlab.data.tokenizer import EOT

HEAD_DTYPES = {"auto": "auto", "exact": None, "bf16": "bfloat16"}  # output layer weights while decoding


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top_k and outside the smallest set whose probability >= top_p."""
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # mass before this token already reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def draw(probs: torch.Tensor, generator=None) -> torch.Tensor:
    """One index per row [B, 1]; `generator` may be a list with one generator a row, so that a row draws what it
    would draw alone, whatever else the batch holds."""
    if isinstance(generator, (list, tuple)):
        return torch.cat([torch.multinomial(probs[i:i + 1], 1, generator=g) for i, g in enumerate(generator)])
    return torch.multinomial(probs, 1, generator=generator)


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None) -> torch.Tensor:
    """One token id per row [B, 1] from last-position logits [B, V] (generator: one, or a list of one a row)."""
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):  # draw among the k best only: same distribution, k not V
        vals, ids = torch.topk(logits, top_k, dim=-1)
        probs = filter_logits(vals, None, top_p).softmax(-1)
        return ids.gather(-1, draw(probs, generator))
    probs = filter_logits(logits, None, top_p).softmax(-1)
    return draw(probs, generator)


def crop(ids: list[int], block_size: int) -> list[int]:
    """The last block_size ids, with a warning when that drops some: the model has no positions beyond."""
    if len(ids) > block_size:
        warnings.warn(f"the prompt's {len(ids)} tokens exceed the model's context: only its last {block_size} "
                      "are used", stacklevel=2)
        return ids[-block_size:]
    return ids


class TextStream:
    """Token ids in, text out as soon as it is whole: a character split across tokens waits for its last byte."""

    def __init__(self, enc, write):
        self.enc, self.write = enc, write
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, token: int) -> None:
        self.write(self.utf8.decode(self.enc.decode_single_token_bytes(token)))

    def close(self) -> None:
        self.write(self.utf8.decode(b"", final=True))


def sample(model, enc, prompt_ids, max_new_tokens=256, temperature=0.8, top_k=200, top_p=None, generator=None,
           stop_at_eot=True, use_cache=True, on_token=None, head_dtype="auto") -> list[int]:
    """The ids generated after prompt_ids (empty: start from <|endoftext|>), each passed to on_token as it comes.
    temperature=0 is greedy. With stop_at_eot the <|endoftext|> that ends it is neither returned nor passed on.
    head_dtype "auto" computes the output layer with bf16 weights on a CPU (logits differ by ~1e-2; None: exact)."""
    SampleConfig(max_new_tokens=max_new_tokens, temperature=temperature, greedy=temperature == 0, top_k=top_k,
                 top_p=top_p, stop_at_eot=stop_at_eot, use_cache=use_cache)  # its checks refuse a bad option
    ids = crop(list(prompt_ids) or [EOT], model.config.block_size)
    idx = torch.tensor([ids], dtype=torch.long, device=model.lm_head.weight.device)
    if head_dtype == "auto":  # CPUs decode at memory speed: a bf16 output layer reads half the bytes per token
        fp32_on_cpu = idx.device.type == "cpu" and model.lm_head.weight.dtype == torch.float32
        head_dtype = torch.bfloat16 if fp32_on_cpu else None
    elif isinstance(head_dtype, str):
        head_dtype = getattr(torch, head_dtype)
    out = []
    for nxt in model.stream(idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator, enc.n_vocab,
                            head_dtype):
        token = nxt.item()
        if token == EOT and stop_at_eot:
            break
        out.append(token)
        if on_token is not None:
            on_token(token)
    return out
