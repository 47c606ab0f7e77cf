"""gptlab.eval and gptlab.evaluation.tasks against independent hand computations on a tiny random GPT (block_size 32).

    .venv/bin/python -m pytest tests/test_eval.py -q

Each reference scores with plain model(idx) calls, one sequence at a time, log-softmax over the 50257 real logits;
the model's padded vocab rows are inflated so any leak of them into the normaliser would change every number.
"""
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gptlab import GPT, GPTConfig, cli
from gptlab.data.shards import write_manifest, write_shard
from gptlab.eval import ENTRY as EVAL
from gptlab.evaluation.perplexity import bits_per_byte, perplexity, text_bytes, windows
from gptlab.evaluation.suite import evaluate
from gptlab.evaluation.tasks import (
    TaskError,
    encode_pair,
    hellaswag_doc,
    loglikelihood,
    rolling_windows,
    run_task,
    task_names,
    wikitext_detokenize,
)
from gptlab.model.checkpoint import LoadError

ROOT = Path(__file__).resolve().parents[1]
V, EOT = 50257, 50256
CFG = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=50304)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GPT(CFG).eval()
    with torch.no_grad():
        m.lm_head.weight[V:] *= 50  # padded slots: large logits that must never take probability
    return m


def logprobs(model, ids):
    """[T, 50257] log-probs of the next token after each prefix of ids, from one plain forward pass."""
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0][0, :, :V]
    return logits.float().log_softmax(-1)


def next_logprob(model, context, token, vocab=V):
    """log p(token | context) from one plain forward pass, normalised over the first `vocab` logits (tasks score the
    tokenizer's 50257; perplexity is the model's own loss, over its whole output layer, as training validates)."""
    with torch.no_grad():
        logits = model(torch.tensor([context]))[0][0, -1, :vocab]
    return logits.float().log_softmax(-1)[token].item()


def tokens_of(n, seed=0):
    return np.random.default_rng(seed).integers(0, V, n)


# --- perplexity -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [97, 80])  # 3 full windows; 2 full + a short last one
def test_perplexity_equals_plain_loop(model, n):
    t = tokens_of(n)
    nll, count = 0.0, 0
    for b in range(0, n - 1, 32):  # non-overlapping windows, each token predicted once
        x, y = torch.tensor(t[b:b + 32]), torch.tensor(t[b + 1:b + 33])
        x = x[:len(y)]
        with torch.no_grad():
            logits = model(x[None])[0][0]  # every output row, padded ones included: the run's own val loss
        nll += F.cross_entropy(logits, y, reduction="sum").item()
        count += len(y)
    for bs in (1, 2, 8):
        r = perplexity(model, t, ctx=32, batch_size=bs)
        assert r["tokens"] == count == n - 1
        assert r["nll_sum"] == pytest.approx(nll, rel=1e-5)
        assert r["ppl"] == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert perplexity(model, torch.tensor(t), ctx=32)["loss"] == pytest.approx(nll / count, rel=1e-5)


def test_strided_equals_token_by_token(model):
    t, ctx, stride = tokens_of(45, seed=1), 16, 5
    nll = 0.0
    for k in range(len(t) - 1):  # target t[k + 1]; the window scoring it starts at a multiple of the stride
        start = 0 if k < ctx else ((k - ctx) // stride + 1) * stride
        nll -= next_logprob(model, t[start:k + 1].tolist(), t[k + 1], vocab=CFG.vocab_size)
    r = perplexity(model, t, ctx=ctx, stride=stride, batch_size=3)
    assert r["tokens"] == len(t) - 1
    assert r["nll_sum"] == pytest.approx(nll, rel=1e-5)
    assert windows(44, 16, 5)[:3] == [(0, 16, 16), (5, 21, 5), (10, 26, 5)] and windows(44, 16, 5)[-1] == (30, 44, 3)


def test_bits_per_byte_by_hand(model, gpt2):
    a, b = "héllo wörld, naïve café", "Ωmega ☃ snow"
    t = [EOT] + gpt2.encode_ordinary(a) + [EOT] + gpt2.encode_ordinary(b)  # the first token is never scored
    nbytes = len(a.encode()) + len(b.encode())  # EOT is a separator: no bytes
    assert text_bytes(t[1:]) == nbytes
    r = perplexity(model, np.array(t), ctx=32)
    assert r["bytes"] == nbytes
    assert r["bpb"] == pytest.approx(r["nll_sum"] / math.log(2) / nbytes) == bits_per_byte(r["nll_sum"], nbytes)


def test_perplexity_refusals(model):
    with pytest.raises(LoadError, match="block_size"):
        perplexity(model, tokens_of(100), ctx=64)
    with pytest.raises(ValueError, match="stride"):
        perplexity(model, tokens_of(100), ctx=16, stride=17)
    with pytest.raises(LoadError, match="vocab_size"):
        perplexity(GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=1000)), tokens_of(9) % 1000)


