"""Hugging Face GPT-2 <-> gptlab GPT: import the released weights, export a trained model for transformers.

    python -m gptlab.hf export runs/2026-11-27/21-00-00 exports/my-gpt      # run folder (best.ckpt) or a .ckpt
    python -m gptlab.hf export model=runs/2026-11-27/21-00-00 out=exports/my-gpt overwrite=true tokenizer=false
    python -m gptlab.hf import hf:gpt2 ckpts/gpt2.ckpt                      # GPT-2 as a checkpoint gptlab loads
    python -c "from transformers import GPT2LMHeadModel as M; M.from_pretrained('exports/my-gpt')"
    python -m gptlab.hf --help

The conversion is gptlab/model/convert.py: weights map by name (GPT-2's Conv1D weights transposed); a bias=False
model is written with zero biases; a vocab padded past 50257 ids is cut to them. Released weights come from the
Hugging Face cache; offline and not cached, the import is refused at once, saying what to download.
"""
from __future__ import annotations

from pathlib import Path

from gptlab import cli
from gptlab.config.checks import require
from gptlab.model.spec import canonical, check_spec

ACTIONS = ("export", "import")


def check(cfg):
    action = cli.given(cfg, "action")
    require(action in ACTIONS, f"the action must be one of {', '.join(ACTIONS)}, got {action!r} "
            "(python -m gptlab.hf export <run> <folder> | import hf:<name> <file.ckpt>)")
    spec = cli.given(cfg, "spec")
    if spec:
        cfg.spec = spec = canonical(spec)  # a local Hugging Face folder gets its hf:
    msg = check_spec(spec)
    require(msg is None, msg or "")
    require(action == "export" or str(cfg.spec).startswith("hf:"),
            f"import takes hf:<name> or hf:<folder>, got {cfg.spec!r}")
    out = cli.given(cfg, "out")
    require(out, f"out= is required: the {'folder' if action == 'export' else '.ckpt file'} to write")
    cli.typed(cfg, "hf")  # every key's type (gptlab/config/commands.py HfCommand)
    p = Path(out)
    if action == "export":
        require(cfg.overwrite or not p.exists() or (p.is_dir() and not any(p.iterdir())),
                f"{p} exists and is not an empty folder; pass overwrite=true to replace it")
    return cfg


def work(cfg) -> None:
    if cfg.action == "export":
        from gptlab.model.convert import to_hf
        from gptlab.model.load import load_model
        model, info = load_model(cfg.spec)
        out = to_hf(model, cfg.out, tokenizer=cfg.tokenizer, overwrite=cfg.overwrite)
        print(f"exported {info['source']} {info['path']} ({model.num_params():,} params) to {out}")
    else:
        from gptlab.model.checkpoint import save_checkpoint
        from gptlab.model.convert import from_hf
        model = from_hf(cfg.spec)
        print(f"wrote {save_checkpoint(model, cfg.out)} ({model.num_params():,} params)")


ENTRY = cli.Entry("hf", check, work, positional=("action", "model", "out"), aliases={"model": "spec"})

if __name__ == "__main__":
    cli.run(ENTRY)
