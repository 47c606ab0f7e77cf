"""Evaluate a GPT: perplexity and bits per byte on a prepared val split, and zero-shot tasks (gptlab/tasks.py).

    python -m gptlab.eval model=runs/2026-11-27/21-00-00                        # shakespeare val, ctx = block_size
    python -m gptlab.eval model=runs/2026-11-27/21-00-00/checkpoints/last.ckpt ctx=256 out=results.json
    python -m gptlab.eval model=hf:gpt2 data=openwebtext max_tokens=1048576 batch_size=16 device=cuda
    python -m gptlab.eval model=hf:gpt2 ctx=1024 stride=512                     # strided (sliding-window) perplexity
    python -m gptlab.eval model=hf:gpt2 max_tokens=0 tasks=lambada,wikitext,hellaswag limit=500
    python -m gptlab.eval model=last.ckpt tasks=hellaswag task_path.hellaswag=hellaswag_val.jsonl
    python -c "from gptlab.eval import perplexity; from gptlab.load import load_model; import numpy as np; \
               m, _ = load_model('hf:gpt2'); print(perplexity(m, np.arange(2049) % 50000, ctx=1024))"

Perplexity scores the split's first max_tokens + 1 tokens: every token but the first is predicted exactly once,
so max_tokens tokens are scored. Windows hold ctx inputs; non-overlapping by default (stride = ctx); with
stride < ctx each window after the first scores only its last `stride` tokens, as the transformers docs
"Perplexity of fixed-length models" do (the last window may be shorter). Reported: loss (token-mean NLL, nats),
ppl = exp(loss), bpb = sum NLL / ln 2 / bytes, where bytes are the UTF-8 bytes of the scored tokens' text
(<|endoftext|> separates documents and counts 0 bytes). Log-probs use only the 50257 real GPT-2 logits.
Results print as a markdown table; out= writes them as JSON (temp file + os.replace).
"""
from __future__ import annotations

import json
import math
import sys
import time
from itertools import takewhile
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from gptlab.assets import AssetError, atomic_write_bytes
from gptlab.config import cli_argv
from gptlab.load import LoadError, check_compatible, load_model
from gptlab.shards import MANIFEST, ShardError, first_tokens, open_split
from gptlab.tasks import TaskError, run_task, score_positions, task_names
from gptlab.tokenizer import EOT, N_VOCAB, get_tokenizer