# --- tasks ----------------------------------------------------------------------------------------------------
def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def score_by_hand(model, gpt2, context, continuation, ctx=32):
    """(summed log-prob, all greedy) of continuation after context, split and truncated as the harness does."""
    c = gpt2.encode_ordinary(context)
    cont = gpt2.encode_ordinary(context + continuation)[len(c):]
    seq = (c + cont)[-(ctx + 1):]
    lp = logprobs(model, seq[:-1])
    pos = range(len(seq) - 1 - len(cont), len(seq) - 1)
    return sum(lp[p, y].item() for p, y in zip(pos, cont)), all(lp[p].argmax().item() == y for p, y in zip(pos, cont))


LAMBADA = [
    "The old man walked down to the harbour every morning, and every morning he counted the boats that had "
    "come back in the night. When a boat was missing he went to see the family of the captain, Gandalf",
    "She threw the ball across the yard and waited for her dog",
    "He opened the door.\n\nNobody was there, only a note that said: follow the river to the old mill",
]


def test_lambada_by_hand(model, gpt2, tmp_path):
    boosted = GPT(CFG).eval()
    boosted.load_state_dict(model.state_dict())
    dog = gpt2.encode_ordinary(" dog")
    w = boosted.lm_head.weight[dog[0]]
    with torch.no_grad():  # every position now predicts " dog" greedily, with input-dependent probabilities
        boosted.transformer.ln_f.bias += 50 * w / w.norm()
    path = write_jsonl(tmp_path / "lambada.jsonl", [{"text": t} for t in LAMBADA])
    for m in (model, boosted):
        hand = [score_by_hand(m, gpt2, t.rsplit(" ", 1)[0], " " + t.rsplit(" ", 1)[1]) for t in LAMBADA]
        got = run_task("lambada", m, path)
        assert got["examples"] == 3
        assert got["perplexity"] == pytest.approx(math.exp(-np.mean([ll for ll, _ in hand])), rel=1e-5)
        assert got["acc"] == pytest.approx(np.mean([g for _, g in hand]))
    assert len(dog) == 1 and hand[1][1] and got["acc"] == pytest.approx(1 / 3)  # only the dog example is greedy
    assert len(gpt2.encode_ordinary(LAMBADA[0])) > 33  # the first context is left-truncated to the window
    first2 = run_task("lambada", model, path, limit=2)
    hand = [score_by_hand(model, gpt2, t.rsplit(" ", 1)[0], " " + t.rsplit(" ", 1)[1]) for t in LAMBADA[:2]]
    assert first2["examples"] == 2
    assert first2["perplexity"] == pytest.approx(math.exp(-np.mean([ll for ll, _ in hand])), rel=1e-5)


def test_encode_pair_moves_trailing_spaces(gpt2):
    c, t = encode_pair("The end is ", "near")
    assert c == gpt2.encode_ordinary("The end is") and t == gpt2.encode_ordinary(" near")
    assert encode_pair("", "Hello") == ([EOT], gpt2.encode_ordinary("Hello"))


@pytest.mark.parametrize("raw, want", [
    ("the 1990s ' music", "the 1990s' music"),
    ("a @-@ b , 1 @,@ 000 and 3 @.@ 5", "a-b, 1,000 and 3.5"),
    ("a : b ; c . d ! e ? f , g", "a: b; c. d! e? f, g"),
    ("x ( y ) [ z ] { w } \" q \" ' r '", "x (y) [z] {w} \"q\" 'r'"),
    ("= = = = A = = = =", "==== A ===="), (" = = = B = = = ", " === B === "), ("= = C = =", "== C =="),
    ("30 ° C", "30°C"), ("one \n two", "one\ntwo"), ("the N lines", "the 1 lines"), ("John 's", "John's"),
])
def test_wikitext_detokenizer_rules(raw, want):
    assert wikitext_detokenize(raw) == want


