"""Sample text from a GPT, printed token by token as it is generated (KV cache on).

    python -m gptlab.sample model=runs/2026-11-27/21-00-00                  # "The future of AI is", 256 tokens
    python -m gptlab.sample model=hf:gpt2 prompt="Once upon a time," num_samples=3 max_new_tokens=64
    python -m gptlab.sample model=hf:gpt2 prompt_file=prompt.txt top_k=null top_p=0.9
    echo "To be, or not to be" | python -m gptlab.sample model=runs/2026-11-27/21-00-00/checkpoints/last.ckpt prompt=-
    python -m gptlab.sample model=hf:gpt2 prompt= greedy=true               # from <|endoftext|>, argmax decoding
    python -m gptlab.sample model=hf:gpt2 stop_at_eot=false device=cpu use_cache=false
    python -c "from gptlab.sample import sample; from gptlab.load import load_model; \
               from gptlab.tokenizer import get_tokenizer; m, _ = load_model('hf:gpt2'); enc = get_tokenizer(); \
               print(enc.decode(sample(m, enc, enc.encode_ordinary('Hello,'), max_new_tokens=20)))"

Same seed, same text: one torch.Generator on the model's device, seeded once, draws every token of every sample.
CPU and CUDA generators give different streams and kernels differ across devices and torch versions, so the
promise holds per device (and torch version). A prompt longer than the model's context keeps its last block_size
tokens, with a warning; once prompt + output outgrow the context the window slides and every token recomputes it,
as nanoGPT does. Ids past the tokenizer's 50257 (a vocabulary padded to 50304) are never sampled. Options are
checked before torch is imported and the model loaded, so a bad one fails in about a second.
"""
from __future__ import annotations

import codecs
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig

from gptlab.assets import AssetError
from gptlab.config import cli_argv
from gptlab.tokenizer import EOT, get_tokenizer

CHECKED = ("temperature", "greedy", "top_k", "top_p", "num_samples", "max_new_tokens", "seed", "stop_at_eot",
           "use_cache")


class SampleError(ValueError):
    """An option sampling cannot honour; the message names the key."""


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check(temperature=0.8, greedy=False, top_k=None, top_p=None, num_samples=1, max_new_tokens=1, seed=0,
          stop_at_eot=True, use_cache=True) -> None:
    """Refuse out-of-range options, naming the key. Imports no torch."""
    for key, v in (("num_samples", num_samples), ("max_new_tokens", max_new_tokens)):
        if not _int(v) or v < 1:
            raise SampleError(f"{key} must be an integer >= 1, got {v!r}")
    for key, v in (("greedy", greedy), ("stop_at_eot", stop_at_eot), ("use_cache", use_cache)):
        if not isinstance(v, bool):
            raise SampleError(f"{key} must be true or false, got {v!r}")
    if not _int(seed):
        raise SampleError(f"seed must be an integer, got {seed!r}")
    if top_k is not None and (not _int(top_k) or top_k < 1):
        raise SampleError(f"top_k must be an integer >= 1, or null for no top-k filter; got {top_k!r}")
    if top_p is not None and (not _num(top_p) or not 0 < top_p <= 1):
        raise SampleError(f"top_p must be in (0, 1], or null for no nucleus filter; got {top_p!r}")
    if not _num(temperature) or not (greedy or temperature > 0):  # `not >` also refuses nan
        raise SampleError(f"temperature must be > 0, got {temperature!r}; for greedy (argmax) decoding use greedy=true")


def read_prompt(prompt, prompt_file=None, stdin=None) -> str:
    """The prompt text: prompt_file's, stdin's for prompt '-', else prompt; files lose one trailing newline."""
    if prompt_file:
        try:
            text = Path(prompt_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SampleError(f"prompt_file: cannot read {prompt_file}: {e}") from None
    elif prompt == "-":
        text = (stdin or sys.stdin).read()
    else:
        return "" if prompt is None else str(prompt)
    return text[:-1] if text.endswith("\n") else text  # the newline editors and echo add is not part of it


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
    import torch
    check(temperature=temperature, greedy=temperature == 0, top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens,
          stop_at_eot=stop_at_eot, use_cache=use_cache)
    ids = crop(list(prompt_ids) or [EOT], model.config.block_size)
    idx = torch.tensor([ids], dtype=torch.long, device=model.lm_head.weight.device)
    if head_dtype == "auto":  # CPUs decode at memory speed: a bf16 output layer reads half the bytes per token
        head_dtype = torch.bfloat16 if idx.device.type == "cpu" and model.lm_head.weight.dtype == torch.float32 else None
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


HEAD_DTYPES = {"auto": "auto", "exact": None, "bf16": "bfloat16"}  # output layer weights while decoding


def pick_device(name: str):
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise SampleError(f"device: {e}") from None


def write(s: str) -> None:
    sys.stdout.write(s)
    sys.stdout.flush()  # show each token now, not when the buffer fills


def run(cfg: DictConfig, text: str) -> None:
    """Load the model and print num_samples continuations of text, one after another."""
    import torch
    from gptlab.load import check_compatible, load_model
    enc, device = get_tokenizer(), pick_device(cfg.device)
    model, _ = load_model(cfg.spec, device)
    check_compatible(model, enc.n_vocab)
    ids = crop(enc.encode_ordinary(text), model.config.block_size)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    for i in range(cfg.num_samples):
        if i:
            write("-" * 40 + "\n")
        write(enc.decode(ids))
        stream = TextStream(enc, write)
        sample(model, enc, ids, cfg.max_new_tokens, 0 if cfg.greedy else cfg.temperature, cfg.top_k, cfg.top_p,
               gen, cfg.stop_at_eot, cfg.use_cache, on_token=stream, head_dtype=HEAD_DTYPES[cfg.head_dtype])  # checked before loading
        stream.close()
        write("\n")


@hydra.main(version_base="1.3", config_path="../conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    sys.stdout.reconfigure(errors="replace")  # a terminal that cannot show a character gets '?', not a crash
    try:
        check(**{k: cfg[k] for k in CHECKED})
        if cfg.head_dtype not in HEAD_DTYPES:
            raise SampleError(f"head_dtype={cfg.head_dtype!r} is not one of {', '.join(HEAD_DTYPES)}")
        text = read_prompt(cfg.prompt, cfg.prompt_file)
    except SampleError as e:
        sys.exit(f"error: {e}")
    from gptlab.load import LoadError  # torch comes in only now, once the options passed
    try:
        run(cfg, text)
    except (LoadError, AssetError, ValueError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("\ninterrupted")


def hydra_argv(argv: list[str]) -> list[str]:
    """model= as spec=, and the prompt verbatim (see gptlab.config.cli_argv)."""
    return cli_argv(argv, verbatim=("prompt",))


if __name__ == "__main__":
    sys.argv = hydra_argv(sys.argv)
    main()
