"""Evaluate a GPT: perplexity and bits per byte on a prepared val split, and zero-shot tasks.

    python -m gptlab.eval model=runs/2026-11-27/21-00-00                        # shakespeare val, ctx = block_size
    python -m gptlab.eval model=runs/2026-11-27/21-00-00/checkpoints/last.ckpt ctx=256 out=results.json
    python -m gptlab.eval model=hf:gpt2 data=openwebtext max_tokens=1048576 batch_size=16 device=cuda
    python -m gptlab.eval model=hf:gpt2 ctx=1024 stride=512                     # strided (sliding-window) perplexity
    python -m gptlab.eval model=hf:gpt2 max_tokens=0 tasks=lambada,wikitext,hellaswag limit=500
    python -m gptlab.eval model=last.ckpt tasks=hellaswag task_path.hellaswag=hellaswag_val.jsonl
    python -m gptlab.eval --help

Perplexity scores the split's first max_tokens + 1 tokens: every token but the first is predicted exactly once,
so max_tokens tokens are scored. Windows hold ctx inputs; non-overlapping by default (stride = ctx); with
stride < ctx each window after the first scores only its last `stride` tokens, as the transformers docs
"Perplexity of fixed-length models" do. Reported: loss (token-mean NLL, nats), ppl = exp(loss), bpb = sum NLL /
ln 2 / UTF-8 bytes of the scored text (gptlab/evaluation/perplexity.py). Log-probs use only the 50257 real GPT-2
logits. Results print as a markdown table; out= writes them as JSON, atomically.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from gptlab import cli
from gptlab.config.checks import int_at, require
from gptlab.devices import resolve_device
from gptlab.model.spec import check_spec

TASKS = ("lambada", "wikitext", "hellaswag")


def task_list(tasks) -> list[str]:
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks or []) if t.strip()]
    bad = [t for t in names if t not in TASKS]
    require(not bad, f"tasks: unknown task(s) {bad}; valid tasks: {', '.join(TASKS)}")
    return names


def check(cfg):
    """Every option refused before torch is imported: the model spec, numbers, device, tasks, the dataset."""
    from gptlab.data.shards import check_dataset
    msg = check_spec(cli.given(cfg, "spec"))
    require(msg is None, msg or "")
    int_at(cfg, "ctx", 1, null_ok=True)
    int_at(cfg, "stride", 1, null_ok=True, what=" (tokens scored per window; null = ctx)")
    if cfg.ctx and cfg.stride:
        require(cfg.stride <= cfg.ctx, f"stride={cfg.stride} must be <= ctx={cfg.ctx}")
    int_at(cfg, "max_tokens", 0, what=" (0 = no perplexity)")
    int_at(cfg, "batch_size", 1)
    int_at(cfg, "limit", 1, null_ok=True)
    resolve_device(cfg.device)
    cfg.tasks = task_list(OmegaConf.to_object(cfg.tasks) if OmegaConf.is_config(cfg.tasks) else cfg.tasks)
    require(cfg.max_tokens or cfg.tasks, "nothing to evaluate: max_tokens=0 and no tasks")
    if cfg.max_tokens:
        group = cfg.hydra.runtime.choices.get("data")
        name = f" data.name={cfg.data.name}" if group != cfg.data.name else ""
        cmd = f"python -m gptlab.prepare data={group}{name}"
        check_dataset(Path(cfg.paths.data_dir) / cfg.data.name, cmd)
    return cfg


def work(cfg) -> None:
    from gptlab.evaluation.suite import evaluate, table
    from gptlab.fs import atomic_write_json
    res = evaluate(cfg)
    print(table(res))
    if cfg.out:
        atomic_write_json(cfg.out, res)
        print(f"wrote {cfg.out}")


ENTRY = cli.Entry("eval", check, work, aliases={"model": "spec"}, lists=("tasks",))

if __name__ == "__main__":
    cli.run(ENTRY)
