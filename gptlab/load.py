"""Load a trained GPT from a run folder, a checkpoint file or Hugging Face, and check it fits the data.

    python -m gptlab.load runs/2026-11-27/21-00-00               # checkpoints/best.ckpt if present, else last.ckpt
    python -m gptlab.load runs/2026-11-27/21-00-00/checkpoints/last.ckpt
    python -m gptlab.load hf:gpt2                                # released GPT-2 (weights in the HF cache)
    python -c "from gptlab.load import load_model; m, info = load_model('hf:gpt2'); print(info)"

Checkpoints are read with torch.load(weights_only=True): a file holding any other pickled object is refused
without running it. The model comes back in eval mode; call .train() to fine-tune it.
"""
from __future__ import annotations

import json
import pickle
import re
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from gptlab.config import GPTConfig
from gptlab.model import GPT

FORMS = ("a run folder (uses checkpoints/best.ckpt if present, else checkpoints/last.ckpt)",
         "a .ckpt file written by gptlab.train (a GPTModule checkpoint)",
         "hf:gpt2, hf:gpt2-medium, hf:gpt2-large, hf:gpt2-xl or hf:<local Hugging Face GPT-2 folder>")


class LoadError(RuntimeError):
    """A model could not be loaded or does not fit; the message says why and what is accepted."""


def build_gpt(cfg: GPTConfig, state_dict: dict, device="cpu", dtype: torch.dtype | None = None) -> GPT:
    """A GPT with exactly these weights; built on the meta device, so no random init of a throwaway model."""
    with torch.device("meta"):
        model = GPT(cfg)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise LoadError(f"weights do not match the config {asdict(cfg)}: missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]}" + (" ..." if len(missing) + len(unexpected) > 10 else ""))
    for k, v in state_dict.items():
        if v.shape != expected[k].shape:
            raise LoadError(f"{k} has shape {tuple(v.shape)}, the config {asdict(cfg)} needs {tuple(expected[k].shape)}")
    wte, head = state_dict["transformer.wte.weight"], state_dict["lm_head.weight"]
    if head is not wte and not torch.equal(head, wte):  # gptlab ties them: a separate head cannot be represented
        raise LoadError("lm_head.weight differs from transformer.wte.weight; gptlab's GPT ties them")
    # copy=True: tensors of an mmap'd checkpoint become ordinary memory, not views of the file
    weights = {k: v.to(device=device, dtype=dtype or v.dtype, copy=True) for k, v in state_dict.items() if k != "lm_head.weight"}
    weights["lm_head.weight"] = weights["transformer.wte.weight"]
    model.load_state_dict(weights, strict=True, assign=True)
    model.lm_head.weight = model.transformer.wte.weight  # assign gave each name its own Parameter: tie again
    return model.eval()


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True (and mmap: optimizer states are never read), errors made readable.
    mmap needs torch's zip format; the legacy format (torch < 1.6) is read whole, as strictly."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        # torch's own first line suggests retrying without weights_only: the one thing not to do with such a file
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it pickles {found.group(1)}" if found else "it pickles objects other than tensors and plain containers"
        raise LoadError(f"{path}: refused: {what}, which could run code when loaded; gptlab reads checkpoints with "
                        "weights_only=True only (tensors, numbers, strings, containers). Do not load it unless you "
                        "trust where it came from") from None
    except Exception as e:  # a truncated file, another format, ...
        raise LoadError(f"{path}: not a readable torch checkpoint (truncated or another format): "
                        f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None


def load_checkpoint(path: str | Path, device="cpu", dtype: torch.dtype | None = None) -> tuple[GPT, dict]:
    """A GPTModule checkpoint: hyper_parameters['model'] is the GPTConfig, state_dict keys start with 'model.'."""
    ckpt = read_checkpoint(path)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or not isinstance(hp.get("model"), dict) or "state_dict" not in ckpt:
        raise LoadError(f"{path}: not a gptlab checkpoint (needs hyper_parameters['model'] and state_dict)")
    try:
        cfg = GPTConfig(**hp["model"])
    except TypeError as e:
        raise LoadError(f"{path}: hyper_parameters['model'] is not a GPTConfig: {e}") from None
    sd = {}
    for k, v in ckpt["state_dict"].items():
        k = k.replace("_orig_mod.", "")  # torch.compile's wrapper name, wherever it sits in the key
        if k.startswith("model."):
            sd[k[len("model."):]] = v
    model = build_gpt(cfg, sd, device, dtype)
    return model, {"source": "checkpoint", "path": str(path), "config": asdict(cfg),
                   "global_step": ckpt.get("global_step")}


def load_model(spec: str | Path, device="cpu", dtype: torch.dtype | None = None) -> tuple[GPT, dict]:
    """(GPT in eval mode, info) from a run folder, a .ckpt file or hf:<name or folder>. dtype None keeps the
    checkpoint's (float32 for Hugging Face)."""
    s = str(spec)
    if s.startswith("hf:"):
        from gptlab.hf import from_hf
        model = from_hf(s, device=device, dtype=dtype or torch.float32)
        return model, {"source": "hf", "path": s[3:], "config": asdict(model.config)}
    p = Path(s)
    if p.is_dir() and (p / "checkpoints").is_dir():
        ckpt = next((c for c in (p / "checkpoints" / "best.ckpt", p / "checkpoints" / "last.ckpt") if c.is_file()), None)
        if ckpt is None:
            raise LoadError(f"{p}: run folder without checkpoints/best.ckpt or checkpoints/last.ckpt")
        model, info = load_checkpoint(ckpt, device, dtype)
        summary = p / "summary.json"
        return model, {**info, "source": "run", "run_dir": str(p),
                       "summary": json.loads(summary.read_text()) if summary.is_file() else None}
    if p.is_file():
        return load_checkpoint(p, device, dtype)
    hint = f" ({p} holds config.json: for a Hugging Face folder write hf:{p})" if (p / "config.json").is_file() else ""
    raise LoadError(f"cannot load {s!r}{hint}; accepted forms:\n  - " + "\n  - ".join(FORMS))


def check_compatible(model: GPT | GPTConfig, vocab_size: int = 50257, block_size: int | None = None) -> None:
    """Refuse a model that cannot take the data's token ids or the asked context length."""
    c = model.config if isinstance(model, GPT) else model
    if c.vocab_size < vocab_size:
        raise LoadError(f"model vocab_size {c.vocab_size} < the tokenizer's {vocab_size}: token ids >= {c.vocab_size} "
                        "have no embedding; use a model trained on this tokenizer")
    if block_size is not None and c.block_size < block_size:
        raise LoadError(f"model context (block_size) {c.block_size} < the asked {block_size}: it has no position "
                        f"embeddings beyond {c.block_size}; use a block size <= {c.block_size}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m gptlab.load <run dir | .ckpt | hf:name>")
    try:
        m, info = load_model(sys.argv[1])
    except LoadError as e:
        sys.exit(f"error: {e}")
    print(json.dumps({**info, "params": m.num_params()}, indent=2, default=str))
