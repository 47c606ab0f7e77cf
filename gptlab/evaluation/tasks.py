"""Zero-shot tasks scored exactly as lm-evaluation-harness (v0.4) scores lambada_openai, wikitext and hellaswag.

    python -m gptlab.eval model=hf:gpt2 max_tokens=0 tasks=lambada,wikitext,hellaswag        # data from the HF hub
    python -m gptlab.eval model=hf:gpt2 max_tokens=0 tasks=hellaswag limit=200               # first 200 examples
    python -m gptlab.eval model=last.ckpt max_tokens=0 tasks=lambada task_path.lambada=lambada_test.jsonl
    python -c "from gptlab.model.load import load_model; from gptlab.evaluation.tasks import run_task; \
               m, _ = load_model('hf:gpt2'); print(run_task('lambada', m, limit=50))"

Data: the hub datasets conf/task/<name>.yaml names (as the harness does) through datasets.load_dataset, or a local
file in the same record format: a .jsonl (one record a line) or .json (a list of records) file; any other path (a
local copy of the hub repo) replaces the hub id in load_dataset, with the task's config and split. Records: lambada
{"text"}, wikitext {"page"}, hellaswag {"activity_label", "ctx_a", "ctx_b", "endings", "label", ...}.

Scoring, as the harness's HFLM: text encoded with the GPT-2 tokenizer (special tokens allowed, as HF's does);
a context's trailing spaces move to the continuation; continuation tokens = encode(context + continuation) minus
encode(context)'s; the input is (context + continuation)[-(ctx + 1):][:-1]; log-softmax over the 50257 real
logits only. lambada: acc (every target token greedy) and perplexity = exp(-mean target log-prob).
wikitext: each page detokenized, scored in disjoint windows of ctx tokens (the first conditioned on
<|endoftext|>, the last given a full window of context), words and bytes counted on the original page.
hellaswag: " " + ending scored after the preprocessed query; acc, and acc_norm by the ending's characters.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gptlab.data.tokenizer import EOT, N_VOCAB, get_tokenizer
from gptlab.errors import Failed

ROWS = 1024  # head rows per chunk: 1024 x 50257 fp32 logits = 206 MB at most


class TaskError(Failed, ValueError):
    """An unknown task, or task data that cannot be read."""


@torch.no_grad()
def score_positions(model, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, targets: torch.Tensor):
    """(log p(targets[i] | x[rows[i], :cols[i] + 1]), whether targets[i] is the argmax) for token ids x [B, T].

    Only the scored positions go through the head, a chunk at a time, so [B, T, vocab] logits never exist."""
    h = model.hidden(x)[rows, cols]
    lps, greedy = [], []
    for i in range(0, len(h), ROWS):
        logits = model.logits(h[i:i + ROWS])[:, :N_VOCAB].float()  # padded vocab slots never take probability
        t = targets[i:i + ROWS]
        lps.append(logits.log_softmax(-1).gather(1, t[:, None])[:, 0])
        greedy.append(logits.argmax(-1) == t)
    return torch.cat(lps), torch.cat(greedy)


def encode(text: str) -> list[int]:
    # HF's GPT-2 tokenizer, which the harness uses, reads "<|endoftext|>" in text as the special token
    return get_tokenizer().encode(text, allowed_special="all")


def encode_pair(context: str, continuation: str) -> tuple[list[int], list[int]]:
    """The harness's context/continuation split: trailing spaces of the context belong to the continuation."""
    if not context:  # nothing to condition on: <|endoftext|> is the context
        cont = encode(continuation)
        return ([EOT], cont) if cont[0] != EOT else (cont[:1], cont[1:])
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    whole, ctx = encode(context + continuation), encode(context)
    return ctx, whole[len(ctx):]