PAGE = (" = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : Unrecorded Chronicles ( Japanese : "
        "戦場のヴァルキュリア3 , "
        "lit . Valkyria of the Battlefield 3 ) , commonly referred to as Valkyria Chronicles III outside Japan , is a "
        "tactical role @-@ playing video game . \n \n = = Gameplay = = \n \n The game 's battle system , the BliTZ "
        "system , is carried over directly from Valkyira Chronicles . It sold 1 @,@ 500 copies at 3 @.@ 5 dollars . \n")
PAGE_DETOK = (" = Valkyria Chronicles III =\n\nSenjō no Valkyria 3: Unrecorded Chronicles (Japanese: "
              "戦場のヴァルキュリア3, "
              "lit. Valkyria of the Battlefield 3), commonly referred to as Valkyria Chronicles III outside Japan, "
              "is a "
              "tactical role-playing video game.\n\n== Gameplay ==\n\nThe game's battle system, the BliTZ "
              "system, is carried over directly from Valkyira Chronicles. It sold 1,500 copies at 3.5 dollars.\n")
PAGE2 = " = Short = \n \n A tiny page . \n"


def test_wikitext_by_hand(model, gpt2, tmp_path):
    assert wikitext_detokenize(PAGE) == PAGE_DETOK
    ll = 0.0
    for page in (PAGE_DETOK, wikitext_detokenize(PAGE2)):
        toks, ctx = gpt2.encode_ordinary(page), 32
        for k in range(len(toks)):  # windows [w*32, (w+1)*32); the first conditioned on EOT, the last on 32 tokens
            if k < ctx:
                context = [EOT] + toks[:k]
            else:
                end = min((k // ctx + 1) * ctx, len(toks))
                context = toks[end - ctx - 1:k]
            ll += next_logprob(model, context, toks[k])
    assert len(gpt2.encode_ordinary(PAGE_DETOK)) > 70  # three windows, the last a partial one
    words = len(re.split(r"\s+", PAGE)) + len(re.split(r"\s+", PAGE2))
    nbytes = len(PAGE.encode()) + len(PAGE2.encode())
    got = run_task("wikitext", model, write_jsonl(tmp_path / "wiki.jsonl", [{"page": PAGE}, {"page": PAGE2}]))
    assert (got["examples"], got["words"], got["bytes"]) == (2, words, nbytes)
    assert got["word_perplexity"] == pytest.approx(math.exp(-ll / words), rel=1e-5)
    assert got["byte_perplexity"] == pytest.approx(math.exp(-ll / nbytes), rel=1e-5)
    assert got["bits_per_byte"] == pytest.approx(-ll / nbytes / math.log(2), rel=1e-5)


def test_rolling_windows_cover_each_token_once():
    toks = list(range(10))
    # the last window's input is 5..8: a full window of context for the two tokens left
    assert rolling_windows(toks, 4) == [([EOT], [0, 1, 2, 3]), ([3], [4, 5, 6, 7]), ([5, 6, 7], [8, 9])]


HELLASWAG = [
    {"ind": 4, "activity_label": "Home and Garden",
     "ctx_a": "[header] How to clean a mat [title] Shake the mat outside.",
     "ctx_b": "[step] Then vacuum It", "ctx": "", "split": "val", "split_type": "indomain", "label": "1",
     "endings": ["[substeps] Use a  brush.", "Wash it in the sink.", "Burn it.", "Sell the mat [title] online."],
     "source_id": "wikihow~1"},
    {"ind": 7, "activity_label": "Playing piano", "ctx_a": "A man sits at a piano.", "ctx_b": "he",
     "ctx": "A man sits at a piano. he", "split": "val", "split_type": "zeroshot", "label": "2",
     "endings": ["plays a song.", "eats lunch.", "stands up and leaves the room quietly.", "sings."],
     "source_id": "activitynet~v_1"},
]
QUERIES = ["Home and Garden: How to clean a mat. Shake the mat outside. then vacuum it",
           "Playing piano: A man sits at a piano. He"]
ENDINGS = [[" Use a brush.", "Wash it in the sink.", "Burn it.", "Sell the mat. online."],
           ["plays a song.", "eats lunch.", "stands up and leaves the room quietly.", "sings."]]


def test_hellaswag_by_hand(model, gpt2, tmp_path):
    acc, acc_norm = [], []
    for doc, q, ends in zip(HELLASWAG, QUERIES, ENDINGS):
        assert hellaswag_doc(doc) == (q, ends, int(doc["label"]))
        lls = [score_by_hand(model, gpt2, q, " " + e)[0] for e in ends]
        assert [ll for ll, _ in loglikelihood(model, [encode_pair(q, " " + e) for e in ends], 32)] == \
            pytest.approx(lls, rel=1e-5)
        acc.append(max(range(4), key=lambda i: lls[i]) == int(doc["label"]))
        acc_norm.append(max(range(4), key=lambda i: lls[i] / len(ends[i])) == int(doc["label"]))
    got = run_task("hellaswag", model, write_jsonl(tmp_path / "hs.jsonl", HELLASWAG))
    assert got == {"acc": pytest.approx(np.mean(acc)), "acc_norm": pytest.approx(np.mean(acc_norm)), "examples": 2}


def test_task_errors(tmp_path):
    with pytest.raises(TaskError, match="valid tasks: hellaswag, lambada, wikitext"):
        task_names("lambada,mmlu")
    assert task_names("lambada, hellaswag") == ["lambada", "hellaswag"]
    with pytest.raises(TaskError, match="cannot read"):
        run_task("lambada", None, tmp_path / "missing.jsonl")


# --- the command line -----------------------------------------------------------------------------------------
def run_eval(args, tmp_path):
    cmd = [sys.executable, "-m", "gptlab.eval", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_cli(model, tmp_path):
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"hyper_parameters": {"model": asdict(CFG)},
                "state_dict": {"model." + k: v for k, v in model.state_dict().items()}}, ckpt)
    val = tokens_of(200, seed=3)
    d = tmp_path / "data" / "tiny"
    d.mkdir(parents=True)
    entries = {s: [write_shard(d / f"{s}_000000.bin", t)] for s, t in (("train", tokens_of(50)), ("val", val))}
    write_manifest(d, {"format_version": 1, "tokenizer": "gpt2", "vocab_size": 50257, "dtype": "uint16",
                       "splits": {s: {"tokens": e[0]["tokens"], "shards": e} for s, e in entries.items()}})
    lam = write_jsonl(tmp_path / "lambada.jsonl", [{"text": t} for t in LAMBADA])
    hs = write_jsonl(tmp_path / "hs.jsonl", HELLASWAG)
    p = run_eval([f"model={ckpt}", "data=text", "data.name=tiny", f"paths.data_dir={tmp_path / 'data'}",
                  "max_tokens=100", "stride=8", "tasks=lambada,hellaswag", f"task_path.lambada={lam}",
                  f"task_path.hellaswag={hs}", "out=res/results.json", "device=cpu"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    want = perplexity(model, val[:101], ctx=32, stride=8)
    assert res["perplexity"]["tokens"] == 100 and res["perplexity"]["stride"] == 8 and res["ctx"] == 32
    assert res["perplexity"]["nll_sum"] == pytest.approx(want["nll_sum"], rel=1e-5)
    assert res["tasks"]["lambada"]["perplexity"] == pytest.approx(run_task("lambada", model, lam)["perplexity"])
    assert res["tasks"]["hellaswag"]["examples"] == 2
    assert "| tiny/val (100 tokens, ctx 32, stride 8) | ppl |" in p.stdout
    assert "| lambada (3 examples) | acc |" in p.stdout
    assert not list(tmp_path.glob("res/.*tmp"))

    p = run_eval([f"model={ckpt}", "data=text", "data.name=nothere", f"paths.data_dir={tmp_path / 'data'}"], tmp_path)
    assert p.returncode != 0 and "python -m gptlab.prepare data=text data.name=nothere" in p.stderr
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("eval", [f"spec={ckpt}", "data=text", "data.name=tiny", f"paths.data_dir={tmp_path / 'data'}",
                               "ctx=64"])
    with pytest.raises(LoadError, match="block_size"):
        evaluate(cfg)


def test_hydra_argv():
    assert cli.rewrite(["model=hf:gpt2", "tasks=lambada,wikitext", "tasks=[a,b]", "model.x=1"], EVAL) == \
        ["spec=hf:gpt2", "tasks='lambada,wikitext'", "tasks=[a,b]", "model.x=1"]
