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
from gptlab.config.checks import require
from gptlab.config.presets import CONF
from gptlab.devices import resolve_device
from gptlab.model.spec import check_spec
from gptlab.run.folder import CONFIG, recorded


def task_list(tasks) -> list[str]:
    """The tasks asked for, each one of conf/task/ (a new task is a scoring function and one YAML file there)."""
    from gptlab.config.presets import options
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks or []) if t.strip()]
    bad = [t for t in names if t not in options("task")]
    require(not bad, f"tasks: unknown task(s) {bad}; valid tasks: {', '.join(options('task'))}")
    return names


def run_defaults(cfg) -> Path | None:
    """model=<run folder or one of its checkpoints>: what the run validated on (its data, val tokens, context, loss
    mask and micro batch) for every key the command line left alone, so eval reproduces the run's own val loss.
    Returns the run folder, None for other models."""
    from gptlab.run.resume import given_keys
    spec = Path(cfg.spec)
    run = spec if spec.is_dir() else spec.parent.parent
    if not (run / CONFIG).is_file() or str(cfg.spec).startswith("hf:"):
        return None
    saved = OmegaConf.load(run / CONFIG)
    derived = recorded(OmegaConf.to_container(saved))
    given = set(given_keys(list(cfg.hydra.overrides.task), lambda k: (CONF / k).is_dir()))
    touched = lambda key: any(g == key or g.startswith(key + ".") for g in given)  # noqa: E731
    if not touched("data"):
        for key, value in saved.data.items():  # the run's data, key by key into the typed node
            if key in cfg.data:
                cfg.data[key] = value
        if not touched("paths"):
            cfg.paths.data_dir = saved.paths.data_dir
    block = derived["block_size"]
    for key, value in (("ctx", block), ("max_tokens", saved.data.val_tokens // block * block),
                       ("batch_size", derived["micro_batch"]), ("loss_mask", bool(saved.data.get("loss_mask")))):
        if not touched(key):
            cfg[key] = value
    return run


def check(cfg):
    """Every option refused before torch is imported: the model spec, numbers, device, tasks, the dataset."""
    from gptlab.config.presets import prepare_command
    from gptlab.data.shards import check_dataset
    msg = check_spec(cli.given(cfg, "spec"))
    require(msg is None, msg or "")
    cfg.run_dir = str(run_defaults(cfg) or "") or None
    cli.typed(cfg, "eval")  # every key's type and range (gptlab/config/commands.py EvalCommand)
    resolve_device(cfg.device)
    cfg.tasks = task_list(OmegaConf.to_object(cfg.tasks) if OmegaConf.is_config(cfg.tasks) else cfg.tasks)
    require(cfg.max_tokens or cfg.tasks, "nothing to evaluate: max_tokens=0 and no tasks")
    if cfg.max_tokens:
        check_dataset(Path(cfg.paths.data_dir) / cfg.data.name, prepare_command(cfg.data))
    return cfg


def work(cfg) -> None:
    from gptlab.evaluation.suite import evaluate, table
    from gptlab.fs import atomic_write_json
    res = evaluate(cfg)
    print(table(res))
    if cfg.run_dir and "perplexity" in res:
        print(beside_summary(res, Path(cfg.run_dir)))
    if cfg.out:
        atomic_write_json(cfg.out, res)
        print(f"wrote {cfg.out}")


def beside_summary(res: dict, run: Path) -> str:
    """This eval's loss beside the one the run recorded for the same weights (best.ckpt: best_val_loss), and a line
    when this machine differs from the one that measured it."""
    from gptlab.machine import note
    from gptlab.run.folder import read_machine, read_summary
    summary, path = read_summary(run), str(res.get("path") or "")
    differs = note(summary.get("machine") or read_machine(run), "the machine the run measured on")
    key = "final_val_loss" if path.endswith("last.ckpt") else "best_val_loss"
    if summary.get(key) is None:
        return f"{run}: no {key} in summary.json to compare with"
    loss, want = res["perplexity"]["loss"], summary[key]
    return (f"{run}/summary.json {key} {want:.6f}, this eval {loss:.6f}: difference {loss - want:+.2e} "
            f"({res['perplexity']['tokens']:,} tokens, ctx {res['ctx']})" + (f"\n{differs}" if differs else ""))


ENTRY = cli.Entry("eval", check, work, aliases={"model": "spec"}, lists=("tasks",))

if __name__ == "__main__":
    cli.run(ENTRY)