def loglikelihood(model, requests, ctx: int, batch_size: int = 8, device="cpu", desc: str = "score"):
    """[(summed log-prob of cont, every cont token greedy)] for requests [(context ids, continuation ids)]."""
    inputs = []
    for c, t in requests:
        if not 0 < len(t) <= ctx:
            raise TaskError(f"a continuation of {len(t)} tokens cannot be scored in a context of {ctx}")
        inputs.append((c + t)[-(ctx + 1):][:-1])
    order = sorted(range(len(requests)), key=lambda i: -len(inputs[i]))  # similar lengths share a batch
    out = [None] * len(requests)
    for at in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[at:at + batch_size]
        width = len(inputs[idx[0]])
        x = torch.full((len(idx), width), EOT, dtype=torch.long)  # right padding: causal rows never see it
        rows, cols, tgt = [], [], []
        for r, i in enumerate(idx):
            inp, cont = inputs[i], requests[i][1]
            x[r, :len(inp)] = torch.tensor(inp)
            rows += [r] * len(cont)
            cols += range(len(inp) - len(cont), len(inp))
            tgt += cont
        lp, greedy = score_positions(model, x.to(device), torch.tensor(rows), torch.tensor(cols),
                                     torch.tensor(tgt, device=device))
        lp, greedy, k = lp.double().cpu(), greedy.cpu(), 0
        for i in idx:
            n = len(requests[i][1])
            out[i] = (float(lp[k:k + n].sum()), bool(greedy[k:k + n].all()))
            k += n
    return out


def rolling_windows(tokens: list[int], ctx: int) -> list[tuple[list[int], list[int]]]:
    """The harness's get_rolling_token_windows(context_len=1) + make_disjoint_window: (context, continuation)
    pairs scoring every token once; the first is conditioned on EOT, the last gets a full window of context."""
    if not tokens:
        return []
    first = min(ctx, len(tokens))
    pairs, done = [([EOT] + tokens[:first - 1], tokens[:first])], first
    while done < len(tokens):
        n = min(len(tokens) - done, ctx)
        end = done + n
        pairs.append((tokens[end - ctx - 1:end - 1], tokens[end - n:end]))
        done = end
    return [(a[:len(a) - (len(b) - 1)], b) for a, b in pairs]


def wikitext_detokenize(s: str) -> str:
    """lm-evaluation-harness's wikitext_detokenizer, rule for rule (its no-op "/' [0-9]/" regex included)."""
    s = s.replace("s '", "s'")
    s = re.sub(r"/' [0-9]/", r"/'[0-9]/", s)
    for a, b in ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" : ", ": "), (" ; ", "; "), (" . ", ". "),
                 (" ! ", "! "), (" ? ", "? "), (" , ", ", ")):
        s = s.replace(a, b)
    s = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", s)
    s = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", s)
    s = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", s)
    s = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', s)
    s = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", s)
    for a, b in (("= = = =", "===="), ("= = =", "==="), ("= =", "=="), (" \u00b0 ", "\u00b0"), (" \n", "\n"),
                 ("\n ", "\n"), (" N ", " 1 "), (" 's", "'s")):
        s = s.replace(a, b)
    return s


