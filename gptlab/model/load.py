"""One loader for every entry point: a run folder, a .ckpt file or hf:<name or folder>.

    python -c "from gptlab import load_model; m, info = load_model('runs/2026-11-27/21-00-00'); print(info)"
    python -c "from gptlab import load_model; m, info = load_model('hf:gpt2'); print(m.num_params())"

A run folder gives checkpoints/best.ckpt if present, else checkpoints/last.ckpt, and its summary.json and
config.yaml travel in the info dict, so eval can score what the run scored.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from gptlab.model.checkpoint import ModelNotFound, load_checkpoint
from gptlab.model.gpt import GPT
from gptlab.model.spec import FORMS, canonical, check_spec, may_be_checkpoint, run_checkpoint


def load_model(spec: str | Path, device="cpu", dtype: torch.dtype | None = None) -> tuple[GPT, dict]:
    """(GPT in eval mode, info) from a run folder, a .ckpt file, hf:<name> or a Hugging Face folder. dtype None
    keeps the checkpoint's (float32 for Hugging Face)."""
    s = canonical(spec)
    if s.startswith("hf:"):
        from gptlab.model.convert import from_hf
        model = from_hf(s, device=device, dtype=dtype or torch.float32)
        return model, {"source": "hf", "path": s[3:], "config": asdict(model.config)}
    p = Path(s)
    if p.is_dir() and (p / "checkpoints").is_dir():
        ckpt = run_checkpoint(p)
        if ckpt is None:
            raise ModelNotFound(check_spec(s))
        model, info = load_checkpoint(ckpt, device, dtype)
        summary = p / "summary.json"
        return model, {**info, "source": "run", "run_dir": str(p),
                       "summary": json.loads(summary.read_text()) if summary.is_file() else None}
    if p.is_file() and may_be_checkpoint(p):  # README.md is no checkpoint: refused below, as the entry points do
        return load_checkpoint(p, device, dtype)
    raise ModelNotFound(check_spec(s) or f"cannot load {s!r}; accepted: {'; '.join(FORMS)}")