def windows(n: int, ctx: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """(begin, end, scored) over n (input, target) pairs: inputs [begin, end), its last `scored` targets
    scored; every target exactly once (the transformers docs' loop)."""
    stride = stride or ctx
    if not 0 < stride <= ctx:
        raise ValueError(f"stride must be in [1, ctx={ctx}], got {stride}")
    out, prev = [], 0
    for begin in range(0, n, stride):
        end = min(begin + ctx, n)
        out.append((begin, end, end - prev))
        prev = end
        if end == n:
            break
    return out


def text_bytes(ids) -> int:
    """UTF-8 bytes of the text the tokens decode to; EOT separates documents and is no text: 0 bytes."""
    ids = np.asarray(ids, dtype=np.int64)
    return len(get_tokenizer().decode_bytes(ids[ids != EOT].tolist()))


def bits_per_byte(nll_sum: float, nbytes: int) -> float:
    return nll_sum / math.log(2) / nbytes


def perplexity(model, tokens, ctx: int | None = None, stride: int | None = None, batch_size: int = 8,
               device=None, progress: bool = False) -> dict:
    """Score tokens[1:] given what precedes each within windows of ctx; dict(loss, ppl, tokens, nll_sum, bytes,
    bpb, tokens_per_s). tokens: a 1-D array or tensor of GPT-2 ids; model in eval mode (as load_model gives)."""
    tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    ctx = ctx or model.config.block_size
    check_compatible(model, N_VOCAB, ctx)
    if tokens.ndim != 1 or len(tokens) < 2:
        raise ValueError(f"need a 1-D sequence of at least 2 tokens, got shape {tuple(tokens.shape)}")
    device = device or model.lm_head.weight.device
    wins = windows(len(tokens) - 1, ctx, stride)
    nll, n, t0 = 0.0, 0, time.perf_counter()
    bar = tqdm(total=len(tokens) - 1, unit="tok", unit_scale=True, desc="perplexity", disable=not progress)
    i = 0
    while i < len(wins):
        width = wins[i][1] - wins[i][0]  # a batch holds windows of one length: all but maybe the last
        batch = list(takewhile(lambda w: w[1] - w[0] == width, wins[i:i + batch_size]))
        x = torch.stack([tokens[b:e] for b, e, _ in batch])
        rows = torch.cat([torch.full((k,), r) for r, (_, _, k) in enumerate(batch)])
        cols = torch.cat([torch.arange(width - k, width) for _, _, k in batch])
        y = torch.cat([tokens[e - k + 1:e + 1] for _, e, k in batch])
        lp, _ = score_positions(model, x.to(device), rows, cols, y.to(device))
        nll -= lp.double().sum().item()
        n += len(y)
        bar.update(len(y))
        i += len(batch)
    bar.close()
    nbytes = text_bytes(tokens[1:])
    return {"loss": nll / n, "ppl": math.exp(nll / n), "tokens": n, "nll_sum": nll, "bytes": nbytes,
            "bpb": bits_per_byte(nll, nbytes) if nbytes else float("nan"),
            "tokens_per_s": n / (time.perf_counter() - t0)}


def prepared_tokens(data_dir, split: str, n: int, prepare_cmd: str) -> np.ndarray:
    """The split's first n tokens (fewer if it is shorter), across shards."""
    if not (Path(data_dir) / MANIFEST).is_file():
        raise ShardError(f"{data_dir} holds no prepared dataset; run `{prepare_cmd}` first")
    return first_tokens(open_split(data_dir, split), n)


def pick_device(device: str) -> torch.device:
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                        "cpu" if device == "auto" else device)


def evaluate(cfg: DictConfig, prepare_cmd: str | None = None) -> dict:
    """The eval.yaml run: perplexity on the val split (unless max_tokens=0), then each task."""
    names = task_names(OmegaConf.to_object(cfg.tasks) if OmegaConf.is_config(cfg.tasks) else cfg.tasks)
    device = pick_device(cfg.device)
    model, info = load_model(cfg.spec, device)
    ctx = cfg.ctx or model.config.block_size
    check_compatible(model, N_VOCAB, ctx)
    res = {"model": str(cfg.spec), "source": info.get("source"), "config": info.get("config"),
           "global_step": info.get("global_step"), "params": model.num_params(), "ctx": ctx, "device": str(device)}
    if cfg.max_tokens:
        data_dir = Path(cfg.paths.data_dir) / cfg.data.name
        tokens = prepared_tokens(data_dir, cfg.split, cfg.max_tokens + 1,
                              prepare_cmd or f"python -m gptlab.prepare data={cfg.data.name}")
        ppl = perplexity(model, tokens, ctx, cfg.stride, cfg.batch_size, device, progress=True)
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    group = HydraConfig.get().runtime.choices.get("data")
    cmd = f"python -m gptlab.prepare data={group}" + (f" data.name={cfg.data.name}" if group != cfg.data.name else "")
    try:
        res = evaluate(cfg, cmd)
    except (LoadError, ShardError, TaskError, AssetError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(table(res))
    if cfg.out:
        atomic_write_bytes(cfg.out, (json.dumps(res, indent=2, default=str) + "\n").encode())
        print(f"wrote {cfg.out}")


def hydra_argv(argv: list[str]) -> list[str]:
    """model= as spec=, and tasks=a,b as one string rather than a sweep (see gptlab.config.cli_argv)."""
    return cli_argv(argv, lists=("tasks",))


if __name__ == "__main__":
    sys.argv = hydra_argv(sys.argv)
    main()