def hellaswag_preprocess(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")  # brackets are WikiHow artifacts
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def hellaswag_doc(doc: dict) -> tuple[str, list[str], int]:
    """(query, endings, gold) as the harness's hellaswag process_docs (str.capitalize lowercases the rest)."""
    query = hellaswag_preprocess(doc["activity_label"] + ": " + doc["ctx_a"] + " " + doc["ctx_b"].capitalize())
    return query, [hellaswag_preprocess(e) for e in doc["endings"]], int(doc["label"])


def lambada(model, records, ctx, batch_size=8, device="cpu") -> dict:
    # context: the text up to its last space; target: " " + the last word
    pairs = [encode_pair(c, " " + w) for c, _, w in (r["text"].rpartition(" ") for r in records)]
    res = loglikelihood(model, pairs, ctx, batch_size, device, "lambada")
    return {"acc": float(np.mean([g for _, g in res])),
            "perplexity": math.exp(-float(np.mean([ll for ll, _ in res]))), "examples": len(res)}


def wikitext(model, records, ctx, batch_size=8, device="cpu") -> dict:
    pages = [r["page"] for r in records]
    reqs = [w for page in pages for w in rolling_windows(encode(wikitext_detokenize(page)), ctx)]
    ll = sum(r[0] for r in loglikelihood(model, reqs, ctx, batch_size, device, "wikitext"))
    words = sum(len(re.split(r"\s+", page)) for page in pages)  # counted on the original page
    nbytes = sum(len(page.encode("utf-8")) for page in pages)
    return {"word_perplexity": math.exp(-ll / words), "byte_perplexity": math.exp(-ll / nbytes),
            "bits_per_byte": -ll / nbytes / math.log(2), "examples": len(pages), "words": words,
            "bytes": nbytes, "tokens": sum(len(t) for _, t in reqs)}


def hellaswag(model, records, ctx, batch_size=8, device="cpu") -> dict:
    docs = [hellaswag_doc(r) for r in records]
    reqs = [encode_pair(q, " " + e) for q, ends, _ in docs for e in ends]
    res = loglikelihood(model, reqs, ctx, batch_size, device, "hellaswag")
    acc, acc_norm, k = [], [], 0
    for _, ends, gold in docs:
        lls = np.array([ll for ll, _ in res[k:k + len(ends)]])
        k += len(ends)
        acc.append(float(np.argmax(lls) == gold))
        acc_norm.append(float(np.argmax(lls / np.array([float(len(e)) for e in ends])) == gold))
    return {"acc": float(np.mean(acc)), "acc_norm": float(np.mean(acc_norm)), "examples": len(docs)}


@dataclass
class Task:
    """One zero-shot task, as conf/task/<name>.yaml describes it: the function that scores its records and the hub
    dataset they come from (a local .jsonl/.json file in the same record format replaces it)."""
    name: str  # the task's file name under conf/task/
    score: str  # dotted path of a gptlab function (model, records, ctx, batch_size, device) -> metrics
    dataset: str  # hub dataset id, as lm-evaluation-harness names it
    config: str | None  # the dataset's config
    split: str  # the split scored

    def records(self, path: str | Path | None = None, limit: int | None = None) -> list[dict]:
        """The task's records: from a local .jsonl/.json file, else load_dataset(path or the hub id)."""
        if path is not None and Path(path).suffix in (".jsonl", ".json"):
            return read_records(self.name, Path(path))[:limit]
        from gptlab.hub import HubUnreachable, offline_unless_reachable, unreachable_message
        online = offline_unless_reachable()  # before datasets is imported: offline, it reads only its cache
        import datasets  # slow to import: only when a dataset is read through it
        try:
            ds = datasets.load_dataset(str(path or self.dataset), self.config, split=self.split)
        except Exception as e:  # offline, not found, wrong format
            fix = f"pass a local copy with task_path.{self.name}=<file.jsonl> in the hub's record format"
            if not online:
                raise HubUnreachable(unreachable_message(f"task {self.name} ({path or self.dataset})", fix)) from None
            raise TaskError(f"{self.name}: cannot load {path or self.dataset} ({type(e).__name__}: {e}); {fix}") \
                from None
        return list(ds.select(range(min(limit, len(ds)))) if limit is not None else ds)

    def run(self, model, path=None, limit=None, ctx=None, batch_size=8, device="cpu") -> dict:
        """Metrics of the task (and its example count); ctx defaults to the model's context."""
        from hydra.utils import get_object
        if not self.score.startswith("gptlab."):
            raise TaskError(f"task {self.name}: score={self.score!r} must name a gptlab function")
        return get_object(self.score)(model, self.records(path, limit), ctx or model.config.block_size, batch_size,
                                      device)


def read_records(name: str, path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
        # split("\n"), not splitlines(): U+2028 and friends may sit inside a record's text
        return [json.loads(line) for line in text.split("\n") if line.strip()] if path.suffix == ".jsonl" else \
            json.loads(text)
    except (OSError, ValueError) as e:
        raise TaskError(f"{name}: cannot read {path}: {e}") from None


def task_names(tasks) -> list[str]:
    """A list or a comma-separated string of task names, each one of conf/task/."""
    from gptlab.config.presets import options
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks or []) if t.strip()]
    bad = [t for t in names if t not in options("task")]
    if bad:
        raise TaskError(f"unknown task(s) {bad}; valid tasks: {', '.join(options('task'))}")
    return names


def task(name: str) -> Task:
    """The Task conf/task/<name>.yaml builds."""
    from gptlab.config.components import component_class
    from gptlab.config.presets import preset
    spec = preset("task", task_names([name])[0])
    if component_class(spec.get("_target_")) is not Task:
        raise TaskError(f"conf/task/{name}.yaml: _target_ must be {__name__}.Task")
    return Task(name=name, **{k: v for k, v in spec.items() if k != "_target_"})


def run_task(name: str, model, path=None, limit=None, ctx=None, batch_size=8, device="cpu") -> dict:
    """Metrics of one task (and its example count); ctx defaults to the model's context."""
    return task(name).run(model, path, limit, ctx, batch_size, device)
