"""gptlab checkpoints: read safely, build the GPT they hold, write a minimal one, check a model fits the data.

    python -c "from gptlab.model.checkpoint import read_checkpoint as r; print(r('runs/x/checkpoints/last.ckpt'))"

Checkpoints are read with torch.load(weights_only=True): a file holding any other pickled object is refused
without running it. Models come back in eval mode; call .train() to fine-tune one.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from gptlab.config import GPTConfig
from gptlab.errors import Failed, Refused
from gptlab.fs import atomic_file
from gptlab.model.gpt import GPT


class LoadError(Failed, RuntimeError):
    """A model could not be loaded or does not fit; the message says why and what is accepted."""


class ModelNotFound(Refused, LoadError):
    """No model at the given spec: refused before any work (exit 2)."""


class BadCheckpoint(Refused, LoadError):
    """A checkpoint given as input that cannot be read safely (damaged, truncated, pickled code): refused before any
    work (exit 2), as resume= refuses it, in every entry point."""


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
            raise LoadError(f"{k} has shape {tuple(v.shape)}, the config {asdict(cfg)} needs "
                            f"{tuple(expected[k].shape)}")
    wte, head = state_dict["transformer.wte.weight"], state_dict["lm_head.weight"]
    tied = cfg.tie_embeddings
    if tied and head is not wte and not torch.equal(head, wte):  # a separate head needs model.tie_embeddings=false
        raise LoadError("lm_head.weight differs from transformer.wte.weight, but the config ties them "
                        "(model.tie_embeddings=true)")
    # copy=True: tensors of an mmap'd checkpoint become ordinary memory, not views of the file
    weights = {k: v.to(device=device, dtype=dtype or v.dtype, copy=True) for k, v in state_dict.items()
               if not (tied and k == "lm_head.weight")}
    if tied:
        weights["lm_head.weight"] = weights["transformer.wte.weight"]
    model.load_state_dict(weights, strict=True, assign=True)
    if tied:
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
        raise BadCheckpoint(f"{path}: refused: {what}, which could run code when loaded; gptlab reads checkpoints with "
                        "weights_only=True only (tensors, numbers, strings, containers). Do not load it unless you "
                        "trust where it came from") from None
    except Exception:  # a truncated file, another format: torch's own text (miniz, zip offsets) says no more
        size = Path(path).stat().st_size if Path(path).is_file() else 0
        raise BadCheckpoint(f"{path}: damaged or truncated ({size:,} bytes), or not a torch checkpoint; use another "
                        "checkpoint (a run keeps last.ckpt and best.ckpt) or train again") from None


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


def check_compatible(model: GPT | GPTConfig, vocab_size: int = 50257, block_size: int | None = None) -> None:
    """Refuse a model that cannot take the data's token ids or the asked context length."""
    c = model.config if isinstance(model, GPT) else model
    if c.vocab_size < vocab_size:
        raise LoadError(f"model vocab_size {c.vocab_size} < the tokenizer's {vocab_size}: token ids >= {c.vocab_size} "
                        "have no embedding; use a model trained on this tokenizer")
    if block_size is not None and c.block_size < block_size:
        raise LoadError(f"model context (block_size) {c.block_size} < the asked {block_size}: it has no position "
                        f"embeddings beyond {c.block_size}; use a block size <= {c.block_size}")


def save_checkpoint(model: GPT, path: str | Path) -> Path:
    """A minimal GPTModule-shaped checkpoint (hyper_parameters + state_dict) that load_model reads; atomic."""
    ckpt = {"hyper_parameters": {"model": asdict(model.config)}, "global_step": 0,
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    with atomic_file(path) as f:
        torch.save(ckpt, f)
    return Path(path)


def checkpoint_step(path) -> int:
    """global_step of a training checkpoint, read with weights_only=True; LoadError if the file is not one."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("global_step"), int) or "optimizer_states" not in ckpt:
        raise LoadError(f"{path}: not a gptlab training checkpoint (it needs global_step and optimizer states); "
                        "resume= takes a run folder or a checkpoints/last.ckpt written by gptlab.train")
    return ckpt["global_step"]
