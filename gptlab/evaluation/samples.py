"""Several models sampled alike on one prompt set, and the figures of their samples (gptlab.evaluation.textstats).

    python -m gptlab.generations models=[runs/a,runs/b] prompts=builtin     # the command line over this module
    python -c "from gptlab.evaluation.samples import row_seed; print(row_seed(1337, 0, 0))"

Every sample has its own generator, seeded from (seed, prompt, sample): prompts of one length are decoded together
in batches with the KV cache, and a sample is the same whether it was drawn alone or in a batch. A sample ends at
<|endoftext|> or at max_new_tokens.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gptlab.data.tokenizer import EOT
from gptlab.evaluation.textstats import distinct_n, mean, rep_n, self_bleu


def row_seed(seed: int, prompt: int, sample: int) -> int:
    """A 63-bit seed for one sample, independent of every other (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([seed, prompt, sample]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def batches(prompts: list[dict], n_samples: int, batch_size: int):
    """[(prompt ids, [(prompt index, sample index), ...])]: samples of prompts of one length, batch_size at most."""
    by_len: dict[int, list] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p["ids"] or [EOT]), []).extend((i, j) for j in range(n_samples))
    for rows in by_len.values():
        for s in range(0, len(rows), batch_size):
            yield rows[s:s + batch_size]


@torch.no_grad()
def generate(model, prompts: list[dict], n_samples: int, max_new_tokens: int, temperature: float, top_k, top_p,
             seed: int, batch_size: int = 16, n_vocab: int = 50257, bar=None) -> list[list[list[int]]]:
    """[prompt][sample] -> the generated ids, cut before <|endoftext|>. bar: a tqdm advanced by tokens decoded."""
    device = model.lm_head.weight.device
    out = [[None] * n_samples for _ in prompts]
    for rows in batches(prompts, n_samples, batch_size):
        idx = torch.tensor([prompts[i]["ids"] or [EOT] for i, _ in rows], dtype=torch.long, device=device)
        gens = [torch.Generator(device=device).manual_seed(row_seed(seed, i, j)) for i, j in rows]
        done = torch.zeros(len(rows), dtype=torch.bool, device=device)
        steps = []
        for nxt in model.stream(idx, max_new_tokens, temperature, top_k, top_p, True, gens, n_vocab):
            steps.append(nxt[:, 0])
            done |= nxt[:, 0] == EOT
            if bar is not None:
                bar.update(len(rows))
            if bool(done.all()):
                break
        ids = torch.stack(steps, 1).tolist() if steps else [[] for _ in rows]
        for (i, j), row in zip(rows, ids):
            out[i][j] = row[:row.index(EOT)] if EOT in row else row
    return out


def continuation_nlls(ref, pairs: list[tuple[list[int], list[int]]], batch_size: int, device) -> list[tuple]:
    """[(summed NLL, tokens)] of each continuation after its prompt under ref, batched by the lm-eval scorer
    (gptlab.evaluation.tasks.loglikelihood: the 50,257 real logits); an empty continuation is (0.0, 0)."""
    from gptlab.evaluation.tasks import loglikelihood
    live = [i for i, (_, ids) in enumerate(pairs) if ids]
    scores = loglikelihood(ref, [(list(pairs[i][0]) or [EOT], list(pairs[i][1])) for i in live],
                           ref.config.block_size, batch_size, device, desc="scoring under the reference")
    out = [(0.0, 0)] * len(pairs)
    for i, (logprob, _) in zip(live, scores):
        out[i] = (-logprob, len(pairs[i][1]))
    return out


def prompt_figures(texts: list[str], ids: list[list[int]], cap: int, nll: list[tuple[float, int]] | None) -> dict:
    """One prompt's figures over its samples (texts and their ids); None where undefined."""
    tokens = sum(n for _, n in nll) if nll else 0
    return {"length": mean(len(i) for i in ids), "at cap": mean(float(len(i) >= cap) for i in ids),
            "distinct-1": distinct_n(texts, 1), "distinct-2": distinct_n(texts, 2), "distinct-3": distinct_n(texts, 3),
            "rep-4": mean(rep_n(t, 4) for t in texts), "self-BLEU": self_bleu(texts),
            "ref ppl": math.exp(sum(s for s, _ in nll) / tokens) if tokens else None}


def sample_models(models: list[str], prompts: list[dict], cfg, enc, device) -> dict:
    """{model: [prompt][sample] -> ids}, one model in memory at a time, a progress bar each (tokens, tokens/s)."""
    from tqdm.auto import tqdm

    from gptlab.model.checkpoint import check_compatible
    from gptlab.model.load import load_model
    from gptlab.model.sampling import crop
    out = {}
    for spec in models:
        model, _ = load_model(spec, device)
        check_compatible(model, enc.n_vocab)
        fitted = [{**p, "ids": crop(p["ids"], model.config.block_size)} for p in prompts]
        total = len(prompts) * cfg.n_samples * cfg.max_new_tokens
        with tqdm(total=total, unit="tok", desc=f"sampling {spec}", dynamic_ncols=True) as bar:
            out[spec] = generate(model, fitted, cfg.n_samples, cfg.max_new_tokens, cfg.temperature, cfg.top_k,
                                 cfg.top_p, cfg.seed, cfg.batch_size, enc.n_vocab, bar)
        del model
    return out


def run_generations(models: list[str], prompts: list[dict], cfg, enc, device) -> dict:
    """Sample every model, score every continuation (and each val prompt's human reference) under the reference
    model, and each prompt's figures: {settings, prompts, samples, per_prompt}."""
    from gptlab.model.load import load_model
    ids = sample_models(models, prompts, cfg, enc, device)
    ref_spec = str(cfg.ref or models[-1])
    ref, _ = load_model(ref_spec, device)
    texts = {m: [[enc.decode(s) for s in per] for per in ids[m]] for m in models}
    refs = all(p.get("reference") is not None for p in prompts)  # val prompts: what the document went on with
    pairs = [(p["ids"], s) for m in models for p, per in zip(prompts, ids[m]) for s in per]
    pairs += [(p["ids"], p["reference_ids"]) for p in prompts] if refs else []
    nll = iter(continuation_nlls(ref, pairs, cfg.batch_size, device))  # in the order of pairs
    per_prompt = {m: [prompt_figures(t, i, cfg.max_new_tokens, [next(nll) for _ in i])
                      for t, i in zip(texts[m], ids[m])] for m in models}
    if refs:
        per_prompt["human reference"] = [prompt_figures([p["reference"]], [p["reference_ids"]], cfg.max_new_tokens,
                                                        [next(nll)]) for p in prompts]
    settings = {k: cfg[k] for k in ("prompts", "n_samples", "max_new_tokens", "temperature", "greedy", "top_k",
                                    "top_p", "seed", "batch_size")}
    return {"settings": {**settings, "ref": ref_spec, "device": str(device)}, "models": models,
            "prompts": [{"text": p["text"], "reference": p.get("reference")} for p in prompts],
            "samples": texts, "per_prompt": per_prompt}
