"""A model scored live on the runs' own val tokens, so a report can set GPT-2 beside them on equal terms.

    python -m gptlab.report runs=runs/multirun/2026-11-27_21-00-00 compare=[hf:gpt2]
"""
from __future__ import annotations

from pathlib import Path

from gptlab.analysis.runs import ReportError


def compare_live(spec: str, runs: list[dict], data_dir: str | None = None, batch_size: int = 8,
                 device: str | None = None) -> list[dict]:
    """Score `spec` (e.g. hf:gpt2) on the runs' val tokens at their context, one row per distinct (data, val_tokens,
    context): the same windows the runs were validated on."""
    from gptlab.data.shards import ShardError, first_tokens, open_split
    from gptlab.devices import torch_device
    from gptlab.evaluation.perplexity import perplexity
    from gptlab.evaluation.suite import split_mask
    from gptlab.model.checkpoint import LoadError, check_compatible
    from gptlab.model.load import load_model
    device = torch_device(device or "auto")
    try:
        model, _ = load_model(spec, device=device)
    except (LoadError, OSError, ImportError, ValueError) as e:
        raise ReportError(f"compare={spec}: cannot load the model or its weights: {e}") from None
    out, seen = [], set()
    for r in runs:
        key = (r.get("data_name"), r.get("val_tokens"), r.get("ctx"), r.get("data_dir"))  # as eval model=<run>
        if r["kind"] != "measured" or key[:3] in seen:
            continue
        seen.add(key[:3])
        name, n, ctx = key[:3]
        if not (name and n and ctx):
            raise ReportError(f"compare: {r['dir']} has no data.name, data.val_tokens or context in its config.yaml")
        folder = Path(data_dir or key[3] or "data") / name
        try:
            check_compatible(model, block_size=ctx)
            tokens = first_tokens(open_split(folder, "val"), n // ctx * ctx + 1)  # the runs' whole val windows
            keep = split_mask(folder, "val", len(tokens)) if r.get("loss_mask") else None
            res = perplexity(model, tokens, ctx, ctx, batch_size, device, keep=keep)
        except (LoadError, ShardError, ValueError) as e:
            raise ReportError(f"compare={spec}: {e}") from None
        out.append({"name": f"{spec} (measured live)", "dir": str(folder), "kind": "measured live", "curve": [],
                    "overrides": [], "data_name": name, "val_tokens": n, "ctx": ctx, "params": model.num_params(),
                    "tokens": None, "tokens_per_param": None, "final_val_loss": res["loss"],
                    "final_val_ppl": res["ppl"], "best_val_loss": None, "best_val_step": None})
    return out
