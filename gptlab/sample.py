"""Sample text from a GPT, printed token by token as it is generated (KV cache on).

    python -m gptlab.sample model=runs/2026-11-27/21-00-00                  # "The future of AI is", 256 tokens
    python -m gptlab.sample model=hf:gpt2 prompt="Once upon a time," num_samples=3 max_new_tokens=64
    python -m gptlab.sample model=hf:gpt2 prompt_file=prompt.txt top_k=null top_p=0.9
    echo "To be, or not to be" | python -m gptlab.sample model=runs/2026-11-27/21-00-00/checkpoints/last.ckpt prompt=-
    python -m gptlab.sample model=hf:gpt2 prompt= greedy=true               # from <|endoftext|>, argmax decoding
    python -m gptlab.sample model=hf:gpt2 stop_at_eot=false device=cpu use_cache=false
    python -m gptlab.sample --help

Same seed, same text, per device type and torch version (gptlab/model/sampling.py). A prompt longer than the model's
context keeps its last block_size tokens, with a warning; once prompt + output outgrow the context the window slides
and every token recomputes it, as nanoGPT does. Options are checked before torch is imported and the model loaded, so
a bad one fails in well under a second.
"""
from __future__ import annotations

import sys
from pathlib import Path

from gptlab import cli
from gptlab.config.checks import ConfigError, require
from gptlab.devices import resolve_device
from gptlab.model.spec import check_spec


def read_prompt(prompt, prompt_file=None, stdin=None) -> str:
    """The prompt text: prompt_file's, stdin's for prompt '-', else prompt; files lose one trailing newline."""
    if prompt_file:
        try:
            text = Path(prompt_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"prompt_file: cannot read {prompt_file}: {e}") from None
    elif prompt == "-":
        text = (stdin or sys.stdin).read()
    else:
        return "" if prompt is None else str(prompt)
    return text[:-1] if text.endswith("\n") else text  # the newline editors and echo add is not part of it


def check(cfg):
    """Every option refused before torch is imported; returns (the typed options, prompt text)."""
    s = cli.typed(cfg, "sample")
    resolve_device(s.device)
    msg = check_spec(cli.given(cfg, "spec"))  # after the options: a typo there is the likelier mistake
    require(msg is None, msg or "")
    return s, read_prompt(s.prompt, s.prompt_file)


def write(s: str) -> None:
    sys.stdout.write(s)
    sys.stdout.flush()  # show each token now, not when the buffer fills


def work(checked) -> None:
    """Load the model and print num_samples continuations of the prompt, one after another."""
    cfg, text = checked
    sys.stdout.reconfigure(errors="replace")  # a terminal that cannot show a character gets '?', not a crash
    import torch

    from gptlab.data.tokenizer import get_tokenizer
    from gptlab.devices import torch_device
    from gptlab.model.checkpoint import check_compatible
    from gptlab.model.load import load_model
    from gptlab.model.sampling import HEAD_DTYPES, TextStream, crop, sample
    enc, device = get_tokenizer(), torch_device(cfg.device)
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
               gen, cfg.stop_at_eot, cfg.use_cache, on_token=stream, head_dtype=HEAD_DTYPES[cfg.head_dtype])
        stream.close()
        write("\n")


ENTRY = cli.Entry("sample", check, work, aliases={"model": "spec"}, verbatim=("prompt",))

if __name__ == "__main__":
    cli.run(ENTRY)
