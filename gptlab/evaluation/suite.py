"""One eval run: perplexity on a prepared split (unless max_tokens=0), then each task; results as a markdown table.

    python -m gptlab.eval model=runs/2026-11-27/21-00-00              # the command line over this module
    python -c "from gptlab.evaluation.suite import table; print(table({'model': 'm', 'tasks': {}}))"
"""
from __future__ import annotations

import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gptlab.data.shards import MANIFEST, ShardError, first_tokens, open_split
from gptlab.data.tokenizer import N_VOCAB
from gptlab.devices import torch_device
from gptlab.evaluation.perplexity import perplexity
from gptlab.evaluation.tasks import run_task, task_names
from gptlab.model.checkpoint import check_compatible
from gptlab.model.load import load_model


def split_mask(data_dir, split: str, n: int):
    """The split's loss mask for its first n tokens; ShardError when the dataset has none."""
    from gptlab.data.shards import mask_files, open_mask
    files = mask_files(data_dir, split)
    if not files:
        raise ShardError(f"{data_dir} has no loss mask for {split}: prepare chat data (data=chat), or pass "
                         "loss_mask=false")
    return first_tokens(map(open_mask, files), n)


def prepared_tokens(data_dir, split: str, n: int, prepare_cmd: str):
    """The split's first n tokens (fewer if it is shorter), across shards."""
    if not (Path(data_dir) / MANIFEST).is_file():
        raise ShardError(f"{data_dir} holds no prepared dataset; run `{prepare_cmd}` first")
    return first_tokens(open_split(data_dir, split), n)


def evaluate(cfg: DictConfig, prepare_cmd: str | None = None) -> dict:
    """The eval.yaml run: perplexity on the val split (unless max_tokens=0), then each task."""
    names = task_names(OmegaConf.to_object(cfg.tasks) if OmegaConf.is_config(cfg.tasks) else cfg.tasks)
    device = torch_device(cfg.device)
    model, info = load_model(cfg.spec, device)
    ctx = cfg.ctx or model.config.block_size
    check_compatible(model, N_VOCAB, ctx)
    res = {"model": str(cfg.spec), "source": info.get("source"), "path": info.get("path"), "config": info.get("config"),
           "global_step": info.get("global_step"), "params": model.num_params(), "ctx": ctx, "device": str(device)}
    if cfg.max_tokens:
        data_dir = Path(cfg.paths.data_dir) / cfg.data.name
        tokens = prepared_tokens(data_dir, cfg.split, cfg.max_tokens + 1,
                              prepare_cmd or f"python -m gptlab.prepare data={cfg.data.name}")
        if cfg.get("run_dir"):  # a run validates whole windows only, also on a split shorter than val_tokens
            tokens = tokens[:(len(tokens) - 1) // ctx * ctx + 1]
        keep = split_mask(data_dir, cfg.split, len(tokens)) if cfg.get("loss_mask") else None
        if len(tokens) < cfg.max_tokens + 1:
            warnings.warn(f"the {cfg.split} split of {data_dir} holds {len(tokens):,} tokens, fewer than max_tokens "
                          f"+ 1 = {cfg.max_tokens + 1:,}: {len(tokens) - 1:,} are scored", stacklevel=2)
        ppl = perplexity(model, tokens, ctx, cfg.stride, cfg.batch_size, device, progress=True, keep=keep)
        res["perplexity"] = {"data": cfg.data.name, "split": cfg.split, "stride": cfg.stride or ctx, **ppl}
    res["tasks"] = {t: run_task(t, model, cfg.task_path.get(t), cfg.limit, ctx, cfg.batch_size, device)
                    for t in names}
    return res


def table(res: dict) -> str:
    """Results as a markdown table: one row per metric."""
    rows = []
    if p := res.get("perplexity"):
        what = f"{p['data']}/{p['split']} ({p['tokens']:,} tokens, ctx {res['ctx']}, stride {p['stride']})"
        rows += [(what, k, p[k]) for k in ("loss", "ppl", "bpb", "tokens_per_s")]
    for t, m in res["tasks"].items():
        rows += [(f"{t} ({m['examples']:,} examples)", k, v) for k, v in m.items() if k != "examples"]
    fmt = lambda v: f"{v:,}" if isinstance(v, int) else f"{v:.4f}"  # noqa: E731
    return "\n".join([f"| {res['model']} | metric | value |", "|---|---|---|"] +
                     [f"| {a} | {k} | {fmt(v)} |" for a, k, v in rows])


